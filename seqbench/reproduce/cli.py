"""``seqbench reproduce``: list the reproductions, or run one and print its claims."""

from __future__ import annotations

import sys

from ..errors import ConfigError
from ..sweep.cli import check_workers, require_dask, sweep_options


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", default=None, help="a reproduction (see --list)")
    p.add_argument("--list", action="store_true", help="the reproductions, their runs and "
                   "scale-downs")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="the classroom mode: at most ~20 minutes on 2 cores")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings for CI: checks the plumbing, not the verdicts")  # fmt: skip
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per setting (default: the reproduction's, see --list)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, tcp://host:port")
    p.add_argument("--backend", default=None, help="run every config on this backend")
    p.add_argument("--out", default=None, help="output folder (default: results/"
                   "reproductions/NAME; quick and smoke in NAME/quick, NAME/smoke)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _mode(a) -> str:
    if a.quick and a.smoke:
        raise ConfigError("--quick and --smoke are two modes; give one")
    return "smoke" if a.smoke else "quick" if a.quick else "full"


def _check(a) -> None:
    from . import REPRODUCTIONS

    if a.name is not None and a.name not in REPRODUCTIONS:
        raise ConfigError(
            f"reproduction {a.name!r} is not known; use one of {', '.join(REPRODUCTIONS)}"
        )
    if a.seeds is not None and a.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {a.seeds}")
    check_workers(a.workers)
    if a.workers is not None and a.scheduler:
        raise ConfigError("--workers and --scheduler both given: the scheduler's cluster "
                          "decides the workers; give one")  # fmt: skip
    if not a.list and a.name is None:
        raise ConfigError("name a reproduction, or --list them")


def main(a) -> int:
    _check(a)
    mode = _mode(a)
    if a.list:
        return _list(a.name)
    if a.scheduler:
        require_dask()
    from . import REPRODUCTIONS
    from .run import configs, reproduce

    repro = REPRODUCTIONS[a.name]
    configs(repro, mode, a.seeds, a.backend)  # every mistake before anything runs
    outcome = reproduce(repro, mode, seeds=a.seeds, out=a.out, backend=a.backend,
                        **sweep_options(a))  # fmt: skip
    _print_claims(repro, mode, outcome)
    return 1 if outcome.sweep.failed else 0


def _list(name) -> int:
    from . import REPRODUCTIONS
    from .run import configs

    for repro in REPRODUCTIONS.values():
        if name is not None and repro.name != name:
            continue
        quick, full = (len(configs(repro, m)) for m in ("quick", "full"))
        print(f"{repro.name}: {repro.title}")
        print(f"  paper: {repro.paper}")
        print(f"  runs:  quick {quick} ({repro.seeds['quick']} seeds), "
              f"full {full} ({repro.seeds['full']} seeds)")  # fmt: skip
        for s in repro.scale_downs + repro.quick_scale_downs:
            print(f"  scaled down: {s}")
    return 0


def _print_claims(repro, mode: str, outcome) -> None:
    from .claims import interval_text

    r = outcome.sweep
    print(f"{repro.name} ({mode}): {len(r.finished)} runs done now, {r.skipped} already done, "
          f"{len(r.failed)} failed; wall {r.wall_seconds:.0f} s")  # fmt: skip
    for row in outcome.claims.itertuples(index=False):
        case = f" [{row.case}]" if row.case else ""
        ours = interval_text(row.measured, row.ci_low, row.ci_high, row.n)
        print(f"  {row.verdict:>14}  {row.claim}{case}: {ours} (n={row.n}); "
              f"paper: {row.published}")  # fmt: skip
    for rid, cfg, error in r.failed:
        print(f"failed: {rid} {cfg.model} T={cfg.seq_len}: {error}", file=sys.stderr)
    print(f"claims, figures and report.html in {outcome.out}/")
