"""The gradient probe of the recurrence: ||dL_T/dh_t|| for t = 1..T, where L_T is the loss at
the last target step alone.

On per-step tasks (readout "all": a target at every step) the training gradient mixes every
step's loss: ||dL/dh_1|| there includes step 1's own loss and says nothing about how far a
gradient travels. The probe is therefore a separate backward pass whose dL/dy is nonzero at
the final step alone (from the task's loss at that step). On sequence-level tasks with
readout "last" that is the training gradient's own shape; with readout "mean" only the last
step's share of the readout is kept, so the probe measures the recurrence, not the readout.

No float32 floor, and no float64 one either: the pass runs on a float64 twin of the model
(numba backend, the training weights loaded into it), forward in chunks of CHUNK steps with
the state carried, backward chunk by chunk from the end with dL/dh at each chunk boundary
rescaled to a largest entry of 1 and the scale kept in log10. A ratio of 1e-60 or 1e-400
reads -60 or -400. An exact zero is reported as such (-inf, with a note), never as a floor.

The probe draws its batch once from its own generator (seed, 4): it consumes nothing of the
training or evaluation streams and never touches the training model, head or optimizer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .models import build_for_run

CHUNK = 16  # steps between rescalings: a fall of 1e-150 within one chunk would underflow


@dataclass
class ProbeResult:
    log10_norms: np.ndarray  # (L*D, T) log10 ||dL_T/dh_t||, input time order; -inf: exact 0
    log_ratio: float  # log10(||dL_T/dh_1|| / ||dL_T/dh_T||) of layer 0 (forward direction)
    note: str | None  # why log_ratio is not a finite number, when it is not


def summarise(first_log10: float, last_log10: float) -> tuple[float, str | None]:
    """(log10 ||dL_T/dh_1|| - log10 ||dL_T/dh_T||, note) from the two ends in log10."""
    if math.isnan(first_log10) or math.isnan(last_log10):
        return math.nan, "the probe gradient is not finite (NaN)"
    if last_log10 == -math.inf:
        return math.nan, "dL_T/dh_T is exactly 0: no gradient reaches the last state"
    if first_log10 == -math.inf:
        return -math.inf, (
            "dL_T/dh_1 is exactly 0: the gradient stopped on its way back "
            f"(saturated or dead units, a zero Jacobian, or a fall below 1e-150 within "
            f"{CHUNK} steps)"
        )
    if math.isinf(first_log10) or math.isinf(last_log10):
        return math.nan, "the probe gradient overflowed float64"
    return first_log10 - last_log10, None


class GradientProbe:
    """Built once per run; ``measure`` reloads the current weights into the float64 twin."""

    def __init__(self, cfg, task, batch_size: int):
        twin_cfg = dataclasses.replace(cfg, dtype="float64", backend="numba")
        self.twin = build_for_run(twin_cfg, task.input_size)
        self.task = task
        self.per_step = task.readout == "all"
        batch = task.generate(np.random.default_rng([cfg.seed, 4]), batch_size, split="test")
        self.x = np.ascontiguousarray(batch.x, dtype=np.float64)
        self.y = batch.y
        # A reversed direction cannot carry its state across forward chunks: one chunk then.
        self.chunk = self.x.shape[1] if self.twin.bidirectional else CHUNK

    def measure(self, model_params: dict, head) -> ProbeResult:
        """The probe at the given weights (the training model's params and its Head)."""
        if not all(np.all(np.isfinite(v)) for v in model_params.values()):
            n = self.twin.num_layers * self.twin.num_directions
            nan = np.full((n, self.x.shape[1]), np.nan)
            return ProbeResult(nan, math.nan, "the weights are not finite")
        self.twin.load_state_dict(model_params)
        head64 = head.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            logs = self._log_norms(head64)
        return ProbeResult(logs, *summarise(float(logs[0, 0]), float(logs[0, -1])))

    def _last_step_dy(self, head64, y):
        """dL_T/dy: (B, T, F), nonzero at the final step alone."""
        out = head64.forward(y)
        if self.per_step:
            _, d_last = self.task.loss(out[:, -1:], self.y[:, -1:])
            dout = np.zeros_like(out)
            dout[:, -1:] = d_last
        else:
            _, dout = self.task.loss(out, self.y)
        _, dy = head64.backward(y, np.asarray(dout, dtype=np.float64))
        last = np.zeros_like(dy)
        last[:, -1] = dy[:, -1]
        return last

    def _log_norms(self, head64) -> np.ndarray:
        twin, T = self.twin, self.x.shape[1]
        tapes, outs, state = [], [], None
        for start in range(0, T, self.chunk):
            sl = slice(start, start + self.chunk)
            y, tape = twin.forward(self.x[:, sl], state)
            state = tape.state_n
            tapes.append((sl, tape))
            outs.append(y)
        dy = self._last_step_dy(head64, np.concatenate(outs, axis=1))
        logs = np.full((twin.num_layers * twin.num_directions, T), -np.inf)
        scale_log10, dh_n = 0.0, None  # true dL/dh = stored * 10**scale_log10
        for sl, tape in reversed(tapes):
            g = twin.backward(tape, dy[:, sl], dh_n, input_grad=False)
            logs[:, sl] = _log10(g.dh_norms) + scale_log10
            carried = g.initial_state if isinstance(g.initial_state, tuple) else (g.initial_state,)
            peak = max(float(np.max(np.abs(a))) for a in carried)
            if peak == 0.0 or not math.isfinite(peak):
                if not math.isfinite(peak) and sl.start > 0:
                    logs[:, : sl.start] = np.nan
                break  # an exact 0 stays 0 all the way back: -inf already stands there
            scale_log10 += math.log10(peak)
            scaled = tuple(a / peak for a in carried)
            dh_n = scaled if len(scaled) > 1 else scaled[0]
        return logs


def _log10(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log10(a)
