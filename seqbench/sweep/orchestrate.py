"""The sweep itself: plan, run on an executor, collect the outcomes, log the timing."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..errors import ConfigError
from .executors import Event, dask_client, run_dask, run_local
from .plan import plan
from .progress import SweepProgress
from .suite import Suite, load_suite


@dataclass
class SweepReport:
    planned: int
    skipped: int
    finished: list = field(default_factory=list)  # worker result dicts
    failed: list = field(default_factory=list)  # (run id, config, error)
    retries: int = 0
    wall_seconds: float = 0.0
    timing: dict = field(default_factory=dict)


def sweep(
    suite,
    out,
    *,
    workers: int | None = None,
    threads: int | None = None,
    scheduler: str | None = None,
    dask: bool = False,
    retries: int = 2,
    progress: bool = True,
    client=None,
    worker=None,
) -> SweepReport:
    """Run every config of ``suite`` not yet under ``out``; see seqbench.sweep's docstring.

    Local processes by default; Dask with ``dask`` (a LocalCluster of ``workers``),
    ``scheduler`` (an address) or ``client`` (yours, left open). ``worker`` replaces
    run_in_worker in the local pool (tests).
    """
    from ..results import check_writable, run_id

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    workers = workers or os.cpu_count() or 1
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if workers < 1 or threads < 1 or retries < 0:
        raise ConfigError("workers and threads must be >= 1 and retries >= 0")
    check_writable(out)
    p = plan(suite, out)
    report = SweepReport(planned=len(suite.configs), skipped=len(p.done))
    if not p.todo:
        return report
    view = SweepProgress(len(p.todo), enabled=progress)

    def on_event(event: Event) -> None:
        rid = run_id(event.config.identity())
        if event.kind == "done":
            report.finished.append({**event.result, "submitted": event.submitted,
                                    "received": event.received})  # fmt: skip
        elif event.kind == "retry":
            report.retries += 1
        else:
            report.failed.append((rid, event.config, event.error))
        view.update(event, rid)

    t0 = time.perf_counter()
    started = time.time()
    with view:
        if client is not None:
            executor = f"dask {client.scheduler.address}"
            workers = sum(client.nthreads().values()) or workers
            run_dask(p.todo, out, client, retries, on_event)
        elif scheduler or dask:
            executor = f"dask {scheduler or f'LocalCluster({workers})'}"
            client, cluster = dask_client(scheduler, workers, threads, retries)
            try:
                workers = sum(client.nthreads().values()) or workers
                run_dask(p.todo, out, client, retries, on_event)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        else:
            executor = f"processes({workers})"
            run_local(p.todo, out, workers, threads, retries, on_event, worker=worker)
    report.wall_seconds = time.perf_counter() - t0
    report.timing = timing_summary(report, started, workers, executor)
    _log_sweep(out, suite, report)
    return report


def timing_summary(report: SweepReport, started: float, workers: int, executor: str) -> dict:
    """Where the sweep's wall time went: training, per-run overhead, dispatch, idle workers."""
    import statistics

    rows = report.finished
    if not rows:
        return {"executor": executor, "workers": workers}

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    busy = sum(r["worker_seconds"] for r in rows)
    train = sum(r["train_seconds"] or 0.0 for r in rows)
    compile_ = sum(r["compile_seconds"] or 0.0 for r in rows)
    return {
        "executor": executor,
        "workers": workers,
        "runs": len(rows),
        "wall_seconds": report.wall_seconds,
        "worker_busy_seconds": busy,
        "train_seconds": train,  # the training loops, first step's compile/cache load included
        "compile_seconds": compile_,
        "utilisation": busy / (report.wall_seconds * workers) if report.wall_seconds else None,
        "first_start_seconds": min(r["started"] for r in rows) - started,  # pool start-up
        "median_run_overhead_seconds": median(
            r["worker_seconds"] - (r["train_seconds"] or 0.0) for r in rows
        ),  # in the worker, outside the loop: build, final eval, write (and ship, on Dask)
        # submitted -> started in the worker: the pool submits a run only when a worker is
        # free, so this is its dispatch cost; Dask gets every run at once, so it is queueing
        "median_dispatch_seconds": median(r["started"] - r["submitted"] for r in rows),
        "median_return_seconds": median(r["received"] - r["ended"] for r in rows),
        "median_install_seconds": median(r.get("install_seconds") for r in rows),
    }


def _log_sweep(out, suite: Suite, report: SweepReport) -> None:
    from ..results import append_sweep_log, utc_now

    entry = {
        "suite": suite.name,
        "file": str(suite.path),
        "finished_at": utc_now(),
        "planned": report.planned,
        "skipped": report.skipped,
        "ran": len(report.finished),
        "failed": len(report.failed),
        "retries": report.retries,
        **report.timing,
    }
    append_sweep_log(out, entry)
