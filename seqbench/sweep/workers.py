"""What runs inside a worker process or Dask task: thread limits, one run, its outcome."""

from __future__ import annotations

import os
import time
from pathlib import Path

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "SEQBENCH_THREADS",  # the numba backend's own pool (and the ESN kernels' spin barrier)
)


def limit_threads(threads: int) -> None:
    """Pin this process's thread pools (BLAS, OpenMP, numba) to ``threads``.

    Environment variables cover the libraries not loaded yet (scipy's BLAS, numba);
    threadpoolctl and numba.set_num_threads the ones already loaded.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(threads)
    import sys

    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "seqbench.backends.cpu_runtime" in sys.modules:
        from ..backends import cpu_runtime

        cpu_runtime.set_num_threads(threads)


def init_pool_worker(threads: int, parent: int) -> None:
    """Runs once in each spawned worker, before its first run."""
    import signal

    from ..results.provenance import pin

    pin()  # the git commit of the code this worker has just imported (provenance.pin)

    # Ctrl-C is the parent's to handle: it stops the workers itself, without tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    limit_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the sweep process dies, so a killed sweep leaves no orphan
    finishing (and writing) a run that the resumed sweep is also running."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_in_worker(cfg, out) -> dict:
    """One run, in a pool worker: train, write the run's files under ``out``, report timings."""
    from ..train import run_and_save

    started, t0 = time.time(), time.perf_counter()
    record = run_and_save(cfg, out)
    return _outcome(record, started, time.perf_counter() - t0)


def run_on_dask(cfg) -> dict:
    """One run, in a Dask task: write to a private temp dir and return the files' bytes.

    The client installs them under its ``out``, so workers need no shared filesystem.
    """
    import tempfile

    from ..results import HISTORY, PROFILES, RUNS
    from ..results.provenance import pin
    from ..results.storage import WEIGHTS
    from ..train import run_and_save

    pin()  # a no-op after the worker's first task, which imported seqbench (provenance.pin)
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        nthreads = 1
    import numba

    per_task = max(1, min((os.cpu_count() or 1) // nthreads, numba.get_num_threads()))
    numba.set_num_threads(per_task)
    from ..backends import cpu_runtime

    cpu_runtime.set_num_threads(per_task)  # concurrent tasks must not share out the same cores
    started, t0 = time.time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqbench-run-") as tmp:
        record = run_and_save(cfg, tmp)
        files = {}
        for sub in (HISTORY, PROFILES, WEIGHTS, RUNS):  # weights: a task that keeps them
            path = Path(tmp, sub, f"{record['run_id']}{file_suffix(sub)}")
            if path.is_file():
                files[sub] = path.read_bytes()
    result = _outcome(record, started, time.perf_counter() - t0)
    result["files"] = files
    return result


def file_suffix(sub: str) -> str:
    """The file ending of a run's file in folder ``sub`` (tables, or the weights' .npz)."""
    from ..results.storage import WEIGHTS

    return ".npz" if sub == WEIGHTS else ".parquet"


def _outcome(record: dict, started: float, seconds: float) -> dict:
    keep = ("run_id", "task", "model", "seq_len", "clip", "seed", "status", "solved")
    keep += ("solved_step", "final_loss", "baseline_loss", "train_seconds", "compile_seconds")
    out = {k: record.get(k) for k in keep}
    out.update(started=started, ended=time.time(), worker_seconds=seconds, pid=os.getpid())
    return out
