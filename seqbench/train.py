"""The one training loop: task batches -> model -> output head -> loss -> BPTT -> clip -> step.

Every task, model, backend and clipping mode goes through ``run``; the only fork is a model
declared ``fitted`` (the echo-state network), whose "training" is a closed-form readout fit
(seqbench.esn_fit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .config import RunConfig
from .models import DTYPES, MODELS, build_for_run
from .tasks import make_task


@dataclass
class RunResult:
    record: dict  # one row of the runs table
    history: list = field(default_factory=list)  # per-step dicts
    profiles: list = field(default_factory=list)  # (step, layer_dir, t, dh_norm) rows


# ---------------------------------------------------------------- output head


class Head:
    """Linear output layer trained jointly: per step ("all") or per sequence (last / mean)."""

    def __init__(self, rng, features, outputs, dtype, per_step, readout):
        k = 1.0 / np.sqrt(features)
        self.params = {
            "head.weight": rng.uniform(-k, k, (outputs, features)).astype(dtype),
            "head.bias": rng.uniform(-k, k, outputs).astype(dtype),
        }
        self.per_step = per_step
        self.readout = readout

    def _features(self, y):  # (B, T, F) -> (B, T, F) or (B, F)
        if self.per_step:
            return y
        return y[:, -1] if self.readout == "last" else y.mean(axis=1)

    def forward(self, y):
        return self._features(y) @ self.params["head.weight"].T + self.params["head.bias"]

    def backward(self, y, dout):
        """-> (grads of the head, dL/dy (B, T, F))."""
        w = self.params["head.weight"]
        feats = self._features(y)
        O, F = w.shape
        grads = {
            "head.weight": dout.reshape(-1, O).T @ feats.reshape(-1, F),
            "head.bias": dout.reshape(-1, O).sum(axis=0),
        }
        d_feats = dout @ w
        if self.per_step:
            return grads, d_feats
        dy = np.zeros_like(y)
        if self.readout == "last":
            dy[:, -1] = d_feats
        else:
            dy[:] = d_feats[:, None, :] / y.shape[1]
        return grads, dy


# ---------------------------------------------------------------- trainer


class Trainer:
    def __init__(self, cfg: RunConfig):
        from .clipping import parse_clip
        from .optim import make_optimizer

        self.cfg = cfg
        self.task = make_task(cfg.task, cfg.seq_len)
        self.dtype = DTYPES[cfg.dtype]
        self.model = build_for_run(cfg, self.task.input_size)
        self.data_rng = np.random.default_rng([cfg.seed, 1])
        self.eval_rng = np.random.default_rng([cfg.seed, 2])
        head_rng = np.random.default_rng([cfg.seed, 3])
        self.head = Head(
            head_rng,
            self.model.output_size,
            self.task.output_size,
            self.dtype,
            self.task.readout == "all",
            cfg.readout,
        )
        self.params = {**self.model.params, **self.head.params}
        self.keys = list(self.params)
        self.optimizer = make_optimizer(cfg.optimizer, self.params, cfg.lr)
        self.clip = parse_clip(cfg.clip)

    # -- one pass

    def _forward(self, x):
        """Full BPTT: one tape. Truncated: chunks of tbptt steps, state carried, not its grad."""
        if self.cfg.tbptt is None:
            y, tape = self.model.forward(x)
            return y, [(slice(None), tape)]
        tapes, outs, state = [], [], None
        for start in range(0, x.shape[1], self.cfg.tbptt):
            sl = slice(start, start + self.cfg.tbptt)
            y, tape = self.model.forward(x[:, sl], state)
            state = tape.state_n
            tapes.append((sl, tape))
            outs.append(y)
        return np.concatenate(outs, axis=1), tapes

    def _backward(self, tapes, dy):
        grads, norms = {}, []
        for sl, tape in tapes:
            g = self.model.backward(tape, dy[:, sl])
            for k in self.model.params:
                grads[k] = grads[k] + g[k] if k in grads else g[k]
            norms.append(g.dh_norms)
        return grads, np.concatenate(norms, axis=1)

    def loss_and_grads(self, batch):
        # Overflow is an outcome here, not an accident: the divergence guard reads the result.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._loss_and_grads(batch)

    def _loss_and_grads(self, batch):
        x = batch.x.astype(self.dtype)
        y, tapes = self._forward(x)
        out = self.head.forward(y)
        loss, dout = self.task.loss(out, batch.y)
        head_grads, dy = self.head.backward(y, dout.astype(self.dtype, copy=False))
        grads, dh_norms = self._backward(tapes, dy)
        grads.update(head_grads)
        return loss, grads, dh_norms

    def evaluate(self):
        losses, metrics = [], []
        for _ in range(self.cfg.eval_batches):
            batch = self.task.generate(self.eval_rng, self.cfg.batch_size, split="test")
            y, _ = self._forward(batch.x.astype(self.dtype))
            out = self.head.forward(y)
            losses.append(self.task.loss(out, batch.y)[0])
            metrics.append(self.task.metrics(out, batch.y))
        mean = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        return float(np.mean(losses)), mean


# ---------------------------------------------------------------- the loop


def run(cfg: RunConfig, progress=None) -> RunResult:
    """Train per ``cfg`` (validated here) and return the run's record and histories.

    ``progress(step, loss, info)`` is called after every step; info holds the baseline and
    the latest evaluation. Nothing is written here: see ``run_and_save``.
    """
    from . import telemetry

    cfg = cfg.validated()
    if MODELS[cfg.model].fitted:
        return _run_fitted(cfg, progress)
    tr = Trainer(cfg)
    res = RunResult(record={})
    baseline = tr.task.baseline
    status, diverged_step, solved_step = "finished", None, None
    eval_loss, eval_metrics = float("nan"), {}
    step_times, clipped_steps, max_norm, grad_ratio = [], 0, 0.0, float("nan")
    spectra = telemetry.recurrent_summary(tr.model)
    t_start = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        batch = tr.task.generate(tr.data_rng, cfg.batch_size)
        loss, grads, dh_norms = tr.loss_and_grads(batch)
        if not telemetry.is_finite(loss, grads):
            status, diverged_step = "diverged", step
            res.history.append(
                {
                    "step": step,
                    "loss": loss,
                    "preclip_norm": float("nan"),
                    "clipped": False,
                    "seconds": time.perf_counter() - t0,
                }
            )
            break
        norm, clipped = tr.clip.apply(grads, tr.keys)
        tr.optimizer.step(tr.params, grads)
        step_times.append(time.perf_counter() - t0)
        clipped_steps += bool(clipped)
        max_norm = max(max_norm, norm)
        row = {
            "step": step,
            "loss": loss,
            "preclip_norm": norm,
            "clipped": bool(clipped),
            "seconds": step_times[-1],
        }
        if step % cfg.profile_every == 0 or step == 1:
            grad_ratio = telemetry.grad_ratio_log10(dh_norms[0])
            spectra = telemetry.recurrent_summary(tr.model)
            row.update(spectra, grad_ratio_log10=grad_ratio)
            res.profiles.extend(
                (step, u, t, float(v))
                for u, prof in enumerate(dh_norms)
                for t, v in enumerate(prof)
            )
        if step % cfg.eval_every == 0 or step == cfg.steps:
            eval_loss, eval_metrics = tr.evaluate()
            row.update(eval_loss=eval_loss)
            if solved_step is None and tr.task.solved(eval_loss, eval_metrics):
                solved_step = step
        res.history.append(row)
        if progress is not None:
            progress(
                step,
                loss,
                {"baseline": baseline, "eval_loss": eval_loss, "solved": solved_step is not None},
            )
        if solved_step is not None and cfg.stop_when_solved:
            break
    train_seconds = time.perf_counter() - t_start
    if status == "finished" and step not in (h["step"] for h in res.history if "eval_loss" in h):
        eval_loss, eval_metrics = tr.evaluate()
    steady = step_times[1:] or step_times
    compile_seconds = max(step_times[0] - float(np.median(steady)), 0.0) if step_times else 0.0
    sps = 1.0 / float(np.median(steady)) if steady else float("nan")
    res.record = {
        **_config_columns(cfg, tr.task),
        "status": status,
        "diverged_step": diverged_step,
        "steps_run": len(step_times),
        "final_loss": eval_loss if status == "finished" else float("nan"),
        "baseline_loss": baseline,
        "solved": solved_step is not None,
        "solved_step": solved_step,
        "metrics": eval_metrics,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": sps,
        "sequence_steps_per_second": sps * cfg.batch_size * tr.task.steps,
        "grad_ratio_log10": grad_ratio,
        "clip_fraction": clipped_steps / max(len(step_times), 1),
        "max_preclip_norm": max_norm,
        "parameters": tr.model.parameters,
        **spectra,
    }
    return res


def _config_columns(cfg: RunConfig, task) -> dict:
    d = cfg.identity()
    d["seq_len"] = task.seq_len
    return d


def _run_fitted(cfg: RunConfig, progress) -> RunResult:
    from .esn_fit import fit_esn

    task = make_task(cfg.task, cfg.seq_len)
    model = build_for_run(cfg, task.input_size)
    rng = np.random.default_rng([cfg.seed, 1])
    t0 = time.perf_counter()
    out = fit_esn(model, task, rng, batch_size=cfg.batch_size, train_batches=cfg.steps)
    record = {
        **_config_columns(cfg, task),
        "status": out.pop("status", "finished"),
        "steps_run": out.pop("train_batches", cfg.steps),
        "train_seconds": time.perf_counter() - t0,
        "parameters": model.parameters,
        "spectral_radius": model.options["spectral_radius"],
        **out,
    }
    # The reservoir solves (or not) in its one readout fit: "step" 1 of training.
    record["solved_step"] = 1 if record.get("solved") else None
    if progress is not None:
        progress(
            cfg.steps,
            record["final_loss"],
            {
                "baseline": record["baseline_loss"],
                "eval_loss": record["final_loss"],
                "solved": record["solved"],
            },
        )
    return RunResult(record=record)


def run_and_save(cfg: RunConfig, out="results", progress=None) -> dict:
    """Train and write the run atomically under ``out``; returns the record written."""
    import pandas as pd

    from . import results

    cfg = cfg.validated()
    results.check_writable(out)
    res = run(cfg, progress)
    record = {
        "run_id": results.run_id(cfg.identity()),
        "started_at": results.utc_now(),
        **res.record,
        **results.environment(),
    }
    hist = pd.DataFrame(res.history) if res.history else None
    prof = (
        pd.DataFrame(res.profiles, columns=["step", "layer_dir", "t", "dh_norm"])
        if res.profiles
        else None
    )
    results.write_run(out, record, hist, prof)
    return record
