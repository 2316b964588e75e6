"""Running a reproduction: its suite through seqbench.sweep (resumable), then its claims,
its figures and a small report page, all under one folder."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from .base import MODES, Reproduction
from .claims import evaluate, interval_text, write_claims


@dataclass
class Outcome:
    out: Path
    claims: pd.DataFrame
    figures: list
    page: Path
    sweep: object  # seqbench.sweep.SweepReport


def default_out(name: str, mode: str) -> Path:
    """results/reproductions/NAME for the full mode; quick and smoke in a subfolder, so their
    claims never replace the full mode's."""
    base = Path("results") / "reproductions" / name
    return base if mode == "full" else base / mode


def configs(repro: Reproduction, mode: str, seeds: int | None = None, backend=None) -> list:
    """The mode's RunConfigs, on ``backend`` when given (each config validated again)."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not known; use one of {', '.join(MODES)}")
    seeds = repro.seeds[mode] if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    cfgs = repro.suite(mode, seeds)
    if backend is not None:
        cfgs = [dataclasses.replace(c, backend=backend).validated() for c in cfgs]
    return cfgs


def as_suite(repro: Reproduction, mode: str, cfgs: list):
    from ..sweep import Suite

    return Suite(
        path=Path(f"seqbench/reproduce/{repro.name}"),
        name=f"reproduce-{repro.name}-{mode}",
        description=repro.title,
        configs=tuple(cfgs),
    )


def reproduce(
    repro: Reproduction,
    mode: str = "full",
    *,
    seeds: int | None = None,
    out=None,
    backend: str | None = None,
    **sweep_options,
) -> Outcome:
    """Run what is missing of the mode's suite under ``out`` (``sweep_options``: workers,
    threads, scheduler, progress, ... as seqbench.sweep.sweep takes them), then measure the
    claims on this suite's runs, draw the figures and write DIR/claims.parquet and
    DIR/report.html."""
    from .. import results
    from ..sweep import sweep

    suite = as_suite(repro, mode, configs(repro, mode, seeds, backend))
    out = Path(out) if out is not None else default_out(repro.name, mode)
    report = sweep(suite, out, **sweep_options)
    ids = suite.run_ids()
    runs = results.load(out)
    runs = runs[runs["run_id"].isin(ids)].reset_index(drop=True)
    history = results.load_history(out, ids) if len(runs) else pd.DataFrame()
    table = evaluate(repro, runs, mode)
    write_claims(table, out)
    figures = [Path(p) for p in repro.figure(runs, history, out)] if len(runs) else []
    page = write_page(repro, mode, table, figures, out, len(ids), len(runs))
    return Outcome(out, table, figures, page, report)


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .note { color: #666; } img { max-width: 100%; }
.reproduced { color: #1a7f37; } .partly { color: #9a6700; } .not { color: #cf222e; }
"""


def write_page(repro, mode, table, figures, out, planned, have) -> Path:
    """DIR/report.html: the claims table and the figures, a section of its own."""
    e = html.escape
    rows = []
    for r in table.itertuples(index=False):
        css = "not" if r.verdict == "not reproduced" else r.verdict
        claim = e(r.statement) + (f" <b>{e(r.case)}</b>" if r.case else "")
        rows.append(
            f"<tr><td>{claim}</td><td>{e(r.published)}<br><span class=note>{e(r.source)}"
            f"</span></td><td>{e(interval_text(r.measured, r.ci_low, r.ci_high, r.n))}</td>"
            f"<td>{r.n}</td><td class={css}>{e(r.verdict)}</td>"
            f"<td class=note>{e(r.rule)}</td></tr>"
        )
    scale = "".join(f"<li>{e(s)}</li>" for s in repro.scale_down_list(mode))
    body = [
        f"<section id={e(repro.name)}><h2>{e(repro.title)}</h2>",
        f"<p>{e(repro.paper)}. Mode <b>{e(mode)}</b>: {have} of {planned} runs recorded.</p>",
        f"<details><summary>settings and why</summary><pre>{e(repro.notes)}</pre></details>"
        if repro.notes
        else "",
        f"<h3>Scaled down from the paper</h3><ul>{scale}</ul>" if scale else "",
        "<table><tr><th>claim</th><th>paper</th><th>ours: mean [95% t interval over seeds]</th>"
        "<th>n</th><th>verdict</th><th>rule</th></tr>",
        *rows,
        "</table>",
        *(f'<p><img src="{e(p.name)}" alt="{e(p.stem)}"></p>' for p in figures),
        "</section>",
    ]
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{e(repro.name)}</title>"
        f"<style>{CSS}</style></head><body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>"
    )
    path = Path(out) / "report.html"
    path.write_text(page)
    return path
