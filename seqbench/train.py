"""The one training loop: task batches -> model -> output head -> loss -> BPTT -> clip -> step.

Every task, model, backend and clipping mode goes through ``run``; the only fork is a model
declared ``fitted`` (the echo-state network), whose "training" is a closed-form readout fit
(seqbench.esn_fit). A backend declaring a step engine (torch) runs ``Trainer.step`` there,
over the Trainer's own arrays; the loop around it is the same.

Read here beside the task contract (seqbench.tasks.base.Task: held_out_batches,
weight_file_extras): a batch's ``continues``, True where it continues the streams of the
previous batch of its split; the loop starts it from that batch's final state (no gradient
crosses over). Absent or False: from zeros.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .backends import step_engine
from .config import RunConfig, task_for
from .head import Head, head_kernels
from .models import DTYPES, MODELS, build_for_run
from .tasks.base import Task


@dataclass
class RunResult:
    record: dict  # one row of the runs table
    history: list = field(default_factory=list)  # per-step dicts
    profiles: list = field(default_factory=list)  # (step, layer_dir, t, dh_norm) rows
    weights: dict | None = None  # state_dict names + head.*, where the task keeps weights


# ---------------------------------------------------------------- trainer


class Step(NamedTuple):
    """One training step's outcome; a diverged step changed nothing (norm NaN)."""

    loss: float
    preclip_norm: float
    clipped: bool
    dh_norms: np.ndarray | None  # (L*D, T) ||dL/dh_t||; None where the backend has none
    diverged: bool = False


# Evaluation sees at least this many held-out sequences unless eval_batches is set.
EVAL_SEQUENCES = 1024
MIN_EVAL_BATCHES = 4


def eval_batch_count(cfg: RunConfig) -> int:
    """cfg.eval_batches, or (None: auto) enough batches for EVAL_SEQUENCES sequences."""
    if cfg.eval_batches is not None:
        return cfg.eval_batches
    return max(MIN_EVAL_BATCHES, math.ceil(EVAL_SEQUENCES / cfg.batch_size))


@dataclass
class Evaluation:
    loss: float  # mean of the per-batch losses, as before
    metrics: dict
    loss_se: float  # standard error of the loss over sequences (per-sequence losses)
    sequences: int


class Trainer:
    def __init__(self, cfg: RunConfig):
        from .clipping import parse_clip
        from .optim import FlatParams, make_optimizer

        self.cfg = cfg
        self.task = task_for(cfg)
        self.dtype = DTYPES[cfg.dtype]
        self.task.input_dtype = self.dtype
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
        # Every parameter is a view of one flat buffer, its gradient of another: the guard,
        # the norm, clipping and the optimizer are one pass each over the whole model.
        self.flat = FlatParams(self.model.params, self.head.params)
        self.params = {**self.model.params, **self.head.params}
        self.keys = list(self.params)
        self._xent = self.task.kind == "classification" and type(self.task).loss is Task.loss
        self.optimizer = make_optimizer(cfg.optimizer, self.params, cfg.lr)
        self.clip = parse_clip(cfg.clip)
        self._probe = None
        self._state = None  # final state of the last training batch (batch.continues)
        engine = step_engine(cfg.backend)  # a backend that runs the whole step elsewhere
        self.engine = None if engine is None else engine(self)

    @property
    def probe(self):
        """The float64 gradient probe (seqbench.probe), built on first use."""
        if self._probe is None:
            from .probe import GradientProbe

            self._probe = GradientProbe(self.cfg, self.task, self.cfg.batch_size)
        return self._probe

    def measure_probe(self):
        return self.probe.measure(self.model.params, self.head)

    def step(self, batch) -> Step:
        """One training step on ``batch``: forward, head, loss, BPTT, divergence guard,
        clipping, update (on the backend's engine where it declares one)."""
        from . import telemetry

        if self.engine is not None:
            return Step(*self.engine.step(batch))
        self.flat.adopt(self.params)  # weights loaded since the last step
        loss, grads, dh_norms = self.loss_and_grads(batch)
        g = self.flat.gather(grads)
        norm = telemetry.flat_norm(g)  # NaN or Inf: a gradient is not finite
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return Step(loss, float("nan"), False, None, diverged=True)
        clipped = self.clip.apply_flat(g, norm)
        self.optimizer.step_flat(self.flat.p, g)
        return Step(loss, norm, clipped, dh_norms)

    # -- one pass

    def _forward(self, x, state=None):
        """Full BPTT: one tape. Truncated: chunks of tbptt steps, state carried, not its grad.
        ``state``: the initial state (None: zeros); the final one is ``tapes[-1][1].state_n``."""
        if self.cfg.tbptt is None:
            y, tape = self.model.forward(x, state)
            return y, [(slice(None), tape)]
        tapes, outs = [], []
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
            g = self.model.backward(tape, dy[:, sl], input_grad=False)
            for k in self.model.params:
                grads[k] = grads[k] + g[k] if k in grads else g[k]
            norms.append(g.dh_norms)
        return grads, np.concatenate(norms, axis=1)

    def loss_and_grads(self, batch):
        # Overflow is an outcome here, not an accident: the divergence guard reads the result.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._loss_and_grads(batch)

    def _loss_and_grads(self, batch):
        x = batch.x.astype(self.dtype, copy=False)
        y, tapes = self._forward(x, _carried(batch, self._state))
        self._state = tapes[-1][1].state_n
        out = self.head.forward(y)
        loss, dout = self._loss(out, batch.y)
        head_grads, dy = self.head.backward(y, dout.astype(self.dtype, copy=False))
        grads, dh_norms = self._backward(tapes, dy)
        grads.update(head_grads)
        return loss, grads, dh_norms

    def _loss(self, out, target):
        """task.loss(out, target); the base softmax cross-entropy in one compiled pass."""
        labels = np.asarray(target)
        if not self._xent or labels.shape != out.shape[:-1] or labels.dtype.kind not in "iu":
            return self.task.loss(out, target)
        logits = out.reshape(-1, out.shape[-1])
        dlogits = np.empty_like(logits)
        idx = np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)
        loss = head_kernels().softmax_xent(logits, idx, dlogits)
        return float(loss), dlogits.reshape(out.shape)

    def _eval_batches(self):
        if self.task.held_out_batches is not None:
            yield from self.task.held_out_batches(self.cfg.batch_size)
            return
        for _ in range(eval_batch_count(self.cfg)):
            yield self.task.generate(self.eval_rng, self.cfg.batch_size, split="test")

    def evaluate(self) -> Evaluation:
        losses, metrics, per_sequence, state = [], [], [], None
        for batch in self._eval_batches():
            y, tapes = self._forward(batch.x.astype(self.dtype), _carried(batch, state))
            state = tapes[-1][1].state_n
            out = self.head.forward(y)
            losses.append(self.task.loss(out, batch.y)[0])
            metrics.append(self.task.metrics(out, batch.y))
            per_sequence.extend(self.task.loss(out[i : i + 1], batch.y[i : i + 1])[0]
                                for i in range(len(out)))  # fmt: skip
        mean = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        n = len(per_sequence)
        se = float(np.std(per_sequence, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        return Evaluation(float(np.mean(losses)), mean, se, n)

    def weights(self) -> dict | None:
        """The model's state_dict, the head's (head.weight, head.bias) and the task's extras,
        for a task that keeps its weights (weight_file_extras); None otherwise."""
        if self.task.weight_file_extras is None:
            return None
        head = {k: v.copy() for k, v in self.head.params.items()}
        return {**self.model.state_dict(), **head, **self.task.weight_file_extras()}


def _carried(batch, state):
    """The initial state of ``batch``: the previous batch's final one where it continues."""
    return state if getattr(batch, "continues", False) else None


# ---------------------------------------------------------------- the loop


def run(cfg: RunConfig, progress=None) -> RunResult:
    """Train per ``cfg`` (validated here) and return the run's record and histories.

    ``progress(step, loss, info)`` is called after every step; info holds the baseline, the
    latest evaluation (eval_loss, eval_loss_se, eval_step: the step it was taken at, None
    before the first) and whether the run is solved. Nothing is written here: see
    ``run_and_save``.
    """
    from . import telemetry

    cfg = cfg.validated()
    if MODELS[cfg.model].fitted:
        return _run_fitted(cfg, progress)
    tr = Trainer(cfg)
    res = RunResult(record={})
    baseline = tr.task.baseline
    status, diverged_step, solved_step = "finished", None, None
    ev, eval_step = None, None
    step_times, clipped_steps, max_norm = [], 0, 0.0
    # Before the first update: the probe of the recurrence and the spectra of W_hh.
    init = _gradient_state(tr, telemetry)
    latest, latest_step = init, 0
    t_start = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        s = tr.step(tr.task.generate(tr.data_rng, cfg.batch_size))
        row = {"step": step, "loss": s.loss, "preclip_norm": s.preclip_norm,
               "clipped": s.clipped, "seconds": time.perf_counter() - t0}  # fmt: skip
        if s.diverged:
            status, diverged_step = "diverged", step
            res.history.append(row)
            break
        step_times.append(row["seconds"])
        clipped_steps += s.clipped
        max_norm = max(max_norm, s.preclip_norm)
        if step % cfg.profile_every == 0 or step == 1:
            latest, latest_step = _gradient_state(tr, telemetry), step
            row.update(_history_columns(latest))
            probe_logs = latest["probe"].log10_norms
            res.profiles.extend(  # none where the backend has no ||dL/dh_t|| (torch)
                (step, u, t, float(v), float(probe_logs[u, t]))
                for u, prof in enumerate(() if s.dh_norms is None else s.dh_norms)
                for t, v in enumerate(prof)
            )
        if step % cfg.eval_every == 0 or step == cfg.steps:
            ev, eval_step = tr.evaluate(), step
            row.update(eval_loss=ev.loss, eval_loss_se=ev.loss_se)
            if solved_step is None and tr.task.solved(ev.loss, ev.metrics):
                solved_step = step
        res.history.append(row)
        if progress is not None:
            progress(step, s.loss, _progress_info(baseline, ev, eval_step, solved_step))
        if solved_step is not None and cfg.stop_when_solved:
            break
    train_seconds = time.perf_counter() - t_start
    if status == "finished" and eval_step != step:
        ev = tr.evaluate()
    if latest_step != len(step_times):  # the weights changed since the last probe
        latest = _gradient_state(tr, telemetry)
    done = ev if status == "finished" else None  # a diverged run has no final loss
    steady = step_times[1:] or step_times
    compile_seconds = max(step_times[0] - float(np.median(steady)), 0.0) if step_times else 0.0
    sps = 1.0 / float(np.median(steady)) if steady else float("nan")
    res.record = {
        **_config_columns(cfg, tr.task),
        "status": status,
        "diverged_step": diverged_step,
        "steps_run": len(step_times),
        "final_loss": done.loss if done else float("nan"),
        "eval_loss_se": done.loss_se if done else float("nan"),
        "eval_sequences": done.sequences if done else None,
        "baseline_loss": baseline,
        "solved": solved_step is not None,
        "solved_step": solved_step,
        "metrics": ev.metrics if ev else {},
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": sps,
        "sequence_steps_per_second": sps * cfg.batch_size * tr.task.steps,
        "clip_fraction": clipped_steps / max(len(step_times), 1),
        "max_preclip_norm": max_norm,
        "parameters": tr.model.parameters,
        **_record_columns(init, latest),
    }
    if status == "finished":
        res.weights = tr.weights()
    return res


def _gradient_state(tr: Trainer, telemetry) -> dict:
    """The probe and the spectra of the recurrent matrices at the current weights."""
    return {"probe": tr.measure_probe(), **telemetry.recurrent_summary(tr.model)}


def _history_columns(state: dict) -> dict:
    probe = state["probe"]
    row = {
        "grad_ratio_log10": probe.log_ratio,
        "spectral_radius": state["spectral_radius"],
        "max_singular_value": state["max_singular_value"],
    }
    if probe.note:
        row["grad_probe_note"] = probe.note
    return row


def _record_columns(init: dict, final: dict) -> dict:
    """*_init and *_final side by side; the unsuffixed columns hold the final values."""
    out = {}
    for name, key in (
        ("grad_ratio_log10", None),
        ("spectral_radius", "spectral_radius"),
        ("max_singular_value", "max_singular_value"),
    ):
        a, b = (s["probe"].log_ratio if key is None else s[key] for s in (init, final))
        out.update({name: b, f"{name}_init": a, f"{name}_final": b})
    out["grad_probe_note_init"] = init["probe"].note
    out["grad_probe_note_final"] = final["probe"].note
    return out


def _progress_info(baseline, ev, eval_step, solved_step) -> dict:
    return {
        "baseline": baseline,
        "eval_loss": ev.loss if ev else float("nan"),
        "eval_loss_se": ev.loss_se if ev else float("nan"),
        "eval_step": eval_step,
        "solved": solved_step is not None,
    }


def _config_columns(cfg: RunConfig, task) -> dict:
    d = cfg.identity()
    d["seq_len"] = task.seq_len
    return d


def _run_fitted(cfg: RunConfig, progress) -> RunResult:
    from .esn_fit import fit_esn

    task = task_for(cfg)
    model = build_for_run(cfg, task.input_size)
    rng = np.random.default_rng([cfg.seed, 1])
    t0 = time.perf_counter()
    fit = MODELS[cfg.model].fit_options_for(cfg)  # e.g. the ridge
    out = fit_esn(model, task, rng, batch_size=cfg.batch_size, train_batches=cfg.steps, **fit)
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
            record["steps_run"],
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
    from .results.storage import write_weights

    cfg = cfg.validated()
    results.check_writable(out)
    # read before training: a long run records the code it ran and when it began, not the
    # checkout and the clock at its end
    started, env = results.utc_now(), results.environment()
    res = run(cfg, progress)
    record = {"run_id": results.run_id(cfg.identity()), "started_at": started, **res.record, **env}
    hist = pd.DataFrame(res.history) if res.history else None
    prof = (
        pd.DataFrame(res.profiles, columns=["step", "layer_dir", "t", "dh_norm", "probe_log10"])
        if res.profiles
        else None
    )
    if res.weights is not None:  # before the runs file, whose rename marks the run complete
        write_weights(out, record["run_id"], res.weights)
    results.write_run(out, record, hist, prof)
    return record
