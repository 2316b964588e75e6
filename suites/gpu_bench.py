"""seqbench's CUDA backend against torch's cuDNN RNNs on the same weights (needs a GPU).

    python suites/gpu_bench.py                # lstm, gru, elman; float32
    python suites/gpu_bench.py --cells lstm --repeat 20 --input-size 256

Two workloads (issue 7's targets):
    train   B=64, T=1000, H=256: forward + BPTT of a summed loss (dy = 1)
    infer   B=1,  T=1000, H=256: forward only
Each is timed both ways, after a warm-up (compile) run of each, the two alternated
(A B A B ...) for --repeat rounds, medians reported:
    seqbench  the model API, backend="cuda": host arrays in and out, so the times include
              the copies of x and y (train: dy up, every gradient down) that the backend's
              contract entails
    cudnn     torch.nn.{LSTM,GRU,RNN} on the GPU, tensors resident, torch.cuda.synchronize()
ratio = seqbench_ms / cudnn_ms (below 1: seqbench faster). max_abs_diff: the largest
|y_seqbench - y_torch| of one forward on the same input.

The table goes to results/gpu/<gpu-name-slug>-<YYYY-MM-DD>.csv (UTC date; --out for another
folder), written atomically; a second run on the same day replaces it. Not run in CI.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CELLS = {"lstm": "LSTM", "gru": "GRU", "elman": "RNN"}  # seqbench cell -> torch.nn module
WORKLOADS = {"train": 64, "infer": 1}  # batch size; T and H from the command line
RESULTS = Path(__file__).resolve().parents[1] / "results" / "gpu"

# a row as measured, then the ratio, then the environment (the same on every row)
MEASURED = (
    "cell",
    "work",
    "batch",
    "seq_len",
    "hidden",
    "input_size",
    "dtype",
    "path",
    "seqbench_ms",
    "cudnn_ms",
    "max_abs_diff",
)
ENVIRONMENT = ("device", "torch", "cudnn", "numba_cuda")
COLUMNS = (*MEASURED[:-1], "ratio", MEASURED[-1], *ENVIRONMENT)


# ---------------------------------------------------------------- the table


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def table_path(device: str, day: datetime.date, out=RESULTS) -> Path:
    return Path(out) / f"{slug(device)}-{day.isoformat()}.csv"


def write_table(rows, environment, out=RESULTS, day=None) -> Path:
    """The measured ``rows`` (dicts with MEASURED's keys) as one CSV of COLUMNS: ratio =
    seqbench_ms / cudnn_ms, ``environment`` (ENVIRONMENT's keys) on every row. Written to a
    temporary file beside the target and renamed over it, so a reader never sees half a
    table. ``day``: the date in the name (default: today, UTC). Returns the path."""
    rows = list(rows)
    if not rows:
        raise ValueError("no rows measured; nothing written")
    missing = [k for k in ENVIRONMENT if k not in environment]
    if missing:
        raise ValueError(f"environment lacks {', '.join(missing)}")
    records = []
    for row in rows:
        missing = [k for k in MEASURED if k not in row]
        if missing:
            raise ValueError(f"row {row!r} lacks {', '.join(missing)}")
        ratio = row["seqbench_ms"] / row["cudnn_ms"]
        records.append({**{k: row[k] for k in MEASURED}, "ratio": ratio, **environment})
    day = day or datetime.datetime.now(datetime.timezone.utc).date()
    path = table_path(environment["device"], day, out)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(records)

    from seqbench.results import write_atomic

    return write_atomic(path, write)


# ---------------------------------------------------------------- measuring


def _alternated_ms(a, b, repeat, sync_a, sync_b):
    """Median milliseconds of a() and of b(), warm-up first, then A B A B ..."""
    for fn, sync in ((a, sync_a), (b, sync_b)):
        fn()  # compiles, allocates
        sync()
    times = ([], [])
    for _ in range(repeat):
        for fn, sync, out in ((a, sync_a, times[0]), (b, sync_b, times[1])):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
    return tuple(1e3 * statistics.median(t) for t in times)


def _torch_module(torch, cell, model, dtype):
    rnn = getattr(torch.nn, CELLS[cell])(model.input_size, model.hidden_size, batch_first=True)
    rnn.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()})
    return rnn.to(device="cuda", dtype=dtype)


def measure(torch, cell, work, args):
    """One row of the table: ``cell`` on workload ``work``, both sides."""
    from numba import cuda
    from seqbench.kernels.cuda import _plan

    import seqbench as sb

    B, T, H = WORKLOADS[work], args.length, args.hidden_size
    train = work == "train"
    model = sb.build_model(cell, args.input_size, H, dtype=args.dtype, backend="cuda")
    rnn = _torch_module(torch, cell, model, getattr(torch, args.dtype))
    x = np.random.default_rng(0).standard_normal((B, T, args.input_size)).astype(args.dtype)
    xt = torch.from_numpy(x).cuda()

    def seqbench():
        y, tape = model.forward(x)
        if train:
            model.backward(tape, np.ones_like(y))

    def cudnn():
        if train:
            y, _ = rnn(xt.detach().requires_grad_())
            y.sum().backward()
        else:
            with torch.no_grad():
                rnn(xt)

    t_seqbench, t_cudnn = _alternated_ms(
        seqbench, cudnn, args.repeat, cuda.synchronize, torch.cuda.synchronize
    )
    plan = _plan.last_plan  # of the last recurrence launched
    with torch.no_grad():
        want = rnn(xt)[0].cpu().numpy()
    return {
        "cell": cell,
        "work": work,
        "batch": B,
        "seq_len": T,
        "hidden": H,
        "input_size": args.input_size,
        "dtype": args.dtype,
        "path": "persistent" if plan.persistent else "per-step",
        "seqbench_ms": t_seqbench,
        "cudnn_ms": t_cudnn,
        "max_abs_diff": float(np.max(np.abs(model.forward(x)[0] - want))),
    }


def environment(torch) -> dict:
    from importlib import metadata

    import numba

    try:
        numba_cuda = f"numba-cuda {metadata.version('numba-cuda')}"
    except metadata.PackageNotFoundError:
        numba_cuda = f"numba {numba.__version__} (built-in CUDA target)"
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": str(torch.backends.cudnn.version()),
        "numba_cuda": numba_cuda,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of the CSV table")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print(
            "gpu_bench: error: torch is not installed; it times cuDNN as the peer: "
            "pip install torch (a CUDA build)",
            file=sys.stderr,
        )
        return 2
    from numba import cuda

    if not torch.cuda.is_available() or not cuda.is_available():
        print(
            "gpu_bench: error: no CUDA GPU visible to both torch and numba; "
            "run it on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    env = environment(torch)
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    torch.backends.cudnn.benchmark = True
    print(
        f"{'cell':6s} {'work':6s} {'B':>3s} {'T':>5s} {'H':>4s} {'path':11s} "
        f"{'seqbench ms':>11s} {'cudnn ms':>9s} {'ratio':>6s} {'max|dy|':>8s}"
    )
    rows = []
    for cell in args.cells:
        for work in args.workloads:
            r = measure(torch, cell, work, args)
            rows.append(r)
            print(
                f"{cell:6s} {work:6s} {r['batch']:3d} {r['seq_len']:5d} {r['hidden']:4d} "
                f"{r['path']:11s} {r['seqbench_ms']:11.2f} {r['cudnn_ms']:9.2f} "
                f"{r['seqbench_ms'] / r['cudnn_ms']:6.2f} {r['max_abs_diff']:8.1e}"
            )
    print(f"table: {write_table(rows, env, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
