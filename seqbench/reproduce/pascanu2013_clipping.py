"""Pascanu, Mikolov & Bengio 2013, exploding and vanishing gradients and norm clipping.

The paper (§2.1): for a tanh RNN, a largest singular value of W_hh below 1 is sufficient for
the gradient to vanish and above 1 necessary for it to explode; (§3.2, Algorithm 1) rescaling
the gradient to norm c when it is larger (norm clipping) removes the explosions' damage to
SGD, and does nothing for vanishing. It trains tanh RNNs with SGD on synthetic tasks, the
addition problem among them.

Here: an Elman (tanh) network on the adding problem, plain SGD at lr 0.03 (seqbench's SGD has
momentum 0.9), W_hh started at spectral radius ρ ∈ {0.8, 1.0, 1.2, 1.5, 2.0} (init
"spectral:RHO"), T ∈ {50, 100}, no clipping against norm clipping at 1. "Diverged" is the
run's status: a loss or gradient that stopped being finite (the training loop's NaN/Inf
guard). The gradient probe at initialisation (``grad_ratio_log10_init``: log10 of
||dL_T/dh_1|| / ||dL_T/dh_T||, before the first update) is the vanishing measure. Budgets:

- full: H=128, batch 64, 3000 steps, 5 seeds: 5 x 2 x 2 x 5 = 100 runs; an Elman step at
  T=100, B=64, H=128 is ~10 ms, so a run is under a minute and the whole sweep well under an
  hour on 2 cores (diverged runs stop early).
- quick: H=64, batch 32, 1000 steps, 3 seeds: 5 x 2 x 2 x 3 = 60 runs of seconds each;
  measured: 156 s wall on 2 cores (2 workers).
- the rate: single runs (T=50, H=64, batch 32, 1000 steps, no clipping) at lr 0.01 never
  diverged (the quick mode's 60 runs included: 0 of 30 unclipped runs at any ρ, though the
  gradient norm reached 3288 at ρ=1); at 0.05 and 0.1 every ρ diverged, 0.8 included (the
  step, not the recurrence, blew up); at 0.02 none diverged; at 0.03 ρ=0.8 trained and
  ρ=1.5 and 2.0 diverged (steps 312, 178). lr 0.03 is the rate where SGD is stable for a
  contracting W_hh; the claims' rules were not changed.
- smoke: ρ ∈ {0.8, 2.0}, T=5, H=8, batch 8, 10 steps: the plumbing only.

Claims (rules fixed here, before any full run): without clipping, the divergence rate at the
largest ρ minus the rate at the smallest, per seed over both T, is above 0; with norm clipping
at 1 no run diverges; for ρ < 1 the probe at initialisation is below -1 (the first step's
gradient at least ten times smaller than the last's), with and without clipping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import (
    Claim,
    Reproduction,
    above,
    below,
    diverged,
    each_value,
    grid,
    number,
    per_seed,
    rho,
    zero_rate,
)
from .figures import labels, new_figure, save

SOURCE_EXPLODE = "Pascanu, Mikolov & Bengio 2013, §2.1 and §3.2 (Algorithm 1)"
SOURCE_VANISH = "Pascanu, Mikolov & Bengio 2013, §2.1 (ρ < 1 sufficient for vanishing)"
RHOS = [0.8, 1.0, 1.2, 1.5, 2.0]
LR = 0.03  # chosen on single probe runs before the quick mode, see the docstring

SETTINGS = {
    "smoke": dict(rho=[0.8, 2.0], seq_len=[5], hidden_size=8, batch_size=8, steps=10,
                  eval_every=5, eval_batches=1, profile_every=5),
    "quick": dict(rho=RHOS, seq_len=[50, 100], hidden_size=64, batch_size=32, steps=1000,
                  eval_every=100, eval_batches=8, profile_every=100),
    "full": dict(rho=RHOS, seq_len=[50, 100], hidden_size=128, batch_size=64, steps=3000,
                 eval_every=100, profile_every=250),
}  # fmt: skip


def suite(mode: str, seeds: int) -> list:
    s = dict(SETTINGS[mode])
    axes = {
        "init": [f"spectral:{r:g}" for r in s.pop("rho")],
        "seq_len": s.pop("seq_len"),
        "clip": ["none", "norm:1"],
    }
    defaults = dict(task="adding", model="elman", optimizer="sgd", lr=LR, **s)
    return grid(defaults, seeds, axes)


def _unclipped(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["clip"] == "none"]


def _divergence_rise(runs: pd.DataFrame) -> pd.Series:
    """Per seed: divergence rate at the largest ρ minus at the smallest, clip none."""
    r = _unclipped(runs)
    rhos = rho(r)
    if r.empty or rhos.nunique() < 2:
        return pd.Series(dtype=float)
    rate = {x: per_seed(r[rhos == x], diverged(r[rhos == x])) for x in (rhos.min(), rhos.max())}
    return (rate[rhos.max()] - rate[rhos.min()]).dropna()


def _clipped_divergence(runs: pd.DataFrame) -> pd.Series:
    r = runs[runs["clip"] == "norm:1"]
    return per_seed(r, diverged(r))


def _probe_below_one(runs: pd.DataFrame) -> pd.Series:
    """Per seed: mean over T of the probe at initialisation, the runs with ρ < 1."""
    r = runs[rho(runs) < 1.0]
    return per_seed(r, number(r["grad_ratio_log10_init"]))


CLAIMS = (
    Claim(
        "divergence-rises-with-rho",
        "Without clipping the divergence rate rises with ρ(W_hh): rate at the largest ρ minus "
        "at the smallest (both T)",
        "exploding gradients need ρ > 1; SGD steps blow up without clipping (> 0)",
        SOURCE_EXPLODE,
        _divergence_rise,
        above(0.0),
    ),
    Claim(
        "norm-clipping-no-divergence",
        "Norm clipping at 1 brings the divergence rate to zero (every ρ and T)",
        "clipped SGD does not diverge (rate 0)",
        SOURCE_EXPLODE,
        _clipped_divergence,
        zero_rate(),
    ),
    Claim(
        "vanishing-below-one",
        "For ρ < 1 the gradient vanishes at initialisation, with or without clipping: "
        "log10 ||dL_T/dh_1|| / ||dL_T/dh_T|| before the first update (mean over T)",
        "ρ < 1 is sufficient for vanishing (< -1: a tenfold loss or more)",
        SOURCE_VANISH,
        _probe_below_one,
        below(-1.0),
        each_value("clip"),
    ),
)


def figure(runs: pd.DataFrame, history: pd.DataFrame, out) -> list:
    """Divergence rate and the log10 probe ratio at initialisation against ρ."""
    from ..results import t_interval

    fig = new_figure(9.0, 3.6)
    left, right = fig.subplots(1, 2)
    rhos = rho(runs)
    styles = {"none": "-", "norm:1": "--"}
    for (clip, t), g in runs.groupby(["clip", "seq_len"], sort=True):
        x = sorted(rhos[g.index].unique())
        rate = [diverged(g[rhos[g.index] == v]).mean() for v in x]
        left.plot(x, rate, styles.get(clip, ":"), marker="o", label=f"clip {clip}, T={t}")
    left.set_ylim(-0.05, 1.05)
    labels(left, "spectral radius ρ of W_hh at init", "divergence rate")
    for t, g in runs.groupby("seq_len", sort=True):
        x = sorted(rhos[g.index].unique())
        ivs = [t_interval(number(g.loc[rhos[g.index] == v, "grad_ratio_log10_init"])) for v in x]
        mean = np.array([iv.mean for iv in ivs])
        err = np.array([iv.half_width if iv.n > 1 else 0.0 for iv in ivs])
        right.errorbar(x, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=f"T={t}")
    right.axhline(0.0, color="k", lw=0.8)
    right.axvline(1.0, color="grey", ls=":", lw=0.8)
    labels(
        right, "spectral radius ρ of W_hh at init", "log10 ||dL_T/dh_1|| / ||dL_T/dh_T|| at init"
    )
    return [save(fig, out, "clipping.png")]


REPRODUCTION = Reproduction(
    name="pascanu2013-clipping",
    title="Exploding gradients, norm clipping, and vanishing below ρ = 1",
    paper="Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural "
    "networks (ICML)",
    suite=suite,
    claims=CLAIMS,
    figure=figure,
    scale_downs=(
        "the adding problem only, T ∈ {50, 100} (the paper also used temporal order, "
        "multiplication, and longer T)",
        "SGD lr 0.03 with momentum 0.9 (seqbench's SGD), one rate",
        "divergence = a non-finite loss or gradient within 3000 steps of batch 64, H=128",
    ),
    quick_scale_downs=(
        "quick: H=64, 1000 steps of batch 32, 3 seeds, evaluation on 256 sequences",
    ),  # fmt: skip
    notes=__doc__,
)
