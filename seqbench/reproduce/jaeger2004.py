"""Jaeger & Haas 2004, Mackey-Glass: an 84-step free run of an echo-state network.

The paper (Science 304: 78-80, "Harnessing nonlinearity", its Fig. 3 and its supporting
online material): a reservoir of N = 1000 tanh units learns the Mackey-Glass series (tau = 17)
with output feedback; after training it runs free, its output fed back, and its error 84
steps after the last teacher value is NRMSE84 ~ 10^-4.2.

Protocol, setting by setting (source; "unconfirmed" where the stored sources could not show
it and it comes from our reading of the paper and its supplement):

- series: dx/dt = 0.2 x(t-17) / (1 + x(t-17)^10) - 0.1 x(t), one sample per time unit. The
  paper integrates with Euler steps of 1/10 and keeps every 10th value; seqbench's task uses
  RK4 steps of 1/10 sampled every 10th (a more accurate path to the same attractor;
  seqbench.tasks.mackey_glass). Each window starts from its own random history.
- transform: the teacher is tanh(x - 1) (paper; task option ``scaling=tanh``).
- reservoir: N = 1000 tanh units, not leaky (leak 1), W sparse with 1% connectivity (about
  10 inputs per unit), nonzero values uniform, rescaled to spectral radius 0.8 (paper).
- input: a constant bias input of 0.02 through weights uniform in [-1, 1] (supplement,
  unconfirmed); here the reservoir's bias b ~ U(-1, 1) x 0.02, which is the same term.
- output feedback: W_fb uniform in [-1, 1] (supplement, unconfirmed: ``feedback_scaling`` 1);
  the output is one linear unit reading the reservoir (and a constant: seqbench's ridge fits
  an intercept).
- training (teacher forcing): 3000 steps of the teacher fed back; the first 1000 discarded
  (washout), the readout fitted on the 2000 after (paper: "3000 steps, first 1000
  discarded"); one training sequence per network (task protocol ``jaeger2004``).
- noise during training: the paper adds a small uniform noise during sampling to make the
  free run stable; its amplitude (of the order 1e-10 by our reading, unconfirmed; the issue
  gives the same order) and whether on the states or the fed-back teacher could not be
  confirmed. Here: U(-a, a) added to the fed-back teacher (``teacher_noise``), a = TEACHER_NOISE.
- readout: the paper solves the linear regression directly (a pseudo-inverse, no ridge);
  here least squares by SVD on the 2000 samples (Ridge.fit_lstsq, float64) with a ridge of
  1e-13, next to none. Chosen on two development networks (seeds 100, 101, not the claim's):
  ridge 1e-10 gave NRMSE84 1.4e-3 and 1.6e-3, ridge 1e-13 gave 1.2e-4 and 1.7e-4.
- test: each trained network teacher-forced on a fresh window for 3000 steps (the paper's
  test warms up with 1000) then free for 84; 100 test windows per network (paper: 100
  independent trials).
- NRMSE84 = sqrt(mean over the 100 windows of (y(84) - d(84))^2) / sigma, sigma the standard
  deviation of the teacher signal tanh(x - 1) on the attractor (seqbench's "free_run_nrmse_last";
  the paper normalises by the variance of the signal; that it means the transformed teacher's,
  not the raw x's, is our reading: the run record holds the raw-coordinate figure too,
  "free_run_nrmse_last_original"). Each seed is an independent network; the claim's
  interval is over seeds of log10 NRMSE84.

Budgets: full and quick run the paper's network (N = 1000, a few seconds a network on 2
cores); full with at least 20 networks (seeds; the issue's "at least 20 independent trials"),
quick with 3. Smoke: N = 50, 400-step windows, washout 100, 20-step free run.

Claim (rule fixed here, before any full run): log10 NRMSE84 lies below log10(6e-4) = -3.22,
within 10x of the paper's 10^-4.2.

Measured on 2 cores beside other jobs, 2 workers: quick (3 networks) 46 s wall, full (20)
66 s wall, a network 6-28 s.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .base import DEFAULT_SEEDS, Claim, Reproduction, below, grid, json_column, per_seed
from .figures import labels, new_figure, panels, save

SOURCE = "Jaeger & Haas 2004, Science 304:78, Fig. 3 and supporting material"
PUBLISHED_LOG10 = -4.2
GOAL = 6e-4  # within 10x of 10^-4.2
TEACHER_NOISE = 1e-10
RIDGE = 1e-13
FULL_SEEDS = 20

MODEL = dict(spectral_radius=0.8, connectivity=0.01, weight_distribution="uniform",
             bias_scaling=0.02, output_feedback=True, feedback_scaling=1.0,
             teacher_noise=TEACHER_NOISE, ridge=RIDGE)  # fmt: skip
SETTINGS = {
    "smoke": dict(hidden_size=50, seq_len=400, batch_size=4, steps=1,
                  task_options=dict(scaling="tanh", washout=100, free_run=20),
                  model_options={**MODEL, "connectivity": 0.1}),
    "quick": dict(hidden_size=1000, batch_size=10, task_options=dict(protocol="jaeger2004",
                  scaling="tanh"), model_options=MODEL),
    "full": dict(hidden_size=1000, batch_size=10, task_options=dict(protocol="jaeger2004",
                 scaling="tanh"), model_options=MODEL),
}  # fmt: skip


def suite(mode: str, seeds: int) -> list:
    seeds = max(seeds, FULL_SEEDS) if mode == "full" else seeds
    defaults = dict(task="mackey-glass", model="esn", dtype="float64", **SETTINGS[mode])
    return grid(defaults, seeds)


def _log10_nrmse84(runs: pd.DataFrame) -> pd.Series:
    nrmse = [m.get("free_run_nrmse_last", math.nan) for m in json_column(runs, "metrics")]
    values = pd.Series(np.log10(np.asarray(nrmse, dtype=float)), index=runs.index)
    return per_seed(runs, values)


CLAIMS = (
    Claim(
        "nrmse84",
        "84 steps into the free run the error is within 10x of the paper's "
        "(log10 NRMSE84, NRMSE = RMSE over 100 test windows / std of tanh(x - 1) on the attractor)",
        f"log10 NRMSE84 = {PUBLISHED_LOG10} (NRMSE84 ~ 6.3e-5)",
        SOURCE,
        measure=_log10_nrmse84,
        rule=below(math.log10(GOAL)),
    ),
)


def figure(runs: pd.DataFrame, history: pd.DataFrame, out) -> list:
    """Left: log10 free-run NRMSE against the horizon, one line per network; right: the first
    network's first test window, the teacher's last steps, the truth and the free run."""
    curves = json_column(runs.sort_values("seed"), "curves")
    fig = new_figure(10, 3.6)
    left, right = panels(fig, 2)
    for c in curves:
        err = np.asarray(c.get("free_run_nrmse_by_step", []), dtype=float)
        left.plot(np.arange(1, err.size + 1), np.log10(err), color="tab:blue", lw=0.8, alpha=0.6)
    left.plot([84], [PUBLISHED_LOG10], "r*", ms=12, label="Jaeger & Haas 2004: 10^-4.2")
    left.axhline(math.log10(GOAL), color="r", ls=":", lw=1, label="10x the paper (6e-4)")
    labels(
        left,
        "free-run step (horizon)",
        "log10 NRMSE (RMSE / std of the teacher)",
        f"Mackey-Glass free run, {len(curves)} networks",
    )
    if curves:
        c = curves[0]
        teacher, true, pred = (np.asarray(c.get(k, []), dtype=float)
                               for k in ("trace_teacher", "trace_true", "trace_pred"))  # fmt: skip
        t0 = np.arange(-teacher.size + 1, 1)
        t1 = np.arange(1, true.size + 1)
        right.plot(t0, teacher, color="0.5", lw=1, label="teacher (forced)")
        right.plot(t1, true, color="k", lw=1.5, label="true")
        right.plot(t1, pred, color="tab:orange", ls="--", lw=1.5, label="free run")
        right.axvline(0.5, color="0.7", lw=0.8)
        labels(
            right,
            "step (0: last teacher value)",
            "tanh(x - 1)",
            "predicted against true (seed 0, first test window)",
        )
    return [save(fig, out, "mackey_glass_free_run.png")]


REPRODUCTION = Reproduction(
    name="jaeger2004-mackey-glass",
    title="Mackey-Glass: an echo-state network's 84-step free run",
    paper="Jaeger & Haas 2004, Harnessing nonlinearity: predicting chaotic systems and saving "
    "energy in wireless communication (Science 304:78-80)",
    suite=suite,
    claims=CLAIMS,
    figure=figure,
    scale_downs=(
        "RK4 (dt 0.1) instead of Euler (dt 0.1) for the series",
        f"least squares with ridge {RIDGE:g} instead of the paper's pseudo-inverse",
        f"training noise U(-{TEACHER_NOISE:g}, {TEACHER_NOISE:g}) on the fed-back teacher "
        "(amplitude and place unconfirmed)",
        "test warm-up 3000 teacher-forced steps instead of 1000",
        f"{FULL_SEEDS} networks of 100 test windows each (the paper: 100 trials)",
    ),
    quick_scale_downs=("quick: 3 networks",),
    notes=__doc__,
    seeds={**DEFAULT_SEEDS, "full": FULL_SEEDS},
)
