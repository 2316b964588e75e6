"""Fitting an echo-state network on a task: what the training loop runs for ``--model esn``
instead of gradient descent. The reservoir is fixed; the readout is one ridge solve.

Features: readout "all" uses every state after the washout, (B, T - washout, N) against the
targets of those steps; readout "last" the final state (B, N). Classification targets become
one-hot rows; the regressed class scores are then turned into logits by one temperature,
fitted on the last training batch (1-D minimisation of cross-entropy), so that the loss
column is a cross-entropy comparable with the trained models' (accuracy is unaffected).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import minimize_scalar

from .errors import ConfigError
from .models.esn import build_esn
from .readout import Ridge, check_washout, drop_washout, warm_then_free_run
from .tasks import make_task
from .tasks.base import one_hot, softmax_cross_entropy


def _count(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _features(task, states, y, washout):
    """(features (S, N), targets (S, O), shape of the per-batch output before flattening)."""
    if task.readout == "last":
        feats, y = states[:, -1], y
    else:
        feats, y = drop_washout(states, washout), y[:, washout:]
    lead = y.shape if task.kind == "classification" else y.shape[:-1]
    if task.kind == "classification":
        targets = one_hot(y, task.output_size).reshape(-1, task.output_size)
    else:
        targets = y.reshape(-1, y.shape[-1])
    return feats.reshape(-1, feats.shape[-1]), targets, lead, y


def _fit_temperature(scores, labels) -> float:
    """beta > 0 minimising the cross-entropy of softmax(beta * scores)."""

    def ce(log_beta):
        return softmax_cross_entropy(np.exp(log_beta) * scores, labels)[0]

    res = minimize_scalar(ce, bounds=(-5.0, 8.0), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x))


def fit_esn(
    model,
    task,
    rng,
    *,
    batch_size: int = 32,
    washout: int | None = None,
    ridge: float = 1e-6,
    train_batches: int | None = None,
    eval_batches: int = 1,
) -> dict:
    """Drive the reservoir with ``train_batches`` batches, fit the ridge readout, evaluate on
    ``eval_batches`` fresh batches of the "test" split. ``washout`` defaults to the task's
    ``washout`` attribute (0 for tasks whose sequences start from scratch). ``train_batches``
    defaults to 4, or for readout "last" (one sample per sequence) to enough batches for
    4 N samples, so that the N + 1 readout weights are not underdetermined.

    Returns final_loss, baseline_loss, solved, metrics, fit_seconds (driving + solve),
    compile_seconds (first forward call minus a later one of the same shape),
    sequence_steps_per_second (reservoir steps x sequences per second, steady state),
    readout_temperature (classification), status "finished".
    """
    batch_size = _count("batch_size", batch_size)
    if train_batches is None:
        per_batch = batch_size if task.readout == "last" else 4 * model.hidden_size
        train_batches = max(4, -(-4 * model.hidden_size // per_batch))
    train_batches = _count("train_batches", train_batches)
    eval_batches = _count("eval_batches", eval_batches)
    washout = check_washout(getattr(task, "washout", 0) if washout is None else washout)
    if task.readout == "all" and task.steps <= washout:
        raise ConfigError(
            f"too few steps for the washout: the task's sequences have {task.steps} steps and "
            f"washout={washout}; use a longer seq_len or a shorter washout"
        )
    readout = Ridge(ridge)
    timings = []  # seconds of each forward call

    def run(x):
        t0 = time.perf_counter()
        states, _ = model.forward(x)
        timings.append(time.perf_counter() - t0)
        return states

    start = time.perf_counter()
    last = None
    for _ in range(train_batches):
        batch = task.generate(rng, batch_size, "train")
        feats, targets, _, y = _features(task, run(batch.x), batch.y, washout)
        readout.accumulate(feats, targets)
        last = (feats, y)
    readout.solve()
    fit_seconds = time.perf_counter() - start

    temperature = None
    if task.kind == "classification":
        temperature = _fit_temperature(readout.predict(last[0]), last[1].reshape(-1))

    outs, ys, series = [], [], []
    for _ in range(eval_batches):
        batch = task.generate(rng, batch_size, "test")
        feats, _, lead, y = _features(task, run(batch.x), batch.y, washout)
        out = readout.predict(feats)
        outs.append(out.reshape(*lead, out.shape[-1]))
        ys.append(y)
        series.append(batch.x)
    out, y = np.concatenate(outs), np.concatenate(ys)
    if temperature is not None:
        out = temperature * out
    out = out.astype(np.float64, copy=False)
    loss, _ = task.loss(out, y)
    metrics = dict(task.metrics(out, y))
    if "memory_capacity" in metrics:
        metrics["memory_capacity_bound"] = float(min(model.hidden_size, out.shape[-1]))
    free = getattr(task, "free_run", 0)
    if free:
        metrics.update(_free_run_metrics(model, readout, task, np.concatenate(series), washout))

    steady = timings[1:] or timings
    per_call = float(np.median(steady))
    steps_per_call = batch_size * task.steps
    return {
        "final_loss": float(loss),
        "baseline_loss": float(task.baseline),
        "solved": bool(task.solved(float(loss), metrics)),
        "metrics": metrics,
        "fit_seconds": float(fit_seconds),
        "compile_seconds": float(max(timings[0] - per_call, 0.0)) if len(timings) > 1 else 0.0,
        "sequence_steps_per_second": float(steps_per_call / per_call) if per_call > 0 else 0.0,
        "readout_samples": int(readout.samples),
        "readout_temperature": temperature,
        "washout": washout,
        "status": "finished",
    }


def _free_run_metrics(model, readout, task, x, washout) -> dict:
    """Drive with all but the last K = task.free_run values of each test window, generate K
    values autoregressively and compare them with the truth: NRMSE over the K steps and at
    step K alone (Jaeger & Haas 2004 report the latter, K = 84), both RMSE / std(target)."""
    K = task.free_run
    T = x.shape[1]
    if getattr(task, "horizon", 1) != 1 or model.input_size != readout.weight.shape[0]:
        raise ConfigError("free_run needs one-step-ahead prediction (horizon=1) of the input")
    if T - K <= washout:
        raise ConfigError(
            f"free_run={K} leaves {T - K} driven steps, not more than washout={washout}; "
            "use a longer seq_len"
        )
    pred = warm_then_free_run(model, readout, x[:, : T - K], K)
    truth = x[:, T - K :]
    scale = max(float(np.std(truth)), 1e-12)
    return {
        "free_run_nrmse": float(np.sqrt(np.mean((pred - truth) ** 2)) / scale),
        "free_run_nrmse_last": float(np.sqrt(np.mean((pred[:, -1] - truth[:, -1]) ** 2)) / scale),
    }


def linear_memory_capacity(n: int = 20) -> dict:
    """fit_esn's result for a linear reservoir of n units (identity activation, dense,
    spectral radius 0.9, input scaling 0.1, seed 0) on memory-capacity with delays up to 2n.
    Its capacity should come close to n, the bound for a linear reservoir (Jaeger 2001): a
    check of the fit and the task together, asserted by the tests and printed by
    suites/asv/bench_esn.py."""
    model = build_esn(
        1,
        n,
        activation="identity",
        spectral_radius=0.9,
        input_scaling=0.1,
        connectivity=1.0,
        sparse=False,
        seed=0,
    )
    task = make_task("memory-capacity", 4000, max_delay=2 * n)
    return fit_esn(
        model, task, np.random.default_rng(0), batch_size=8, ridge=1e-12, train_batches=2
    )
