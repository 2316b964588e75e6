"""``seqbench bench``: seqbench's kernels against torch's CPU ones, each timed in its own process.

For each cell x shape x dtype: the same weights in a seqbench model and a ``torch.nn`` module,
the same input. Each side runs alone in a fresh process (``seqbench.bench_worker``: warm-up
calls, compilation excluded, then ``repeat`` timed forwards and train steps), the two sides
alternated torch, seqbench, torch, seqbench for ``--pairs`` pairs, so drift on a shared
machine hits both alike and neither library's thread pool runs beside the other's. Reported:
the median over pairs of each side's median in milliseconds, ratio = torch time / seqbench
time (> 1: seqbench is faster), and the range of the per-pair ratios.

Why processes: in one process the two pools slow each other. Right after a seqbench call
torch's next GRU train step ran 3x slower (15.5 -> 47.9 ms on a 2-vCPU AMD EPYC) even after a
20 ms pause, recovering after ~100 ms, and seqbench's LSTM step slowed likewise after torch's,
so same-process ratios were biased either way (GRU 1.82x there against 3.03x alternated in
processes). ``--same-process`` keeps the old one-process loop for a quick look (``measure``).

In the one-process loop (and inside each worker) each timed call is preceded by a short pause
(``SETTLE_S``) and an untimed call of the same side: a thread pool's idle threads keep spinning
for a while after its last job (torch's OpenMP about a millisecond, OpenBLAS about 0.1 s), and
timed right after the other side's calls a library runs slower than alone (torch's per-step GRU
path ran 10-40x slower after seqbench's threaded BLAS calls, which seqbench now makes with BLAS
held to one thread). The pause was 0.25 s; it is 20 ms now, as a long idle slows the next calls
on a VM: on this one, seqbench's 2-thread LSTM train step (32, 100, 10, 128) took 19-22 ms for
the second call after 0.25 s asleep against 15.5 ms back to back (and 17 ms after 0.25 s of
spinning), while torch's times did not move (GRU, both shapes of the goals, 0.25 s against 20
ms).

- forward: ``model.forward(x)`` against torch under ``no_grad`` (inference).
- train step: forward + backward of the summed output (dL/dy = 1), against
  ``module(x)[0].sum().backward()``: the parameters' gradients on both sides, no dL/dx
  (torch's x does not require grad; neither does a first layer's input in training).
torch is optional: without it the torch columns show '-'. Every table's title names the CPU.
``--train-step``: the whole step of ``seqbench run`` (``Trainer.step``, a run's defaults) against
the torch backend's (the plain torch loop), ``--task`` at ``--step-shape``, processes as above.

``--roofline`` adds two tables (bench_roofline.py): each side's matrix products in GFLOP/s
against the machine's GEMM peak, and seqbench's train step split into its phases (recurrence
kernels, GEMMs, the rest) with each phase's rate; with ``--train-step``, the whole step's
phases (the rest then holds the head, loss, clipping and optimizer).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict

import numpy as np

from .errors import ConfigError

TORCH_PEERS = {"lstm": "LSTM", "gru": "GRU", "elman": "RNN"}  # torch.nn class per cell
DEFAULT_CELLS = ("lstm", "gru", "elman")
# (B, T, I, H): the shapes of the speed goals, where torch 2.13.0's CPU times were taken as
# anchors (a long-batch LSTM/GRU, one long series, a large layer); the bench prints both sides
DEFAULT_SHAPES = ("32,100,10,128", "1,1000,1,64", "128,100,64,512")
DTYPES = ("float32", "float64")
SETTLE_S = 0.02  # pause before each timed call: the other side's idle threads go to sleep
DEFAULT_PAIRS = 3  # torch, seqbench alternations per case
STEP_SHAPES = {"copy-task": "64,20,128", "char-lm": "32,100,256"}  # --train-step's B,T,H
BESIDE = []  # what ran beside the timing (bench_reservoir.busy_neighbour), for the titles


def add_arguments(parser) -> None:
    parser.add_argument(
        "--cells",
        nargs="+",
        default=list(DEFAULT_CELLS),
        metavar="CELL",
        help=f"cells to time (default: {' '.join(DEFAULT_CELLS)})",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(DEFAULT_SHAPES),
        metavar="B,T,I,H",
        help="batch, steps, input size, hidden size (default: the speed goals' shapes)",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["float32"],
        metavar="DTYPE",
        help="float32 and/or float64 (default: float32)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds after warm-up")
    parser.add_argument("--backend", default="numba", help="seqbench backend (default: numba)")
    parser.add_argument(
        "--roofline",
        action="store_true",
        help="also print the matrix products' GFLOP/s against this machine's GEMM peak and "
        "seqbench's train step by phase (with --train-step: the phases)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        help="alternations torch, seqbench, each side in its own process "
        f"(default {DEFAULT_PAIRS})",
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="time both sides in this process, in turn (faster, biased: the thread pools "
        "slow each other)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for numba and torch (default: the CPUs this process may use)",
    )
    parser.add_argument("--train-step", action="store_true", help="the whole step of a run")
    parser.add_argument("--task", default="copy-task", help="--train-step's task")
    shapes = ", ".join(f"{k} {v}" for k, v in STEP_SHAPES.items())
    parser.add_argument("--step-shape", help=f"--train-step's B,T,H (default: {shapes})")


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'32,100,10,128' -> (32, 100, 10, 128); anything else is a ConfigError."""
    parts = str(text).split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(
            f"shape {text!r} is not B,T,I,H (four positive integers, e.g. 32,100,10,128)"
        )
    return shape


def check_arguments(args) -> tuple[list, list, list]:
    """Validated (cells, shapes, dtypes) from parsed arguments; ConfigError on bad input."""
    from .backends import check_backend
    from .models import CELLS

    for cell in args.cells:
        if cell not in CELLS:
            raise ConfigError(f"cell {cell!r} is not known; use one of {', '.join(sorted(CELLS))}")
    for dt in args.dtype:
        if dt not in DTYPES:
            raise ConfigError(f"dtype {dt!r} is not supported; use float32 or float64")
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {args.repeat}")
    if getattr(args, "pairs", 1) < 1:
        raise ConfigError(f"--pairs must be at least 1, got {args.pairs}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    check_backend(args.backend)
    return list(args.cells), [parse_shape(s) for s in args.shapes], list(args.dtype)


def set_threads(n: int | None) -> int:
    """Use n threads in seqbench's CPU kernels and in torch (default: this process's CPUs)."""
    from .backends import cpu_runtime

    n = cpu_runtime.set_num_threads(n)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(n)
    return n


def _on(threads) -> str:  # every figure names its CPU, and a busy neighbour (BESIDE)
    from .results.provenance import environment

    return ", ".join([f"{threads} threads", environment()["cpu"], *BESIDE])


def _peer_note() -> str:
    if _torch() is None:
        return "; torch is not installed, so its columns are '-' (pip install torch==2.13.0)"
    return ""


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------- the two sides


class SeqbenchCase:
    def __init__(self, cell, shape, dtype, backend="numba", seed=0):
        import seqbench as sb

        B, T, I, H = shape
        self.model = sb.build_model(cell, I, H, dtype=dtype, backend=backend, seed=seed)
        self.x = np.random.default_rng(seed).standard_normal((B, T, I)).astype(dtype)
        self._dy = None

    def forward(self):
        return self.model.forward(self.x)

    def train_step(self):
        y, tape = self.model.forward(self.x)
        if self._dy is None:
            self._dy = np.ones_like(y)  # dL/dy of L = sum(y)
        return self.model.backward(tape, self._dy, input_grad=False)  # as torch's x


class TorchCase:
    def __init__(self, cell, shape, dtype, state_dict, x):
        torch = _torch()
        B, T, I, H = shape
        self.torch = torch
        cls = getattr(torch.nn, TORCH_PEERS[cell])
        self.module = cls(I, H, batch_first=True).to(getattr(torch, dtype))
        self.module.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
        )
        self.x = torch.from_numpy(x)

    def forward(self):
        with self.torch.no_grad():
            return self.module(self.x)

    def train_step(self):
        self.module.zero_grad(set_to_none=True)
        y, _ = self.module(self.x)
        y.sum().backward()


def _timed(fn, settle=SETTLE_S) -> float:
    """Seconds of one call of fn, after a pause and an untimed call of it."""
    time.sleep(settle)
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(cell, shape, dtype, repeat=5, backend="numba", with_torch=True, phases=False):
    """Medians (ms) of forward and train step for seqbench and, if available, torch;
    ``phases``: also seqbench's train step by phase (bench_roofline)."""
    from . import bench_roofline as rl

    ours = SeqbenchCase(cell, shape, dtype, backend)
    peer = None
    if with_torch and cell in TORCH_PEERS and _torch() is not None:
        peer = TorchCase(cell, shape, dtype, ours.model.state_dict(), ours.x)
    sides = {"seqbench": ours} if peer is None else {"seqbench": ours, "torch": peer}
    t0 = time.perf_counter()
    ours.train_step()  # compiles (or loads) forward and backward kernels
    compile_s = time.perf_counter() - t0
    times = {f"{s}_{k}": [] for s in sides for k in ("fwd", "train")}
    for side in sides.values():  # warm-up, excluded
        side.forward()
        side.train_step()
    for _ in range(repeat):
        for name, side in sides.items():
            times[f"{name}_fwd"].append(_timed(side.forward))
        for name, side in sides.items():
            times[f"{name}_train"].append(_timed(side.train_step))
    out = {"cell": cell, "shape": tuple(shape), "dtype": dtype, "first_call_s": compile_s}
    for kind in ("fwd", "train"):
        out[f"gflop_{kind}"] = rl.gemm_flops(ours.model, *shape[:2], kind == "train") / 1e9
    out["phase_gflop"] = rl.case_phase_flops(ours.model, cell, shape)
    if phases:
        out["seqbench_phases"] = rl.phase_ms(ours.train_step, repeat)
    for key in ("seqbench_fwd", "seqbench_train", "torch_fwd", "torch_train"):
        out[key] = 1e3 * statistics.median(times[key]) if key in times else None
    for kind in ("fwd", "train"):
        ts, ss = out[f"torch_{kind}"], out[f"seqbench_{kind}"]
        out[f"ratio_{kind}"] = ts / ss if ts is not None else None
    return out


def measure_isolated(cell, shape, dtype, repeat=5, backend="numba", pairs=DEFAULT_PAIRS,
                     threads=None, with_torch=True, worker=None, phases=False) -> dict:  # fmt: skip
    """``measure``'s figures with each side timed in its own process, alternated torch,
    seqbench for ``pairs`` pairs: per side the median of its per-process medians; per kind
    the ratio of those and the range of the per-pair ratios (``ratio_fwd_range``)."""
    import seqbench as sb

    from . import bench_roofline as rl

    B, T, I, H = shape
    model = sb.build_model(cell, I, H, dtype=dtype, backend="numpy", seed=0)
    job = dict(cell=cell, shape=list(shape), dtype=dtype, backend=backend, repeat=repeat,
               threads=threads, phases=phases)  # fmt: skip
    gflop = [rl.gemm_flops(model, B, T, train) / 1e9 for train in (False, True)]
    return {"cell": cell, "shape": tuple(shape), "dtype": dtype, "gflop_fwd": gflop[0],
            "gflop_train": gflop[1], "phase_gflop": rl.case_phase_flops(model, cell, shape),
            **alternated(job, pairs, with_torch and cell in TORCH_PEERS,
                                                   ("fwd", "train"), worker)}  # fmt: skip


def alternated(job, pairs, with_peer, kinds, worker=None, peer="torch") -> dict:
    """Workers for ``job``, the peer (torch or another library) then seqbench, ``pairs`` times;
    per kind each side's median of its per-process medians (ms), the ratio peer / seqbench and
    its range over pairs; the peer's keys None without it (or without torch installed)."""
    worker = worker or run_worker
    with_peer = with_peer and (peer != "torch" or _torch() is not None)
    sides = [peer, "seqbench"] if with_peer else ["seqbench"]
    runs = {side: [] for side in sides}
    for _ in range(pairs):
        for side in sides:
            runs[side].append(worker({**job, "side": side}))
    out = {"pairs": pairs, "first_call_s": runs["seqbench"][0]["first_call_s"]}
    for kind in kinds:
        per = {s: [statistics.median(r[f"{kind}_ms"]) for r in runs[s]] for s in sides}
        for side in ("seqbench", peer):
            out[f"{side}_{kind}"] = statistics.median(per[side]) if side in per else None
        ts, ss = out[f"{peer}_{kind}"], out[f"seqbench_{kind}"]
        out[f"ratio_{kind}"] = ts / ss if ts is not None else None
        pair_ratios = [t / s for t, s in zip(per.get(peer, []), per["seqbench"], strict=False)]
        out[f"ratio_{kind}_range"] = (min(pair_ratios), max(pair_ratios)) if pair_ratios else None
    if "phases_ms" in runs["seqbench"][0]:
        from .bench_roofline import median_phases

        out["seqbench_phases"] = median_phases(runs["seqbench"])
    return out


def run_worker(job: dict, module: str = "seqbench.bench_worker") -> dict:
    """One side timed in a fresh interpreter (``python -m module JOB``); its JSON line back."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"bench worker ({job['side']} {job['cell']}) failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- command


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from seqbench.kernels import config

    from . import bench_roofline as rl

    cells, shapes, dtypes = check_arguments(args)
    threads = set_threads(args.threads)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a table in a log or pipe stays one line a row
    if args.train_step:
        console.print(*train_step_tables(args, cells, dtypes, threads))
        return 0
    isolated = not args.same_process
    how = (
        f"each side in its own process, {args.pairs} pairs alternated, median of {args.repeat}"
        if isolated
        else f"one process, in turn, median of {args.repeat}"
    )
    table = Table(
        title=f"seqbench ({args.backend}) vs torch, {how}, {_on(threads)}",
        caption="ratio = torch time / seqbench time (> 1: seqbench faster; in brackets the "
        "range over pairs); "
        f"train = forward + backward of sum(y); gates: {config.gate_functions()}{_peer_note()}",
    )
    for col in ("cell", "B,T,I,H", "dtype"):
        table.add_column(col)
    for col in ("seqbench fwd ms", "torch fwd ms", "ratio", "seqbench train ms",
                "torch train ms", "ratio"):  # fmt: skip
        table.add_column(col, justify="right")
    rows, peaks = [], {}
    with console.status("timing...") as status:
        for dtype in dtypes:
            if args.roofline:
                status.update(f"timing a {rl.PEAK_N[dtype]}^3 GEMM ({dtype})")
                peaks[dtype] = rl.gemm_peak(dtype)
            for shape in shapes:
                for cell in cells:
                    status.update(f"timing {cell} {shape} {dtype}")
                    if isolated:
                        r = measure_isolated(cell, shape, dtype, args.repeat, args.backend,
                                             args.pairs, threads, phases=args.roofline)  # fmt: skip
                    else:
                        r = measure(cell, shape, dtype, args.repeat, args.backend,
                                    phases=args.roofline)  # fmt: skip
                    rows.append(r)
                    table.add_row(
                        cell,
                        ",".join(map(str, shape)),
                        dtype,
                        _ms(r["seqbench_fwd"]),
                        _ms(r["torch_fwd"]),
                        _ratio(r["ratio_fwd"], r.get("ratio_fwd_range")),
                        _ms(r["seqbench_train"]),
                        _ms(r["torch_train"]),
                        _ratio(r["ratio_train"], r.get("ratio_train_range")),
                    )
    console.print(table)
    if args.roofline:
        for dtype in dtypes:  # this machine's speed drifts: the better of before and after
            peaks[dtype] = max(peaks[dtype], rl.gemm_peak(dtype))
        console.print(rl.roofline_table(rows, peaks, threads, _on(threads)))
        console.print(rl.profile_table(rows, peaks, _on(threads)))
    return 0


def train_step_tables(args, cells, dtypes, threads):
    """--train-step's table, and with --roofline seqbench's step by phase; every config is
    checked before a worker starts (one line)."""
    from rich.table import Table

    from . import bench_roofline as rl
    from .config import RunConfig

    if args.same_process:
        raise ConfigError("--train-step times each side in its own process")
    shape = args.step_shape or STEP_SHAPES.get(args.task, STEP_SHAPES["copy-task"])
    parts = str(shape).split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--step-shape {shape!r} is not B,T,H (e.g. 64,20,128)")
    B, T, H = (int(p) for p in parts)
    backends = (args.backend, "torch") if _torch() is not None else (args.backend,)
    cfgs = [RunConfig(task=args.task, model=c, backend=b, dtype=dt, seq_len=T, batch_size=B,
                      hidden_size=H).validated()
            for c in cells for dt in dtypes for b in backends]  # fmt: skip
    cfgs = cfgs[:: len(backends)]  # the torch side's configs are checked, not kept
    run = f"{cfgs[0].optimizer} lr {cfgs[0].lr:g}, clip {cfgs[0].clip}"
    table = Table(
        title=f"whole training step, {args.task} B,T,H={shape}, {run}: seqbench "
        f"({args.backend}) vs the torch backend, each side in its own process, {args.pairs} "
        f"pairs alternated, median of {args.repeat}, {_on(threads)}",
        caption="step = batch, forward, head, loss, BPTT, clip, optimizer, as seqbench run "
        "takes it (Trainer.step); ratio = torch time / seqbench time (> 1: seqbench faster; "
        f"in brackets the range over pairs){_peer_note()}",
    )
    for col in ("cell", "dtype", "seqbench step ms", "torch step ms", "ratio"):
        table.add_column(col, justify="left" if col in ("cell", "dtype") else "right")
    rows = []
    for cfg in cfgs:  # each worker builds its side's Trainer from the config
        job = dict(cell=cfg.model, run=asdict(cfg), repeat=args.repeat, threads=threads,
                   phases=args.roofline)  # fmt: skip
        r = alternated(job, args.pairs, True, ("train",))
        table.add_row(cfg.model, cfg.dtype, _ms(r["seqbench_train"]), _ms(r["torch_train"]),
                      _ratio(r["ratio_train"], r.get("ratio_train_range")))  # fmt: skip
        rows.append(dict(r, cell=cfg.model, shape=(B, T, H), dtype=cfg.dtype, phase_gflop={}))
    if not args.roofline:
        return [table]
    rest = "batch, head, loss, clipping, optimizer, Python"
    return [table, rl.profile_table(rows, {}, _on(threads), rest)]


def _ms(v):
    return "-" if v is None else f"{v:.2f}"


def _ratio(v, span=None):
    if v is None:
        return "-"
    return f"{v:.2f}x" if span is None else f"{v:.2f}x [{span[0]:.2f}-{span[1]:.2f}]"
