"""Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks (ICML): its two
long-memory benchmarks as two reproductions, the copying memory problem (Fig. 1) and the adding
problem (Fig. 2), sharing the paper and the way they depart from it: Adam with norm clipping at
1 instead of RMSprop, each cell over its own small lr grid (``rates_per_model``), one hidden
size for every cell, shorter lags. Each one's settings and their reasons are its ``notes``
(shown on its report page).
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from .base import (
    Claim,
    Reproduction,
    above,
    at_least,
    below,
    best_lr,
    each_value,
    final_value,
    per_seed,
    rates_per_model,
)
from .figures import curves_per_t, save

PAPER = "Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks (ICML)"
COPY_SOURCE = "Arjovsky, Shah & Bengio 2016, Fig. 1"
ADDING_SOURCE = "Arjovsky, Shah & Bengio 2016, Fig. 2"
GATED = ("lstm", "gru")
BASELINE = 0.167  # the adding problem's memoryless MSE


def _elman_lowest(column: str):
    """Per seed, the Elman network's lowest ``column`` over every lr of its grid: its claims
    ask for failure at every rate, so no rate is picked for it on the seeds it is judged on."""

    def measure(runs: pd.DataFrame) -> pd.Series:
        r = runs[runs["model"] == "elman"]
        return per_seed(r, final_value(r, column), "min")

    return measure


def _declare(name, title, task, settings, claims, figure, scale_downs, quick, notes):
    suite = partial(_suite, task, settings)
    return Reproduction(name, title, PAPER, suite, claims, figure, scale_downs, quick, notes)


def _suite(task: str, settings: dict, mode: str, seeds: int) -> list:
    return rates_per_model(task, settings[mode], seeds)


# ---------------------------------------------------------------- copying memory (Fig. 1)

COPY_NOTES = """Arjovsky, Shah & Bengio 2016, the copying memory problem (Fig. 1).

The paper: 10 symbols from 8, recalled after a lag T ∈ {100, 200, 300, 500}; an RNN (tanh)
stays at the memoryless baseline 10·ln8/(T+20) while the LSTM gets below it at short lags
(and the uRNN solves it); RMSprop lr 1e-3, batch 20, cells sized to similar parameter counts.

Here: LSTM, GRU and Elman (tanh), one size for all, Adam with norm clipping at 1 as a guard.
The quick mode runs every cell over lr ∈ {1e-3, 1e-2} and the claims take the best lr per cell
and T (seqbench.results.best_of: fewest diverged, then lowest mean eval loss over seeds). The
full mode runs the gated cells at lr 1e-2 only, the rate the quick mode found best for both
at T=10 and 20 (a pilot on other settings and seeds, chosen before any full run), and the
Elman network over lr ∈ {1e-3, 1e-2}: its claim asks for failure at every rate of its grid
(per seed, its lowest loss over the grid), so no rate is picked for it on the seeds it is
judged on. Budgets, and why:

- full: T ∈ {10, 20, 50, 100}, H=128, batch 64, 5000 steps, 5 seeds: (2 + 2) x 4 x 5 = 80 runs.
  The paper's lags (100-500) and its ~thousands of iterations at T=500 are hours per run in
  float32 on 2 cores (a T=100 step at B=64, H=128 is ~0.03-0.1 s); T=100 is the paper's
  shortest lag and the largest that fits a background sweep of a few hours. A gated run
  stops once solved (eval loss < 0.1 x baseline or every recalled symbol right).
- quick: T ∈ {10, 20}, H=64, batch 32, 4000 steps, 3 seeds: 3 x 2 x 2 x 3 = 36 runs on
  2 workers. Measured: at 1500 steps the 36 runs took 166 s wall on 2 cores (~8 s of training
  a run) and only the GRU left the baseline (0.63-0.67x at lr 1e-2; LSTM 0.91-0.96x), so the
  quick mode trains 4000 steps; evaluation on 256 held-out sequences every 100 steps.
  Measured: 360 s wall on 2 cores beside other jobs (load average 4-5); at the best lr (1e-2)
  GRU 0.44x / 0.34x and LSTM 0.70x / 0.79x the baseline at T=10 / 20, Elman 0.99-1.0x. Long
  enough for the gated cells to leave the baseline, too short to solve the task.
- smoke: T ∈ {3, 5}, H=8, batch 8, 10 steps, one lr: the plumbing only.

Claims (rules fixed here, before any full run): the worse of LSTM and GRU is below the
baseline (eval loss ÷ baseline < 1) at each T; Elman stays at or above 0.9 x baseline at each
T; and the gated cells' loss ratio is higher at the largest T than at the smallest.
"""

COPY_SETTINGS = {
    "smoke": dict(seq_len=[3, 5], hidden_size=8, batch_size=8, steps=10, eval_every=5,
                  lr={"lstm": [1e-2], "gru": [1e-2], "elman": [1e-2]}, eval_batches=1,
                  profile_every=5),
    "quick": dict(seq_len=[10, 20], hidden_size=64, batch_size=32, steps=4000, eval_every=100,
                  lr={"lstm": [1e-3, 1e-2], "gru": [1e-3, 1e-2], "elman": [1e-3, 1e-2]},
                  eval_batches=8, profile_every=100),
    "full": dict(seq_len=[10, 20, 50, 100], hidden_size=128, batch_size=64, steps=5000,
                 lr={"lstm": [1e-2], "gru": [1e-2], "elman": [1e-3, 1e-2]}, eval_every=100,
                 profile_every=250),
}  # fmt: skip


def _gated_worse(runs: pd.DataFrame) -> pd.Series:
    """Per seed, the larger loss ratio of LSTM and GRU (both must beat the baseline)."""
    r = best_lr(runs[runs["model"].isin(GATED)])
    return per_seed(r, final_value(r), "max")


def _falls_with_T(runs: pd.DataFrame) -> pd.Series:
    """Per seed: mean gated loss ratio at the largest T minus at the smallest T."""
    r = best_lr(runs[runs["model"].isin(GATED)])
    if r.empty or r["seq_len"].nunique() < 2:
        return pd.Series(dtype=float)
    lo, hi = r["seq_len"].min(), r["seq_len"].max()
    at = {t: per_seed(r[r["seq_len"] == t], final_value(r[r["seq_len"] == t])) for t in (lo, hi)}
    return (at[hi] - at[lo]).dropna()


COPY_CLAIMS = (
    Claim(
        "gated-beat-baseline",
        "LSTM and GRU end below the memoryless baseline: the worse of the two, eval loss ÷ "
        "10·ln8/(T+20), lr 1e-2 (full) or the best of {1e-3, 1e-2} (quick)",
        "LSTM below the baseline at T=100, RNN on it",
        COPY_SOURCE,
        _gated_worse,
        below(1.0),
        each_value("seq_len", "T"),
    ),
    Claim(
        "elman-at-baseline",
        "Elman (tanh) stays at or above the memoryless baseline at every rate of its grid: its "
        "lowest eval loss ÷ baseline over lr ∈ {1e-3, 1e-2} per seed",
        "RNN flat at the baseline for every T",
        COPY_SOURCE,
        _elman_lowest("loss_ratio"),
        at_least(0.9),
        each_value("seq_len", "T"),
    ),
    Claim(
        "success-falls-with-T",
        "Success falls as T grows: gated cells' loss ÷ baseline at the largest T minus at the "
        "smallest (mean of LSTM and GRU, lr as above)",
        "the LSTM's advantage shrinks from T=100 to T=500 (> 0)",
        COPY_SOURCE,
        _falls_with_T,
        above(0.0),
    ),
)


def copy_figure(runs: pd.DataFrame, history: pd.DataFrame, out) -> list:
    """Eval loss ÷ baseline against steps, one panel per T, best lr per cell."""
    r = best_lr(runs)
    fig = curves_per_t(r, history, "copy", "eval loss ÷ baseline", 1.0, "memoryless baseline",
                       scale=lambda row: row.baseline_loss)  # fmt: skip
    return [save(fig, out, "copy.png")]


COPY = _declare(
    "arjovsky2016-copy",
    "Copying memory: gated cells leave the baseline, Elman does not",
    "copy-task",
    COPY_SETTINGS,
    COPY_CLAIMS,
    copy_figure,
    (
        "T ∈ {10, 20, 50, 100} instead of the paper's {100, 200, 300, 500}",
        "Adam with norm clipping at 1 instead of RMSprop lr 1e-3: gated cells at lr 1e-2 (the "
        "quick mode's best), Elman over lr {1e-3, 1e-2}",
        "one hidden size for every cell (H=128, where the paper matched parameter counts)",
        "5000 steps of batch 64",
    ),
    (
        "quick: T ∈ {10, 20}, H=64, 4000 steps of batch 32, 3 seeds, evaluation on 256 sequences, "
        "every cell over lr {1e-3, 1e-2} (best per cell and T)",
    ),
    COPY_NOTES,
)


# ---------------------------------------------------------------- adding problem (Fig. 2)

ADDING_NOTES = """Arjovsky, Shah & Bengio 2016, the adding problem (Fig. 2).

The paper: two channels of length T ∈ {100, 200, 400, 750}, U[0,1] values and two markers;
the target is the sum of the two marked values; the memoryless baseline predicts 1 and scores
MSE 0.167. The LSTM gets below the baseline at every T; the RNN (tanh) does not beyond short T.

Here: LSTM and Elman (tanh), Adam with norm clipping at 1. The quick mode runs the LSTM over
lr ∈ {1e-3, 1e-2} (best per T by seqbench.results.best_of); the full mode runs it at 1e-2 only,
the rate at which the quick mode solved every run (at 1e-3 none), chosen before any full run.
The Elman network runs over lr ∈ {1e-4, 1e-3, 1e-2} in both, and its claim asks for failure at
every one of them (per seed, its best MSE over the grid). Budgets, and why:

- full: T ∈ {50, 100, 200, 400}, H=128, batch 32 (the paper's is 20), 5000 steps, 5 seeds:
  (1 + 3) x 4 x 5 = 80 runs. T=400 is the largest T the budget allows: an LSTM step at T=400,
  B=64, H=128 costs ~0.5 s on one core, half that at B=32, so 5000 steps are ~20 min a run
  (the LSTM stops once solved: MSE < 0.1 x 0.167); the paper's T=750 doubles that.
- quick: T ∈ {50, 100}, H=64, batch 32, 1500 steps, 3 seeds: (2 + 3) x 2 x 3 = 30 runs. The
  LSTM solves T=100 in ~1000 steps here; an Elman run at T=100 is a few ms a step.
  Measured: 165 s wall on 2 cores (2 workers); the LSTM at lr 1e-2 solved all 6 (T=50 by
  step 600, T=100 by 1200), at lr 1e-3 none; no Elman run solved.
- smoke: T ∈ {4, 6}, H=8, batch 8, 10 steps, one lr per cell: the plumbing only.

Claims (rules fixed here, before any full run): the LSTM's MSE is below 0.167 at each T (the
largest T with that verdict is the answer to "up to which T"); the Elman network fails at each
T beyond the shortest: even its best rate per seed leaves MSE at or above 0.15 (0.9 x 0.167,
the same "at the baseline" tolerance as the copy reproduction).
"""

ADDING_SETTINGS = {
    "smoke": dict(seq_len=[4, 6], hidden_size=8, batch_size=8, steps=10, eval_every=5,
                  lr={"lstm": [1e-2], "elman": [1e-2]}, eval_batches=1, profile_every=5),
    "quick": dict(seq_len=[50, 100], hidden_size=64, batch_size=32, steps=1500, eval_every=100,
                  lr={"lstm": [1e-3, 1e-2], "elman": [1e-4, 1e-3, 1e-2]}, eval_batches=8,
                  profile_every=100),
    "full": dict(seq_len=[50, 100, 200, 400], hidden_size=128, batch_size=32, steps=5000,
                 lr={"lstm": [1e-2], "elman": [1e-4, 1e-3, 1e-2]}, eval_every=100,
                 profile_every=250),
}  # fmt: skip


def _lstm_mse(runs: pd.DataFrame) -> pd.Series:
    r = best_lr(runs[runs["model"] == "lstm"])
    return per_seed(r, final_value(r, "final_loss"))


ADDING_CLAIMS = (
    Claim(
        "lstm-beats-baseline",
        "LSTM ends below the memoryless MSE 0.167 (eval MSE; lr 1e-2 (full) or the best of "
        "{1e-3, 1e-2} (quick))",
        "LSTM below 0.167 at every T, 100 to 750",
        ADDING_SOURCE,
        _lstm_mse,
        below(BASELINE),
        each_value("seq_len", "T"),
    ),
    Claim(
        "elman-fails",
        "Elman (tanh) fails beyond short T at every rate of its grid: its lowest eval MSE over "
        "lr ∈ {1e-4, 1e-3, 1e-2} per seed",
        "RNN stays at the 0.167 baseline",
        ADDING_SOURCE,
        _elman_lowest("final_loss"),
        at_least(0.9 * BASELINE),
        each_value("seq_len", "T", skip_smallest=True),
    ),
)


def adding_figure(runs: pd.DataFrame, history: pd.DataFrame, out) -> list:
    """Eval MSE against steps, one panel per T: LSTM at its best lr, Elman at every lr."""
    lstm = best_lr(runs[runs["model"] == "lstm"])
    shown = pd.concat([lstm, runs[runs["model"] == "elman"]])
    fig = curves_per_t(shown, history, "adding", "eval MSE", BASELINE, "baseline 0.167", log=True)
    return [save(fig, out, "adding.png")]


ADDING = _declare(
    "arjovsky2016-adding",
    "Adding problem: the LSTM beats 0.167, the Elman network does not",
    "adding",
    ADDING_SETTINGS,
    ADDING_CLAIMS,
    adding_figure,
    (
        "T ∈ {50, 100, 200, 400} instead of the paper's {100, 200, 400, 750}: T=400 is the "
        "largest the budget allows",
        "Adam with norm clipping at 1 instead of RMSprop lr 1e-3: LSTM at lr 1e-2 (the quick "
        "mode's best), Elman over lr {1e-4, 1e-3, 1e-2}",
        "H=128 for both cells (the paper matched parameter counts); no uRNN",
        "5000 steps of batch 32 (the paper: batch 20)",
    ),
    (
        "quick: T ∈ {50, 100}, H=64, 1500 steps of batch 32, 3 seeds, evaluation on 256 sequences, "
        "LSTM over lr {1e-3, 1e-2} (best per T)",
    ),
    ADDING_NOTES,
)
