"""``seqbench bench --table``: the CPU table of forward and train-step times, written to files.

DeepBench publishes no CPU RNN figures, and torch's oneDNN path is a known weak spot at batch
1. This command times LSTM, GRU and Elman over a grid, B in {1, 8, 32, 128} x H in {64, 128,
256, 512} at T=100, float32 by default, for three implementations:

- ``seqbench``: seqbench's CPU kernels (``--backend``, default numba);
- ``torch``: ``torch.nn.LSTM/GRU/RNN`` as shipped (oneDNN on where torch is built with it);
- ``torch-no-onednn``: the same with ``torch.backends.mkldnn.enabled = False``.

What switching oneDNN off changes (torch 2.13.0+cpu, checked with ``torch.profiler``): only
the LSTM. With oneDNN on, ``aten::lstm`` runs ``aten::mkldnn_rnn_layer`` forward and
``aten::mkldnn_rnn_layer_backward`` in the train step; with it off, torch's own ATen loop
(``aten::lstm`` alone). GRU (``aten::gru``) and Elman (``aten::rnn_tanh``) take the ATen loop
either way, so for them the two torch columns time the same code and their difference is the
run-to-run noise of the table (``tests/test_bench_table.py`` checks the LSTM's switch).

Input size I = H: a layer of a stack, whose input is the layer below's state, and DeepBench's
convention for its RNN figures; the input projection then weighs as much as the recurrence.

Timing is ``seqbench bench``'s (``seqbench.bench_worker``): each implementation in its own
fresh process, warm-up and compilation excluded, ``--repeat`` timed calls after a pause and an
untimed call; the three alternated torch, torch-no-onednn, seqbench for ``--pairs`` rounds.
Per implementation and phase: the median over rounds of each process's median (``median_ms``)
and the smallest and largest of those medians (``min_ms``, ``max_ms``). forward = inference
(torch under ``no_grad``); train = forward + backward of sum(y), parameter gradients included.

Written under ``--table DIR`` (default results/bench/), each file to a temp file renamed into
place: ``cpu-rnn-<cpu>-<threads>t-<date>.csv`` (tidy: one row per cell, B, H, implementation,
phase, with threads, CPU, torch version, seqbench commit and date), ``.md`` (the table) and
``.png`` (per cell and phase, milliseconds against B, one line per implementation and H).

This module is the ``seqbench bench`` command's entry (``cli.PLUGINS``): it adds ``--table`` to
``bench``'s flags and hands every other call to ``bench.main``. It imports ``bench``, so
``bench`` cannot import it back (tests/test_structure.py allows no import cycle).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from . import bench, bench_reservoir
from .errors import ConfigError
from .results.storage import write_atomic

BATCHES = (1, 8, 32, 128)
HIDDEN = (64, 128, 256, 512)
STEPS = 100
DEFAULT_OUT = "results/bench"
IMPLEMENTATIONS = ("torch", "torch-no-onednn", "seqbench")  # the order of each round
PHASES = {"forward": "fwd", "train": "train"}  # CSV phase -> the worker's key
COLUMNS = ["cell", "B", "T", "I", "H", "dtype", "implementation", "phase", "median_ms", "min_ms",
           "max_ms", "pairs", "repeat", "threads", "cpu", "torch_version", "seqbench_commit",
           "date"]  # fmt: skip


def add_arguments(parser) -> None:
    """``seqbench bench``'s arguments and the table's."""
    bench.add_arguments(parser)
    bench_reservoir.add_arguments(parser)
    parser.add_argument(
        "--table",
        nargs="?",
        const=DEFAULT_OUT,
        default=None,
        metavar="DIR",
        help="time the CPU grid (B x H at T=100; seqbench, torch, torch without oneDNN) and "
        f"write its CSV, markdown table and figure under DIR (default {DEFAULT_OUT})",
    )
    parser.add_argument("--table-batches", default=_csv(BATCHES), metavar="B,B,...",
                        help=f"--table's batch sizes (default {_csv(BATCHES)})")  # fmt: skip
    parser.add_argument("--table-hidden", default=_csv(HIDDEN), metavar="H,H,...",
                        help=f"--table's hidden sizes, I = H (default {_csv(HIDDEN)})")  # fmt: skip
    parser.add_argument("--table-steps", type=int, default=STEPS, metavar="T",
                        help=f"--table's sequence length (default {STEPS})")  # fmt: skip


def main(args) -> int:
    if args.table is not None:
        if args.busy:
            raise ConfigError("--table records a quiet machine; leave --busy out")
        return write_table(args)
    with bench_reservoir.busy_neighbour(args.busy):
        return (bench_reservoir.main if args.reservoir else bench.main)(args)


def _csv(values) -> str:
    return ",".join(map(str, values))


def parse_sizes(flag: str, text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; anything but positive integers is a ConfigError."""
    parts = str(text).split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{flag} {text!r} is not a list of positive integers (e.g. 1,8,32)")
    return [int(p) for p in parts]


def check_table_arguments(args) -> tuple[list, list, list, list, int]:
    """(cells, dtypes, batches, hidden sizes, T), validated; ConfigError on bad input."""
    cells, _, dtypes = bench.check_arguments(args)
    if args.same_process or args.roofline or args.train_step:
        raise ConfigError("--table times each side in its own process, without --same-process, "
                          "--roofline or --train-step")  # fmt: skip
    batches = parse_sizes("--table-batches", args.table_batches)
    hidden = parse_sizes("--table-hidden", args.table_hidden)
    if args.table_steps < 1:
        raise ConfigError(f"--table-steps must be at least 1, got {args.table_steps}")
    return cells, dtypes, batches, hidden, args.table_steps


# ---------------------------------------------------------------- timing


def implementations() -> list[str]:
    return list(IMPLEMENTATIONS) if bench._torch() is not None else ["seqbench"]


def run_side(job: dict) -> dict:
    """One implementation timed in a fresh process: seqbench's and torch's through
    ``bench.run_worker``, torch without oneDNN through this module's worker entry."""
    if job["implementation"] != "torch-no-onednn":
        return bench.run_worker({**job, "side": job["implementation"]})
    return bench.run_worker({**job, "side": "torch-no-onednn"}, "seqbench.bench_table")


def time_point(job: dict, pairs: int, worker=None) -> list[dict]:
    """Rows (implementation, phase, median_ms, min_ms, max_ms) of one grid point: the
    implementations alternated for ``pairs`` rounds, each in its own process."""
    worker = worker or run_side
    impls = implementations()
    runs = {impl: [] for impl in impls}
    for _ in range(pairs):
        for impl in impls:
            runs[impl].append(worker({**job, "implementation": impl}))
    rows = []
    for impl in impls:
        for phase, key in PHASES.items():
            per = [statistics.median(r[f"{key}_ms"]) for r in runs[impl]]
            rows.append({"implementation": impl, "phase": phase,
                         "median_ms": statistics.median(per), "min_ms": min(per),
                         "max_ms": max(per), "threads": runs[impl][0]["threads"]})  # fmt: skip
    return rows


def time_grid(args, progress=None, worker=None):
    """The table as a DataFrame in COLUMNS' order, one grid point after another."""
    import pandas as pd

    from .results.provenance import environment, utc_now

    cells, dtypes, batches, hidden, T = check_table_arguments(args)
    threads = bench.set_threads(args.threads)
    env, date = environment(), utc_now()
    rows = []
    for dtype in dtypes:
        for cell in cells:
            for H in hidden:
                for B in batches:
                    if progress is not None:
                        progress(f"timing {cell} B={B} H={H} T={T} {dtype}")
                    job = dict(cell=cell, shape=[B, T, H, H], dtype=dtype, backend=args.backend,
                               repeat=args.repeat, threads=threads)  # fmt: skip
                    point = dict(cell=cell, B=B, T=T, I=H, H=H, dtype=dtype, pairs=args.pairs,
                                 repeat=args.repeat, cpu=env["cpu"],
                                 torch_version=env["torch_version"],
                                 seqbench_commit=env["git_commit"], date=date)  # fmt: skip
                    rows += [{**point, **r} for r in time_point(job, args.pairs, worker)]
    return pd.DataFrame(rows, columns=COLUMNS)


# ---------------------------------------------------------------- files


def slug(text: str) -> str:
    """'Intel(R) Xeon(R) CPU @ 2.20GHz' -> 'intel-xeon-cpu-2-20ghz'."""
    text = re.sub(r"\((r|tm)\)", "", str(text), flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


def stem(frame) -> str:
    first = frame.iloc[0]
    return f"cpu-rnn-{slug(first['cpu'])}-{first['threads']}t-{first['date'][:10]}"


def command_line(args) -> str:
    """The ``seqbench bench`` call that makes this table (the markdown's header says it)."""
    parts = ["seqbench bench --table", args.table, "--cells", *args.cells, "--dtype", *args.dtype,
             "--table-batches", args.table_batches, "--table-hidden", args.table_hidden,
             "--table-steps", args.table_steps, "--pairs", args.pairs, "--repeat", args.repeat,
             "--backend", args.backend]  # fmt: skip
    if args.threads is not None:
        parts += ["--threads", args.threads]
    return " ".join(map(str, parts))


def wide(frame):
    """One row per cell, dtype, B, H; a column per phase and implementation (median ms) and
    the ratio torch / seqbench per phase (> 1: seqbench faster)."""
    out = frame.pivot_table(index=["cell", "dtype", "H", "B"], columns=["phase", "implementation"],
                            values="median_ms", sort=False)  # fmt: skip
    for phase in PHASES:
        if (phase, "torch") in out.columns:
            out[(phase, "torch / seqbench")] = out[(phase, "torch")] / out[(phase, "seqbench")]
    order = [(p, i) for p in PHASES for i in (*IMPLEMENTATIONS, "torch / seqbench")]
    return out[[c for c in order if c in out.columns]]


def markdown(frame, args) -> str:
    first = frame.iloc[0]
    table = wide(frame)
    head = ["cell", "dtype", "H", "B"] + [f"{p} {i}" for p, i in table.columns]
    lines = [
        f"# CPU RNN times: seqbench and torch, T={first['T']}, I=H",
        "",
        f"CPU: {first['cpu']}; {first['threads']} threads; torch {first['torch_version']}; "
        f"seqbench {first['seqbench_commit']}; {first['date']}.",
        "",
        f"Made by `{command_line(args)}`. Milliseconds per call, the median over "
        f"{first['pairs']} rounds of each process's median of {first['repeat']} calls "
        "(ranges in the CSV); forward = inference, train = forward + backward of sum(y); "
        "torch / seqbench > 1: seqbench faster. Without oneDNN only the LSTM changes path "
        "(GRU and Elman run the same ATen loop either way).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|",
    ]
    for key, row in table.iterrows():
        cells = [f"{v:.2f}x" if "/" in c[1] else _ms(v) for c, v in row.items()]
        lines.append("| " + " | ".join([*map(str, key), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _ms(v: float) -> str:
    """Three or more figures, never an exponent: 0.862, 12.3, 4763."""
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


SHORT = {"torch-no-onednn": "no oneDNN", "torch / seqbench": "ratio"}  # console headers
STYLE = {"seqbench": ("-", "o"), "torch": ("--", "s"), "torch-no-onednn": (":", "^")}


def figure(frame):
    """Per phase (rows) and cell (columns): ms against B, log-log, colour = H, line style =
    implementation; bars: the range over rounds."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter

    cells, hidden = list(dict.fromkeys(frame["cell"])), sorted(set(frame["H"]))
    colours = dict(zip(hidden, colormaps["viridis"].resampled(len(hidden) + 1).colors,
                       strict=False))  # fmt: skip
    fig = Figure(figsize=(max(4 * len(cells), 8), 7), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PHASES), len(cells), squeeze=False)
    for (phase, cell), ax in zip([(p, c) for p in PHASES for c in cells], axes.flat, strict=True):
        for (impl, H), g in frame[(frame.phase == phase) & (frame.cell == cell)].groupby(
            ["implementation", "H"]
        ):
            g = g.sort_values("B")
            line, marker = STYLE[impl]
            err = [g.median_ms - g.min_ms, g.max_ms - g.median_ms]
            ax.errorbar(g.B, g.median_ms, yerr=err, ls=line, marker=marker, ms=4,
                        color=colours[H], capsize=2)  # fmt: skip
        ax.set(xscale="log", yscale="log", title=f"{cell} {phase}", xlabel="batch B",
               ylabel=f"ms per call (T={frame['T'].iloc[0]})")  # fmt: skip
        ax.set_xticks(sorted(set(frame["B"])), labels=map(str, sorted(set(frame["B"]))))
        ax.xaxis.set_minor_formatter("")
        ax.yaxis.set_major_formatter(LogFormatter())  # 0.2, 10, 100 rather than 2x10^-1
        ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(1.5, 0.5)))
    handles = [Line2D([], [], color=colours[H], label=f"H={H}") for H in hidden]
    handles += [Line2D([], [], color="k", ls=STYLE[i][0], marker=STYLE[i][1], label=i)
                for i in dict.fromkeys(frame["implementation"])]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7),
               fontsize=8)  # fmt: skip
    first = frame.iloc[0]
    fig.suptitle(f"{first['cpu']}, {first['threads']} threads, torch {first['torch_version']}",
                 fontsize=10)  # fmt: skip
    return fig


def write_files(frame, args) -> list[Path]:
    """CSV, markdown and PNG of the table under ``args.table``, each renamed into place."""
    out = Path(args.table)
    base = stem(frame)
    md = markdown(frame, args)
    fig = figure(frame)
    writers = {
        ".csv": lambda tmp: frame.to_csv(tmp, index=False, float_format="%.5g"),
        ".md": lambda tmp: Path(tmp).write_text(md),
        ".png": lambda tmp: fig.savefig(tmp, format="png"),
    }
    return [write_atomic(out / f"{base}{ext}", w) for ext, w in writers.items()]


def check_out(out) -> Path:
    """Create ``out`` before any timing, so an unwritable place fails in a second, not after
    the grid."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / ".check", lambda tmp: None).unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the table under {out}/: {e.strerror or e}") from e
    return out


def write_table(args) -> int:
    from rich.console import Console
    from rich.table import Table

    check_table_arguments(args)
    check_out(args.table)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    with console.status("timing...") as status:
        frame = time_grid(args, progress=status.update)
    table = wide(frame)
    first = frame.iloc[0]
    view = Table(
        title=f"CPU RNN times (ms), T={first['T']}, I=H, {first['threads']} threads, each "
        f"implementation in its own process, {args.pairs} rounds alternated, median of "
        f"{args.repeat}",
        caption="no oneDNN: torch with torch.backends.mkldnn.enabled = False (only the LSTM "
        "changes path); ratio = torch / seqbench (> 1: seqbench faster); fwd = inference, train "
        f"= forward + backward of sum(y); ranges over rounds in the CSV{bench._peer_note()}",
    )
    for col in ("cell", "dtype", "H", "B"):
        view.add_column(col)
    for phase, impl in table.columns:
        view.add_column(f"{PHASES[phase]} {SHORT.get(impl, impl)}", justify="right")
    for key, row in table.iterrows():
        view.add_row(*map(str, key), *(f"{v:.2f}x" if "/" in c[1] else f"{v:.2f}"
                                       for c, v in row.items()))  # fmt: skip
    console.print(view)
    for path in write_files(frame, args):
        console.print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- worker entry


def worker_main(argv=None) -> int:
    """``python -m seqbench.bench_table JOB``: bench_worker's timing of the torch side, with
    oneDNN switched off first; prints its JSON line with ``onednn`` (torch's flag) added."""
    import torch

    from .bench_worker import time_side

    job = json.loads((sys.argv[1:] if argv is None else argv)[0])
    torch.backends.mkldnn.enabled = False
    out = time_side({**job, "side": "torch"})
    print(json.dumps({**out, "onednn": torch.backends.mkldnn.enabled}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
