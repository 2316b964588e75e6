"""Fitting an echo-state network on a task: what the training loop runs for ``--model esn``
instead of gradient descent. The reservoir is fixed; the readout is one ridge solve.

Features: readout "all" uses every state after the washout, (B, T - washout, N) against the
targets of those steps; readout "last" the final state (B, N). Classification targets become
one-hot rows; the regressed class scores are then turned into logits by one temperature,
fitted on the last training batch (1-D minimisation of cross-entropy), so that the loss
column is a cross-entropy comparable with the trained models' (accuracy is unaffected).
Memory capacity also records its forgetting curve (record key ``curves``).

A reservoir with output feedback (``output_feedback``) on a free-running task (mackey-glass
with ``free_run`` K) is fitted as Jaeger & Haas (2004) fit theirs (``fit_feedback``): the
series s enters through W_fb alone (no external input; the reservoir's bias b stands for
their constant bias input), teacher-forced for the first T - K steps of each training window
(step t receives W_fb s(t), plus U(-a, a) noise with a = ``teacher_noise``), the ridge readout
fitted to s(t + 1) after the washout; each test window is teacher-forced alike for T - K steps
(no noise), then runs free for K steps with the readout's output fed back. Its readout is
solved by least squares on the samples (Ridge.fit_lstsq) where they fit in memory, as the
paper's direct regression: the normal equations square the condition number of states
driven by one smooth series, and the 84-step free run needs the digits that loses.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import minimize_scalar

from .errors import ConfigError, check_number
from .models.esn import build_esn
from .readout import (
    Ridge,
    check_washout,
    drop_washout,
    free_run,
    state_noise_rng,
    teacher_forced_states,
    warm_then_free_run,
)
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


def default_train_batches(N: int, task, batch_size: int, washout: int) -> int:
    """At least 4 batches, and enough for 4 N training samples (readout "last": one a
    sequence; "all": one a step after the washout): N + 1 readout weights from fewer samples
    are underdetermined, and the ridge alone leaves them to noise (N = 20000 units on copy
    T=10 from 4 batches of 64 x 30 steps: 7680 samples, eval loss 5347x the baseline)."""
    per_batch = batch_size * (1 if task.readout == "last" else task.steps - washout)
    return max(4, -(-4 * N // per_batch))


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
    teacher_noise: float = 0.0,
    state_noise: float = 0.0,
) -> dict:
    """Drive the reservoir with ``train_batches`` batches, fit the ridge readout, evaluate on
    ``eval_batches`` fresh batches of the "test" split. ``washout`` defaults to the task's
    ``washout`` attribute (0 for tasks whose sequences start from scratch). ``train_batches``
    defaults to 4, or to enough batches for 4 N samples where 4 give fewer
    (``default_train_batches``), so that the N + 1 readout weights are not underdetermined.

    Returns final_loss, baseline_loss, solved, metrics, fit_seconds (driving + solve),
    compile_seconds (first forward call minus a later one of the same shape),
    sequence_steps_per_second (reservoir steps x sequences per second, steady state),
    readout_temperature (classification), status "finished".
    A reservoir with output feedback goes to ``fit_feedback`` (``teacher_noise`` is its).
    ``state_noise`` a > 0: U(-a, a) joins every unit's pre-activation at every step of the
    training batches (not of the evaluation), drawn from readout.state_noise_rng(model).
    """
    if model.feedback_size:
        return fit_feedback(model, task, rng, batch_size=batch_size, washout=washout,
                            ridge=ridge, train_batches=train_batches, eval_batches=eval_batches,
                            teacher_noise=teacher_noise, state_noise=state_noise)  # fmt: skip
    if teacher_noise:
        raise ConfigError("teacher_noise applies to the output-feedback fit (output_feedback)")
    if task.windows_set:
        raise ConfigError("train_windows/test_windows apply to the output-feedback fit")
    noise_rng = state_noise_rng(model)
    batch_size = _count("batch_size", batch_size)
    washout = check_washout(task.washout if washout is None else washout)
    if task.readout == "all" and task.steps <= washout:
        raise ConfigError(
            f"too few steps for the washout: the task's sequences have {task.steps} steps and "
            f"washout={washout}; use a longer seq_len or a shorter washout"
        )
    if train_batches is None:
        train_batches = default_train_batches(model.hidden_size, task, batch_size, washout)
    train_batches = _count("train_batches", train_batches)
    eval_batches = _count("eval_batches", eval_batches)
    readout = Ridge(ridge)
    timings = []  # seconds of each forward call

    def run(x, noise=0.0):
        t0 = time.perf_counter()
        states, _ = model.forward(x, state_noise=noise, noise_rng=noise_rng)
        timings.append(time.perf_counter() - t0)
        return states

    start = time.perf_counter()
    last = None
    for _ in range(train_batches):
        batch = task.generate(rng, batch_size, "train")
        feats, targets, _, y = _features(task, run(batch.x, state_noise), batch.y, washout)
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
    curves = None
    if "memory_capacity" in metrics:
        metrics["memory_capacity_bound"] = float(min(model.hidden_size, out.shape[-1]))
        curves = {"memory_capacity_by_delay": task.capacity_by_delay(out, y).tolist()}
    if task.free_run:
        metrics.update(_free_run_metrics(model, readout, task, np.concatenate(series), washout))

    out = _record(task, loss, metrics, fit_seconds, timings, batch_size * task.steps, readout)
    out.update(readout_temperature=temperature, washout=washout, train_batches=train_batches)
    if curves is not None:
        out["curves"] = curves
    return out


def _record(task, loss, metrics, fit_seconds, timings, steps_per_call, readout) -> dict:
    """The run record's fit fields; timings are seconds per call of ``steps_per_call``."""
    per_call = float(np.median(timings[1:] or timings))
    return {
        "final_loss": float(loss),
        "baseline_loss": float(task.baseline),
        "solved": bool(task.solved(float(loss), metrics)),
        "metrics": metrics,
        "fit_seconds": float(fit_seconds),
        "compile_seconds": float(max(timings[0] - per_call, 0.0)) if len(timings) > 1 else 0.0,
        "sequence_steps_per_second": float(steps_per_call / per_call) if per_call > 0 else 0.0,
        "readout_samples": int(readout.samples),
        "status": "finished",
    }


def fit_feedback(
    model, task, rng, *, batch_size, washout, ridge, train_batches, eval_batches, teacher_noise,
    state_noise,
) -> dict:  # fmt: skip
    """Teacher-forced fit of a reservoir with output feedback, then K-step free runs (see the
    module docstring); reached through ``fit_esn``, which holds the keywords' defaults.
    Windows: the task's ``train_windows``/``test_windows`` where it sets them (protocol
    jaeger2004: 1 and 100), else ``train_batches`` (default 1) and ``eval_batches`` batches of
    ``batch_size``; windows are driven ``batch_size`` at a time.

    Metrics: "nrmse" of the teacher-forced one-step outputs after the washout (RMSE /
    std(target)); "free_run_nrmse" over the K free-run steps and "free_run_nrmse_last" at step
    K alone (Jaeger & Haas's NRMSE84 for K = 84): sqrt(mean over test windows of the squared
    error) / sigma, sigma the std of the task's series on its long reference trajectory
    (``task.attractor_std()``); "free_run_nrmse_last_original" the same in the equation's own
    x(t) (``task.unscale``). Record key ``curves``: free_run_nrmse_by_step (steps 1..K) and the
    first test window's last 100 teacher-forced values, its truth and its free run.
    """
    K, F = task.free_run, model.feedback_size
    if not K or task.kind != "regression" or task.input_size != F or task.output_size != F:
        raise ConfigError(
            "output feedback is fitted on a free-running prediction task (mackey-glass with "
            "free_run=K or protocol=jaeger2004): the generated series is what is fed back"
        )
    batch_size = _count("batch_size", batch_size)
    noise = check_number("teacher_noise", teacher_noise)
    if noise < 0:
        raise ConfigError(f"teacher_noise must be >= 0, got {teacher_noise!r}")
    washout = check_washout(task.washout if washout is None else washout)
    driven = task.steps - K
    if driven <= washout:
        raise ConfigError(
            f"free_run={K} leaves {driven} teacher-forced steps, not more than washout={washout}"
        )
    n_train = task.train_windows or (_count("train_batches", train_batches or 1) * batch_size)
    n_test = task.test_windows or _count("eval_batches", eval_batches) * batch_size
    readout, timings = Ridge(ridge), []

    noise_rng = state_noise_rng(model)

    def forced(x, fed, a=0.0):  # fed (B, driven, F): s(0..driven-1); step t gets W_fb s(t)
        t0 = time.perf_counter()
        zeros = np.zeros((x.shape[0], driven, model.input_size))
        teacher = np.concatenate([fed[:, 1:], fed[:, -1:]], axis=1)  # the last is never fed
        states = teacher_forced_states(model, zeros, teacher, y0=fed[:, 0], state_noise=a,
                                       noise_rng=noise_rng)  # fmt: skip
        timings.append(time.perf_counter() - t0)
        return states

    start = time.perf_counter()
    direct = n_train * (driven - washout) * (model.hidden_size + 1) <= LSTSQ_MAX_ELEMENTS
    feats, targets = [], []
    for size in _chunks(n_train, batch_size):
        b = task.generate(rng, size, "train")
        fed = b.x[:, :driven]
        if noise:
            fed = fed + rng.uniform(-noise, noise, fed.shape)
        states, y = forced(b.x, fed, state_noise)[:, washout:], b.y[:, washout:driven]
        if direct:
            feats.append(states.reshape(-1, states.shape[-1]))
            targets.append(y.reshape(-1, F))
        else:
            readout.accumulate(states, y)
    if direct:
        readout.fit_lstsq(np.concatenate(feats), np.concatenate(targets))
    else:
        readout.solve()
    fit_seconds = time.perf_counter() - start

    outs, ys, preds, truths = [], [], [], []
    for size in _chunks(n_test, batch_size):
        b = task.generate(rng, size, "test")
        states = forced(b.x, b.x[:, :driven])
        outs.append(readout.predict(states[:, washout:]))
        ys.append(b.y[:, washout:driven])
        first = readout.predict(states[:, -1])  # (B, F): s(driven)
        if K > 1:
            more, _ = free_run(model, readout, K - 1, h0=states[:, -1], y0=first)
            first = np.concatenate([first[:, None], more], axis=1)
        preds.append(first.reshape(size, K, F))
        truths.append(b.x[:, driven:])
        if len(truths) == 1:
            trace = {"trace_teacher": b.x[0, max(driven - 100, 0) : driven, 0].tolist(),
                     "trace_true": b.x[0, driven:, 0].tolist(),
                     "trace_pred": preds[0][0, :, 0].tolist()}  # fmt: skip
    out, y = np.concatenate(outs), np.concatenate(ys)
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    loss, _ = task.loss(out, y)
    metrics = {**task.metrics(out, y), **_free_run_errors(task, pred, truth)}
    by_step = np.sqrt(np.mean((pred - truth) ** 2, axis=(0, 2))) / _sigma(task, truth)
    metrics.update(train_windows=n_train, test_windows=n_test)
    record = _record(task, loss, metrics, fit_seconds, timings, batch_size * driven, readout)
    record.update(washout=washout, teacher_noise=noise, train_batches=-(-n_train // batch_size))
    record["curves"] = {"free_run_nrmse_by_step": by_step.tolist(), **trace}
    return record


# fit_feedback solves by least squares on the samples (not the normal equations) up to this
# many feature values: the paper's fit (2000 samples x 1001) is 2M.
LSTSQ_MAX_ELEMENTS = 20_000_000


def _chunks(n: int, size: int):
    while n > 0:
        yield min(n, size)
        n -= size


def _sigma(task, truth, original=False) -> float:
    if hasattr(task, "attractor_std"):
        return task.attractor_std(original)
    return max(float(np.std(truth)), 1e-12)


def _free_run_errors(task, pred, truth) -> dict:
    """RMSE over windows (all K steps, and step K) / the series' std on the attractor."""
    sigma = _sigma(task, truth)
    out = {
        "free_run_nrmse": float(np.sqrt(np.mean((pred - truth) ** 2)) / sigma),
        "free_run_nrmse_last": float(np.sqrt(np.mean((pred[:, -1] - truth[:, -1]) ** 2)) / sigma),
    }
    if hasattr(task, "unscale"):
        err = task.unscale(pred[:, -1]) - task.unscale(truth[:, -1])
        out["free_run_nrmse_last_original"] = float(
            np.sqrt(np.mean(err**2)) / _sigma(task, truth, original=True)
        )
    return out


def _free_run_metrics(model, readout, task, x, washout) -> dict:
    """Drive with all but the last K = task.free_run values of each test window, generate K
    values autoregressively and compare them with the truth: NRMSE over the K steps and at
    step K alone (Jaeger & Haas 2004 report the latter, K = 84), both RMSE / std(target)."""
    K = task.free_run
    T = x.shape[1]
    if task.horizon != 1 or model.input_size != readout.weight.shape[0]:
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


def linear_memory_capacity(n: int = 20, *, activation: str = "identity", seed: int = 0) -> dict:
    """fit_esn's result for a reservoir of n units on memory-capacity with delays up to 2n,
    under the conditions in which a linear reservoir's capacity comes close to its bound n
    (Jaeger 2002; ``memory_capacity_model``) with ridge 1e-12 and 2 x 8 training windows of
    4000 steps. Asserted by the tests, printed by suites/asv/bench_esn.py; the jaeger2002
    reproduction runs the same settings."""
    model = build_esn(
        1, n, seed=seed, dtype="float64", **memory_capacity_model(n), activation=activation
    )
    task = make_task("memory-capacity", 4000, max_delay=2 * n)
    return fit_esn(
        model, task, np.random.default_rng([seed, 1]), batch_size=8, ridge=1e-12, train_batches=2
    )


def memory_capacity_model(n: int) -> dict:
    """build_esn's keywords for a reservoir of n units whose capacity up to delay 2n comes
    close to n when linear: a random orthogonal W (every eigenvalue on one circle, so the
    states stay well conditioned) at spectral radius 1 - 2/n, a memory time 1/(1 - rho) of
    n/2 steps that fits the 2n delays (a fixed 0.99 spreads the capacity beyond them: 0.54 n
    at n = 20; a fixed 0.95 loses the tail at n = 20: 0.93 n), dense, input weights +-0.3
    (the linear capacity does not depend on it; a tanh reservoir leaves its linear range,
    where at +-0.1 it equalled the linear one)."""
    return {
        "spectral_radius": max(1.0 - 2.0 / n, 0.5),
        "input_scaling": 0.3,
        "orthogonal": True,
        "sparse": False,
    }
