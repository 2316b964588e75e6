"""The ``seqbench`` command: a thin face over seqbench.train, seqbench.results and friends.

Every user error is one line on stderr and exit code 2; Ctrl-C exits 130 having written
nothing partial (results are written atomically, only when a run ends).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .backends import check_environment
from .errors import ConfigError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise ConfigError(f"{message} (see '{self.prog} --help')")


# `seqbench run` flags -> RunConfig fields; an absent flag leaves RunConfig's default in place.
RUN_FLAGS = {
    "--model": ("model", str, "elman, jordan, lstm, gru or esn"),
    "--backend": ("backend", str, "numba, numpy, cuda or torch (the whole step in PyTorch)"),
    "--seq-len": ("seq_len", int, "sequence length T (default: the task's)"),
    "--hidden": ("hidden_size", int, "hidden size H"),
    "--layers": ("num_layers", int, "stacked layers"),
    "--batch": ("batch_size", int, "sequences per step"),
    "--steps": ("steps", int, "max training steps (esn: batches of the readout fit, auto)"),
    "--lr": ("lr", float, "learning rate"),
    "--optimizer": ("optimizer", str, "sgd, adam or rmsprop"),
    "--clip": ("clip", str, "none, value:C or norm:C"),
    "--init": ("init", str, "default, orthogonal, identity or spectral:RHO (recurrent weights)"),
    "--readout": ("readout", str, "sequence tasks: last or mean"),
    "--tbptt": ("tbptt", int, "truncated BPTT window"),
    "--dtype": ("dtype", str, "float32 or float64"),
    "--seed": ("seed", int, "seed of weights and data"),
}


def _add_run(sub):
    from .config import DEFAULT_STEPS, RunConfig

    defaults = RunConfig()
    p = sub.add_parser("run", help="train one model on one task and record the run")
    p.add_argument("task", help="task name (see 'seqbench list')")
    for flag, (field_, type_, help_) in RUN_FLAGS.items():
        default = getattr(defaults, field_)
        default = DEFAULT_STEPS if field_ == "steps" else default
        shown = f" (default {default})" if default is not None else ""
        p.add_argument(flag, dest=field_, type=type_, default=None, help=help_ + shown)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--nonlinearity", default=None, help="elman: tanh or relu")
    p.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option (repeatable; see 'seqbench list TASK')")  # fmt: skip
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option (repeatable; see 'seqbench list MODEL')")  # fmt: skip
    p.add_argument("--no-early-stop", action="store_true", help="train all steps when solved")
    p.add_argument("--seeds", type=int, default=1,
                   help="run N seeds: --seed, --seed+1, ..., each its own run")  # fmt: skip
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


def _run_config(a):
    from .config import RunConfig
    from .options import parse_assignments

    given = {f: getattr(a, f) for f, *_ in RUN_FLAGS.values() if getattr(a, f) is not None}
    opts = parse_assignments(a.model_opt, "--model-opt")
    if a.nonlinearity is not None:  # --nonlinearity X: --model-opt nonlinearity=X
        if "nonlinearity" in opts:
            raise ConfigError("--nonlinearity and --model-opt nonlinearity=... both given")
        opts["nonlinearity"] = a.nonlinearity
    return RunConfig(
        task=a.task,
        bidirectional=a.bidirectional,
        stop_when_solved=not a.no_early_stop,
        model_options=opts,
        task_options=parse_assignments(a.task_opt, "--task-opt"),
        **given,
    ).validated()


def cmd_run(a) -> int:
    import dataclasses

    from . import results
    from .console import TrainingProgress, print_verdict
    from .train import run_and_save

    cfg = _run_config(a)
    if a.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {a.seeds}")
    results.check_writable(a.out)
    ids = []
    for i in range(a.seeds):
        seeded = dataclasses.replace(cfg, seed=cfg.seed + i).validated()
        with TrainingProgress(seeded, enabled=not a.quiet) as progress:
            record = run_and_save(seeded, a.out, progress=progress)
        print_verdict(record, a.out)
        ids.append(record["run_id"])
    if a.seeds > 1:
        df = results.load(a.out)
        df = df[df["run_id"].isin(ids)]
        print(f"seeds {cfg.seed}..{cfg.seed + a.seeds - 1}: " + results.seeds_line(
            results.by_seed(df.assign(group=0), "group")))  # fmt: skip
    return 0


def _add_list(sub):
    p = sub.add_parser("list", help="tasks, models and backends; a task's or model's options")
    p.add_argument("name", nargs="?", default=None, help="a task or model: list its options")
    p.set_defaults(func=cmd_list)


def cmd_list(a) -> int:
    from .backends import BACKENDS
    from .models import MODELS
    from .tasks import TASKS, available_tasks

    if a.name is not None:
        return _list_options(a.name, TASKS, MODELS)
    print("tasks:    " + ", ".join(available_tasks()))
    print("models:   " + ", ".join(MODELS))
    print("backends: " + ", ".join(BACKENDS))
    return 0


def _list_options(name, tasks, models) -> int:
    from .options import describe
    from .tasks import task_options

    if name not in tasks and name not in models:
        known = ", ".join([*tasks, *models])
        raise ConfigError(f"{name!r} is neither a task nor a model; use one of {known}")
    if name in tasks:
        print(f"task {name}: options (--task-opt KEY=VALUE, suite task_options)")
        print("\n".join(describe(task_options(name))))
    if name in models:
        kind = models[name]
        print(f"model {name}: options (--model-opt KEY=VALUE, suite model_options)")
        print("\n".join(describe(kind.options)))
        if kind.ignores:
            print(f"  does not take: {', '.join(kind.ignores)}")
    return 0


def _add_results(sub):
    p = sub.add_parser("results", help="comparison tables of recorded runs")
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--by", default="task,model,seq_len",
                   help="comma-separated leading row keys; every other config column that "
                        "varies (not the seed) splits rows too")  # fmt: skip
    p.add_argument("--pool", action="append", default=[], metavar="COLUMN",
                   help="pool runs over this config column (repeatable)")  # fmt: skip
    p.add_argument("--best-of", default=None, metavar="COLUMN",
                   help="per group of everything else, keep the runs at the best value of "
                        "COLUMN (lr): fewest diverged, then lowest mean eval loss")  # fmt: skip
    p.set_defaults(func=cmd_results)


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def cmd_results(a) -> int:
    from . import results

    df = results.load(a.out)
    if df.empty:
        print(f"no runs in {a.out}/ yet: try 'seqbench run copy-task --model gru'")
        return 0
    by, pool = _names(a.by), [c for text in a.pool for c in _names(text)]
    title = f"{len(df)} runs in {a.out}/"
    if a.best_of:
        df = results.best_of(df, a.best_of, pool)
        title += f", {len(df)} at the best {a.best_of}"
        by = by if a.best_of in by else [*by, a.best_of]
    keys = results.group_keys(df, lead=by, pool=pool)
    table = results.seed_cells(results.by_seed(df, keys))
    if a.best_of:
        table = table.rename_axis(index={a.best_of: f"best {a.best_of}"})
    print(results.render_table(table, title=title), end="")
    print("\n".join(results.seed_caption(pool, a.best_of)))
    return 0


# Subcommands whose module may add its own arguments: name -> (module, help).
PLUGINS = {
    "bench": ("seqbench.bench_table", "seqbench vs torch timing tables"),
    "sweep": ("seqbench.sweep.cli", "run a suite of configs, resumable, locally or on Dask"),
    "report": ("seqbench.report.cli", "HTML report with plots of recorded runs"),
    "reproduce": ("seqbench.reproduce.cli", "rerun a published result: runs, claims, figure"),
    "sample": ("seqbench.sampling", "print text from a trained char-lm run"),
}


def _add_plugins(sub):
    for name, (module, help_) in PLUGINS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        p = sub.add_parser(name, help=help_)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seqbench", description="Benchmarks of recurrent networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_list(sub)
    _add_results(sub)
    _add_plugins(sub)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_environment()
        return args.func(args)
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(
            "seqbench: interrupted; finished runs are saved, nothing partial was written",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
