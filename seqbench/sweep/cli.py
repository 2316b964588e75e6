"""``seqbench sweep``: its arguments, the dry-run plan and the summary it prints."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from .orchestrate import SweepReport, sweep
from .plan import plan
from .suite import Suite, load_suite


def add_arguments(p) -> None:
    p.add_argument("suite", help="suite file (suites/NAME.toml) or a bare suite name")
    p.add_argument(
        "--out", default=None, help="results directory (default: results/<suite file stem>)"
    )
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    p.add_argument(
        "--threads", type=int, default=None, help="threads per run (default: cores // workers)"
    )
    p.add_argument("--dask", action="store_true", help="run on a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, tcp://host:port")
    p.add_argument("--retries", type=int, default=2, help="retries of a run whose worker died")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-run lines")


def main(args) -> int:
    check_workers(args.workers)
    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else Path("results") / suite.path.stem
    if args.dry_run:
        return _print_plan(suite, out)
    if args.scheduler or args.dask:
        require_dask()
    report = sweep(suite, out, **sweep_options(args))
    _print_summary(suite, out, report)
    return 1 if report.failed else 0


def sweep_options(args) -> dict:
    """``sweep()``'s keywords from parsed arguments; a command without a flag (seqbench
    reproduce has no --threads, --dask or --retries) leaves sweep's default."""
    names = ("workers", "threads", "scheduler", "dask", "retries")
    options = {n: getattr(args, n) for n in names if hasattr(args, n)}
    return {**options, "progress": not args.quiet}


def require_dask() -> None:
    """One line instead of an ImportError deep in a run, before anything is planned."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError("Dask is not installed: pip install 'seqbench[dask]'") from None


def check_workers(workers) -> None:
    """--workers: at least 1; more than the cores is allowed (they share them), with a note."""
    if workers is None:
        return
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    cores = os.cpu_count() or 1
    if workers > cores:
        print(
            f"seqbench: warning: --workers {workers} is more than the {cores} cores here; "
            "runs will share them and their timings will be slower",
            file=sys.stderr,
        )


def _print_plan(suite: Suite, out: Path) -> int:
    import pandas as pd

    from ..results import render_table, run_id

    p = plan(suite, out)
    rows = [{"run_id": run_id(c.identity()), **_short(c)} for c in p.todo]
    print(f"suite {suite.name}: {len(suite.configs)} runs ({suite.duplicates} duplicates merged), "
          f"{len(p.done)} already in {out}/, {len(p.todo)} to run")  # fmt: skip
    if rows:
        print(render_table(pd.DataFrame(rows), title="to run, in this order"))
    return 0


def _short(cfg) -> dict:
    keys = ("task", "model", "bidirectional", "seq_len", "hidden_size", "clip", "seed", "steps")
    d = {k: getattr(cfg, k) for k in keys}
    d["options"] = json.dumps(cfg.model_options) if cfg.model_options else ""
    return d


def _print_summary(suite: Suite, out: Path, report: SweepReport) -> None:
    from .. import results
    from ..report.tables import summary_tables

    df = results.load(out)
    df = df[df["run_id"].isin(suite.run_ids())]
    for title, table in summary_tables(df).items():
        print(title)
        print(results.render_table(table), end="")
        for note in table.attrs.get("notes", []):
            print(f"  {note}")
        print()
    t = report.timing
    line = (f"{len(report.finished)} runs done now, {report.skipped} were already done, "
            f"{len(report.failed)} failed, {report.retries} retried; "
            f"wall {report.wall_seconds:.1f} s")  # fmt: skip
    if t.get("runs"):
        line += (
            f" ({t['executor']}: workers busy {100 * t['utilisation']:.0f}%, "
            f"training {t['train_seconds']:.0f} s of {t['worker_busy_seconds']:.0f} s busy, "
            f"start-up {t['first_start_seconds']:.1f} s)"
        )
    print(line)
    for rid, cfg, error in report.failed:
        print(f"failed: {rid} {cfg.task} {cfg.model} T={cfg.seq_len}: {error}")
    print(f"results in {out}/  (report: seqbench report --out {out})")
