"""The ``seqbench`` command: a thin face over seqbench.train, seqbench.results and friends.

Every user error is one line on stderr and exit code 2; Ctrl-C exits 130 having written
nothing partial (results are written atomically, only when a run ends).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ConfigError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _add_run(sub):
    p = sub.add_parser("run", help="train one model on one task and record the run")
    p.add_argument("task", help="task name (see 'seqbench list')")
    p.add_argument("--model", default="gru", help="elman, jordan, lstm, gru or esn")
    p.add_argument("--backend", default="numba", help="numba (default), numpy or cuda")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length T (task default)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size H")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="max training steps (default 3000); esn: batches of the readout fit (default auto)",
    )
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--optimizer", default="adam", help="sgd, adam or rmsprop")
    p.add_argument("--clip", default="norm:1", help="none, value:C or norm:C")
    p.add_argument(
        "--init",
        default="default",
        help="default, orthogonal, identity or spectral:RHO (recurrent weights)",
    )
    p.add_argument("--nonlinearity", default=None, help="elman: tanh or relu")
    p.add_argument("--readout", default="last", help="sequence tasks: last or mean")
    p.add_argument("--tbptt", type=int, default=None, help="truncated BPTT window")
    p.add_argument("--dtype", default="float32", help="float32 or float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-early-stop", action="store_true", help="train all steps when solved")
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


def _run_config(a):
    from .config import RunConfig

    opts = {}
    if a.nonlinearity is not None:
        opts["nonlinearity"] = a.nonlinearity
    return RunConfig(
        task=a.task,
        model=a.model,
        backend=a.backend,
        dtype=a.dtype,
        seq_len=a.seq_len,
        hidden_size=a.hidden,
        num_layers=a.layers,
        bidirectional=a.bidirectional,
        batch_size=a.batch,
        steps=a.steps,
        lr=a.lr,
        optimizer=a.optimizer,
        clip=a.clip,
        init=a.init,
        seed=a.seed,
        readout=a.readout,
        tbptt=a.tbptt,
        stop_when_solved=not a.no_early_stop,
        model_options=opts,
    ).validated()


def cmd_run(a) -> int:
    from . import results
    from .console import TrainingProgress, print_verdict
    from .train import run_and_save

    cfg = _run_config(a)
    results.check_writable(a.out)
    with TrainingProgress(cfg, enabled=not a.quiet) as progress:
        record = run_and_save(cfg, a.out, progress=progress)
    print_verdict(record, a.out)
    return 0


def _add_list(sub):
    p = sub.add_parser("list", help="tasks, models and backends")
    p.set_defaults(func=cmd_list)


def cmd_list(a) -> int:
    from .backends import BACKENDS
    from .models import MODELS
    from .tasks import available_tasks

    print("tasks:    " + ", ".join(available_tasks()))
    print("models:   " + ", ".join(MODELS))
    print("backends: " + ", ".join(BACKENDS))
    return 0


def _add_results(sub):
    p = sub.add_parser("results", help="comparison tables of recorded runs")
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--by", default="task,model,seq_len", help="comma-separated row keys")
    p.set_defaults(func=cmd_results)


def cmd_results(a) -> int:
    from . import results

    df = results.load(a.out)
    if df.empty:
        print(f"no runs in {a.out}/ yet: try 'seqbench run copy-task --model gru'")
        return 0
    by = [c.strip() for c in a.by.split(",") if c.strip()]
    print(results.render_table(results.compare(df, by=by), title=f"{len(df)} runs in {a.out}/"))
    return 0


# Subcommands whose module may add its own arguments: name -> (module, help).
PLUGINS = {
    "bench": ("seqbench.bench", "seqbench vs torch timing table"),
    "sweep": ("seqbench.sweep", "run a suite of configs, resumable, locally or on Dask"),
    "report": ("seqbench.report", "HTML report with plots of recorded runs"),
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
