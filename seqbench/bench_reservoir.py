"""``seqbench bench --reservoir``: the echo-state reservoir against ReservoirPy, and ``--busy``.

The reservoir's speed goal (issue 23) as a user would time it: N units at 10% connectivity,
spectral radius 0.9, leak 1, one input, float64 (ReservoirPy's dtype), B series of T steps,
each from a zero state, on the same matrices (ReservoirPy's ``Reservoir`` built from the
seqbench model's W, W_in and bias: both sides compute the same states). ReservoirPy has no
batch dimension, so it runs the B series one after another, as its users do. Each side is
timed in its own process (``seqbench.bench_worker``), alternated ReservoirPy, seqbench for
``--pairs`` pairs, as the cells' bench (``bench.alternated``): ratio = ReservoirPy time /
seqbench time, with its range over the pairs.

``--busy`` (every bench mode but ``--table``) keeps one busy process, a Python spin loop at
this process's priority, running beside the timing throughout: the issue's "beside other
work" condition, in which a barrier that spins through a descheduled partner collapses.
Every title then says so.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import numpy as np

from . import bench
from .errors import ConfigError

DEFAULT_SHAPE = "1,10000,1000"  # B,T,N of the goal: one series, 10^4 steps, 1000 units
CONNECTIVITY, SPECTRAL_RADIUS = 0.1, 0.9
PEER = "reservoirpy"
BUSY_SETTLE_S = 0.5  # the neighbour is running (and counted by the load) before any timing


def add_arguments(parser) -> None:
    parser.add_argument(
        "--reservoir",
        action="store_true",
        help="the echo-state reservoir against ReservoirPy (float64, same matrices)",
    )
    parser.add_argument(
        "--reservoir-shape",
        default=DEFAULT_SHAPE,
        metavar="B,T,N",
        help=f"--reservoir's series, steps and units (default {DEFAULT_SHAPE})",
    )
    parser.add_argument(
        "--busy", action="store_true", help="time with one busy process running beside"
    )


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1,10000,1000' -> (1, 10000, 1000); anything else is a ConfigError."""
    parts = str(text).split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--reservoir-shape {text!r} is not B,T,N (three positive integers, e.g. "
            f"{DEFAULT_SHAPE})"
        )
    return tuple(int(p) for p in parts)


@contextlib.contextmanager
def busy_neighbour(on: bool):
    """One busy process beside the block while ``on``; bench's titles name it meanwhile."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    bench.BESIDE.append("one busy process beside")
    try:
        time.sleep(BUSY_SETTLE_S)
        yield
    finally:
        bench.BESIDE.remove("one busy process beside")
        proc.kill()
        proc.wait()


def _reservoirpy():
    try:
        from reservoirpy.nodes import Reservoir
    except ImportError:
        return None
    return Reservoir


def case(B: int, T: int, N: int, side: str):
    """A callable running the job's B series on ``side``, seqbench or ReservoirPy."""
    from .models.esn import build_esn

    model = build_esn(1, N, seed=0, connectivity=CONNECTIVITY, spectral_radius=SPECTRAL_RADIUS)
    u = np.random.default_rng(0).uniform(-1, 1, (B, T, 1))
    if side == "seqbench":
        return lambda: model.forward(u)
    sd = model.state_dict()
    res = _reservoirpy()(
        W=sd["weight_hh_l0"], Win=sd["weight_ih_l0"], bias=sd["bias_hh_l0"], lr=1.0
    )
    res.run(u[0, :2])  # initialises the node: reset() needs its state

    def run():
        for series in u:
            res.reset()
            res.run(series)

    return run


def time_side(job: dict) -> dict:
    """The bench worker's reservoir job: first call and ``repeat`` timed runs (ms)."""
    from .backends import cpu_runtime

    threads = cpu_runtime.set_num_threads(job.get("threads"))
    run = case(*job["shape"], job["side"])
    t0 = time.perf_counter()
    run()  # seqbench: compiles or loads the cached kernels
    first = time.perf_counter() - t0
    out = {"side": job["side"], "threads": threads, "first_call_s": first}
    return {**out, "run_ms": [1e3 * bench._timed(run) for _ in range(int(job["repeat"]))]}


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    B, T, N = parse_shape(args.reservoir_shape)
    if args.same_process or args.roofline or args.train_step:
        raise ConfigError("--reservoir times each side in its own process, on its own")
    if args.repeat < 1 or args.pairs < 1:
        raise ConfigError("--repeat and --pairs must be at least 1")
    threads = _threads(args.threads)
    with_peer = _reservoirpy() is not None
    job = dict(reservoir=True, cell="esn", shape=[B, T, N], repeat=args.repeat, threads=threads)
    r = bench.alternated(job, args.pairs, with_peer, ("run",), peer=PEER)
    per_step = 1e3 / (B * T)  # ms of a run -> us per series-step
    table = Table(
        title=f"echo-state reservoir, N={N} at {CONNECTIVITY:.0%} connectivity, float64, "
        f"{B} series x {T} steps from a zero state: seqbench vs ReservoirPy on the same "
        f"matrices, each side in its own process, {args.pairs} pairs alternated, median of "
        f"{args.repeat}, {bench._on(threads)}",
        caption="ratio = ReservoirPy time / seqbench time (> 1: seqbench faster; in brackets "
        "the range over pairs); ReservoirPy runs the series one after another"
        + ("" if with_peer else "; reservoirpy is not installed (pip install reservoirpy==0.4.2)"),
    )
    for col in ("seqbench ms", "ReservoirPy ms", "ratio", "seqbench us/step",
                "ReservoirPy us/step"):  # fmt: skip
        table.add_column(col, justify="right")
    ours, theirs = r["seqbench_run"], r[f"{PEER}_run"]
    ratio = bench._ratio(r["ratio_run"], r["ratio_run_range"])
    theirs_step = None if theirs is None else theirs * per_step
    table.add_row(bench._ms(ours), bench._ms(theirs), ratio, bench._ms(ours * per_step),
                  bench._ms(theirs_step))  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)
    return 0


def _threads(n):
    from .backends import cpu_runtime

    if n is not None and n < 1:
        raise ConfigError(f"--threads must be at least 1, got {n}")
    return cpu_runtime.set_num_threads(n)
