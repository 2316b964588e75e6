"""Executors: a pool of spawned processes, or a Dask cluster; each reports runs as Events."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .workers import THREAD_VARIABLES, file_suffix, init_pool_worker, run_in_worker, run_on_dask


@dataclass
class Event:
    kind: str  # "done", "retry" or "failed"
    config: object
    result: dict | None = None  # from the worker ("done")
    error: str | None = None  # "retry" / "failed"
    submitted: float = 0.0
    received: float = field(default_factory=time.time)


def run_local(todo, out, workers: int, threads: int, retries: int, on_event, worker=None):
    """Run ``todo`` on a pool of ``workers`` spawned processes; call ``on_event`` per outcome.

    At most ``workers`` runs are in flight, so when a worker dies the runs that were running
    are exactly the in-flight ones: each goes back to the queue (a bystander of the crash
    included), at most ``retries`` times. ``worker`` replaces run_in_worker (tests).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    worker = worker or run_in_worker
    pending, attempts = deque(todo), {}
    context = multiprocessing.get_context("spawn")
    while pending:
        executor = ProcessPoolExecutor(
            workers, mp_context=context, initializer=init_pool_worker,
            initargs=(threads, os.getpid()),
        )  # fmt: skip
        inflight, broken = {}, False
        try:
            while (pending and not broken) or inflight:
                while pending and not broken and len(inflight) < workers:
                    cfg = pending.popleft()
                    inflight[executor.submit(worker, cfg, str(out))] = (cfg, time.time())
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    cfg, submitted = inflight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as e:
                        broken = True
                        _lost(cfg, submitted, e, attempts, retries, pending, on_event)
                    except Exception as e:  # the run itself raised: deterministic, no retry
                        on_event(Event("failed", cfg, error=_error_text(e), submitted=submitted))
                    else:
                        on_event(Event("done", cfg, result=result, submitted=submitted))
        except BaseException:
            _stop_workers(executor)
            raise
        executor.shutdown(wait=True)


def _lost(cfg, submitted, error, attempts, retries, pending, on_event):
    from ..results import run_id

    rid = run_id(cfg.identity())
    attempts[rid] = attempts.get(rid, 0) + 1
    reason = f"worker died ({error.__class__.__name__})"
    if attempts[rid] <= retries:
        pending.appendleft(cfg)
        on_event(Event("retry", cfg, error=reason, submitted=submitted))
    else:
        on_event(Event("failed", cfg, error=f"{reason} {attempts[rid]} times", submitted=submitted))


def _stop_workers(executor) -> None:
    """Kill the pool's processes now (Ctrl-C, or an error in the sweep itself)."""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=5)


def _error_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def run_dask(todo, out, client, retries: int, on_event):
    """Run ``todo`` as Dask tasks on ``client``'s cluster; files come back to ``out``.

    A task whose worker dies is rescheduled by the scheduler itself (its
    ``distributed.scheduler.allowed-failures``), then fails with KilledWorker: reported,
    not retried again here.
    """
    from distributed import as_completed

    from ..results import run_id

    futures = {}
    for rank, cfg in enumerate(todo):
        key = f"seqbench-run-{run_id(cfg.identity())}"
        future = client.submit(run_on_dask, cfg, key=key, pure=False, priority=-rank)
        futures[future] = (cfg, time.time())
    try:
        for future in as_completed(list(futures)):
            cfg, submitted = futures.pop(future)
            try:
                result = future.result()
            except Exception as e:
                on_event(Event("failed", cfg, error=_error_text(e), submitted=submitted))
                continue
            t0 = time.perf_counter()
            install_files(out, result["run_id"], result.pop("files"))
            result["install_seconds"] = time.perf_counter() - t0
            on_event(Event("done", cfg, result=result, submitted=submitted))
    finally:
        for future in futures:
            future.cancel()


def install_files(out, run_id: str, files: dict) -> None:
    """Write a run's files (name -> bytes) under ``out``: temp + rename, the runs file last."""

    from ..results import RUNS, check_writable, write_atomic

    out = check_writable(out)
    order = sorted(files, key=lambda sub: sub == RUNS)
    for sub in order:
        final = out / sub / f"{run_id}{file_suffix(sub)}"
        final.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(final, lambda tmp, data=files[sub]: Path(tmp).write_bytes(data))


def dask_client(scheduler, workers: int, threads: int, retries: int):
    """(client, cluster): connected to ``scheduler``, or to a new LocalCluster (cluster set)."""
    from distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    return local_dask_client(workers, threads, retries)


def local_dask_client(workers: int, threads: int, retries: int):
    """A LocalCluster of ``workers`` single-threaded processes, and its client."""
    import dask
    from distributed import Client, LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.update({name: str(threads) for name in THREAD_VARIABLES})
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": retries,
            "distributed.nanny.pre-spawn-environ": environ,
        }
    ):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        return Client(cluster), cluster
