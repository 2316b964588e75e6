"""Claims measured on runs: one row per claim (and case), written as DIR/claims.parquet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .base import VERDICTS, Reproduction

CLAIMS_FILE = "claims.parquet"
CLAIM_COLUMNS = (
    "reproduction", "claim", "case", "statement", "published", "source", "measured", "ci_low",
    "ci_high", "n", "left_out", "verdict", "rule", "scale_down", "mode", "runs",
)  # fmt: skip


def evaluate(repro: Reproduction, runs: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The claims table of ``repro`` measured on ``runs`` (this suite's runs only)."""
    rows = []
    for claim in repro.claims:
        cases = claim.each(runs) if claim.each is not None else [("", runs)]
        for case, subset in cases or [("", runs.iloc[0:0])]:
            rows.append(_row(repro, claim, case, subset, mode))
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def _row(repro: Reproduction, claim, case: str, runs: pd.DataFrame, mode: str) -> dict:
    from ..results import t_interval

    values = claim.measure(runs) if not runs.empty else pd.Series(dtype=float)
    values = np.asarray(values, dtype=float)
    iv = t_interval(values)
    verdict = claim.rule.decide(iv)
    if verdict not in VERDICTS:
        raise ValueError(f"rule of {repro.name}/{claim.name} gave {verdict!r}")
    return {
        "reproduction": repro.name,
        "claim": claim.name,
        "case": case,
        "statement": claim.statement,
        "published": claim.published,
        "source": claim.source,
        "measured": iv.mean,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "n": iv.n,
        "left_out": int(values.size - iv.n),  # seeds whose value was not finite (diverged)
        "verdict": verdict,
        "rule": claim.rule.text,
        "scale_down": repro.scale_down_text(mode),
        "mode": mode,
        "runs": len(runs),
    }


def write_claims(table: pd.DataFrame, out) -> Path:
    """DIR/claims.parquet, written to a temp file and renamed into place."""
    from ..results import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write_atomic(out / CLAIMS_FILE, lambda tmp: table.to_parquet(tmp, index=False))


def interval_text(measured: float, low: float, high: float, n: int) -> str:
    """'0.53 [0.41, 0.65]' (n >= 2), '0.53' (n = 1) or '–' (no value)."""
    from ..results.intervals import Interval, fmt_interval

    if n == 0 or measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return "–"
    return fmt_interval(Interval(int(n), float(measured), float(low), float(high)))


def readme_table(root="results/reproductions", mode: str = "full") -> str:
    """The README's "What seqbench reproduces" table, from every ROOT/*/claims.parquet (the
    full mode's; ``mode="quick"`` reads ROOT/*/quick/claims.parquet)."""
    pattern = f"*/{CLAIMS_FILE}" if mode == "full" else f"*/{mode}/{CLAIMS_FILE}"
    paths = sorted(Path(root).glob(pattern))
    if not paths:
        return f"(no {CLAIMS_FILE} under {root} yet)\n"
    claims = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    lines = [
        "| reproduction | claim | paper's figure | ours [95% CI] | n | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in claims.itertuples(index=False):
        claim = r.statement + (f" ({r.case})" if r.case else "")
        paper = f"{r.published} ({r.source})"
        ours = interval_text(r.measured, r.ci_low, r.ci_high, r.n)
        mode = "" if r.mode == "full" else f" ({r.mode} mode)"
        cells = [r.reproduction + mode, claim, paper, ours, str(r.n), r.verdict]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
