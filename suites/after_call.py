"""Does a seqbench call slow the torch (or NumPy) code that runs right after it, in one process?

    python suites/after_call.py                       # gru lstm elman at 32,100,10,128
    python suites/after_call.py --cells gru --rounds 40 --delays 0 1 20

A user's script interleaves libraries: a seqbench step, then a torch step, then NumPy. A thread
pool whose idle threads keep spinning after a call takes cores from whatever runs next (issue
23 measured torch's GRU train step 15.5 -> 47.9 ms right after a seqbench call, even after a
20 ms pause, back to normal only after ~100 ms). This script measures it. For each cell, in
rounds, one "neighbour" call, a pause of ``d`` ms, then one timed call of the "subject":

    subject  neighbour   what it shows
    torch    idle        torch's own speed: 200 ms of sleep before the call
    torch    torch       torch after itself (its own pool warm)
    torch    seqbench    torch right after seqbench: the figure issue 23 asks for
    seqbench seqbench    seqbench after itself
    seqbench torch       seqbench right after torch
    numpy    idle        a 512 x 512 float32 matmul (NumPy's BLAS) alone
    numpy    seqbench    the same matmul right after seqbench

Reported: the median of each over the rounds (ms) and its ratio to the subject's "idle" (or,
for the two libraries, "after itself") median. Only the public model API is used
(``seqbench.build_model``, ``forward``, ``backward``, ``state_dict``), so the script runs
unchanged against older commits (``PYTHONPATH=<worktree> python suites/after_call.py``): the
before and after of a change to seqbench's thread pool. Not run in CI; run it on a quiet
machine (nothing else busy: a second busy process moves these figures 2-10x).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

PEERS = {"lstm": "LSTM", "gru": "GRU", "elman": "RNN"}
IDLE_S = 0.2


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cases(cell, shape, threads):
    """Train-step callables of the three subjects on the same weights and input."""
    import torch

    import seqbench as sb

    torch.set_num_threads(threads)
    try:
        from seqbench.backends import cpu_runtime

        cpu_runtime.set_num_threads(threads)
    except ImportError:  # an older layout: numba's own pool
        import numba

        numba.set_num_threads(threads)
    B, T, I, H = shape
    model = sb.build_model(cell, I, H, dtype="float32", backend="numba", seed=0)
    x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    module = getattr(torch.nn, PEERS[cell])(I, H, batch_first=True)
    weights = model.state_dict()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    xt = torch.from_numpy(x)
    dy = None

    def ours():
        nonlocal dy
        y, tape = model.forward(x)
        dy = np.ones_like(y) if dy is None else dy
        model.backward(tape, dy)

    def theirs():
        module.zero_grad(set_to_none=True)
        y, _ = module(xt)
        y.sum().backward()

    a = np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32)
    return {"seqbench": ours, "torch": theirs, "numpy": lambda: a @ a}


PLAN = (  # (subject, neighbour); the first of each subject is its reference
    ("torch", "idle"),
    ("torch", "torch"),
    ("torch", "seqbench"),
    ("seqbench", "seqbench"),
    ("seqbench", "torch"),
    ("numpy", "idle"),
    ("numpy", "seqbench"),
)


def measure(fns, delay_s, rounds):
    """Median ms of each (subject, neighbour) over ``rounds``, the plan's rows interleaved."""
    times = {row: [] for row in PLAN}
    for _ in range(rounds):
        for subject, neighbour in PLAN:
            if neighbour == "idle":
                time.sleep(IDLE_S)
            else:
                fns[neighbour]()
                time.sleep(delay_s)
            t0 = time.perf_counter()
            fns[subject]()
            times[subject, neighbour].append(1e3 * (time.perf_counter() - t0))
    return {row: statistics.median(v) for row, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["gru", "lstm", "elman"], choices=sorted(PEERS))
    p.add_argument("--shape", default="32,100,10,128", help="B,T,I,H of the train steps")
    p.add_argument("--delays", nargs="+", type=float, default=[0, 1, 20, 100], help="ms")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    import torch

    import seqbench

    print(f"# {cpu_name()}, {args.threads} threads; torch {torch.__version__}; "
          f"seqbench from {seqbench.__file__}; train step {shape}, float32; "
          f"medians of {args.rounds} rounds")  # fmt: skip
    print("cell   delay_ms  subject   after      median_ms  x_reference")
    for cell in args.cells:
        fns = cases(cell, shape, args.threads)
        for fn in fns.values():  # compile, first allocations
            fn()
            fn()
        for d in args.delays:
            med = measure(fns, d / 1e3, args.rounds)
            ref = {}
            for (subject, neighbour), ms in med.items():
                ref.setdefault(subject, ms)
                print(f"{cell:6} {d:8g}  {subject:9} {neighbour:9} {ms:10.2f}  "
                      f"{ms / ref[subject]:10.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
