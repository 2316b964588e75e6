"""Reproductions: published results about recurrent networks, one command each.

``seqbench reproduce NAME`` runs a reproduction's suite through seqbench.sweep (resumable,
local processes or Dask), measures its claims on the runs, and writes under DIR (default
results/reproductions/NAME; quick and smoke modes in DIR/quick, DIR/smoke):

    DIR/runs/, history/, profiles/   the sweep's own tables
    DIR/claims.parquet               one row per claim (and case): published, measured with
                                     its 95% t interval over seeds, n, verdict, rule, ...
    DIR/*.png, DIR/report.html       the paper-shaped figure and a page with the claims

A reproduction is a ``Reproduction`` (base.py) declared in a module (one per paper: arjovsky2016
declares two) and one line below:

    REPRODUCTION = Reproduction(
        name="author2000-thing", title="...", paper="Author 2000, Title (Venue)",
        suite=lambda mode, seeds: grid({"task": "adding", "steps": STEPS[mode]}, seeds,
                                       {"model": ["lstm", "elman"]}),
        claims=(Claim("lstm-beats-baseline", "LSTM ends below 0.167", "MSE < 0.167",
                      "Author 2000, Fig. 2", measure=lstm_mse_per_seed, rule=below(0.167)),),
        figure=draw,  # (runs, history, out) -> [png paths]
        scale_downs=("T=100 instead of 1000",),
    )

Modules: base (Reproduction, Claim, Rule and the rules, grid, measure helpers), claims
(evaluation, claims.parquet, the README table), run (sweep, claims, figures, page), figures
(drawing helpers), cli (``seqbench reproduce``), and one module per reproduction.
"""

from . import arjovsky2016, jaeger2002, jaeger2004, karpathy2015_char, pascanu2013_clipping
from .base import (
    DEFAULT_SEEDS,
    MODES,
    VERDICTS,
    Claim,
    Reproduction,
    Rule,
    above,
    at_least,
    below,
    grid,
    zero_rate,
)
from .claims import CLAIM_COLUMNS, CLAIMS_FILE, evaluate, readme_table, write_claims
from .run import Outcome, configs, default_out, reproduce

REPRODUCTIONS = {
    r.name: r
    for r in (
        arjovsky2016.COPY,
        arjovsky2016.ADDING,
        pascanu2013_clipping.REPRODUCTION,
        jaeger2004.REPRODUCTION,
        jaeger2002.REPRODUCTION,
        karpathy2015_char.REPRODUCTION,
    )
}

__all__ = [
    "CLAIM_COLUMNS",
    "CLAIMS_FILE",
    "DEFAULT_SEEDS",
    "MODES",
    "REPRODUCTIONS",
    "VERDICTS",
    "Claim",
    "Outcome",
    "Reproduction",
    "Rule",
    "above",
    "at_least",
    "below",
    "configs",
    "default_out",
    "evaluate",
    "grid",
    "readme_table",
    "reproduce",
    "write_claims",
    "zero_rate",
]
