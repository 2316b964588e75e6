"""Gradient clipping, parsed from the text of ``--clip``: ``none``, ``value:C`` or ``norm:C``.

- ``value:C``: every gradient element clamped to [-C, C] (as Arjovsky's uRNN code).
- ``norm:C``: Pascanu et al. 2013, g <- C g / ||g|| when ||g|| > C, with ||g|| the L2 norm
  over all parameter gradients together (torch's clip_grad_norm_ without its 1e-6 epsilon).

``apply`` always returns the pre-clip global norm, so the harness records it every step
whatever the mode. When that norm is NaN or Inf the gradients are left untouched: clipping
would hide an Inf (value) or turn everything into zeros (norm), and the divergence guard,
not the clipper, decides what a non-finite step means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .telemetry import global_norm

KINDS = ("none", "value", "norm")
_FORMS = "use none, value:C or norm:C with C > 0"


@dataclass(frozen=True)
class Clip:
    kind: str = "none"  # one of KINDS
    threshold: float | None = None  # C; None for kind "none"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"clip kind {self.kind!r} is not known; {_FORMS}")
        if (self.kind == "none") != (self.threshold is None):
            raise ConfigError(f"clip {self.kind!r} with threshold {self.threshold!r}; {_FORMS}")
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and self.threshold > 0
        ):
            raise ConfigError(f"clip threshold must be finite and > 0, got {self.threshold!r}")

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        c = repr(float(self.threshold))
        return f"{self.kind}:{c[:-2] if c.endswith('.0') else c}"

    def apply(self, grads: dict, keys) -> tuple[float, bool]:
        """Clip grads[k], k in keys, in place; return (pre-clip global norm, clipped?)."""
        keys = list(keys)
        norm = global_norm(grads, keys)
        if self.kind == "none" or not math.isfinite(norm):
            return norm, False
        c = self.threshold
        if self.kind == "norm":
            if norm <= c:
                return norm, False
            scale = c / norm
            for k in keys:
                grads[k] *= scale
            return norm, True
        clipped = False
        for k in keys:
            g = grads[k]
            if g.size and (g.max() > c or g.min() < -c):
                np.clip(g, -c, c, out=g)
                clipped = True
        return norm, clipped

    def apply_flat(self, g: np.ndarray, norm: float) -> bool:
        """``apply`` on one flat gradient buffer whose pre-clip norm (finite) is ``norm``:
        clip g in place, return whether it was clipped. Same arithmetic as ``apply``."""
        from .kernels.cpu.head import clamp, scale  # numba is imported on first use only

        if self.kind == "norm":
            if norm <= self.threshold:
                return False
            scale(g, self.threshold / norm)
            return True
        return self.kind == "value" and bool(clamp(g, self.threshold))


def parse_clip(text) -> Clip:
    """``"none"``, ``"value:C"`` or ``"norm:C"`` (C finite, > 0) -> Clip; None means none."""
    if text is None:
        return Clip()
    if isinstance(text, Clip):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"clip must be text, got {text!r}; {_FORMS}")
    kind, sep, value = text.strip().partition(":")
    if kind == "none" and not sep:
        return Clip()
    if kind not in ("value", "norm") or not sep:
        raise ConfigError(f"clip {text!r} is malformed; {_FORMS}")
    try:
        c = float(value)
    except ValueError:
        raise ConfigError(f"clip {text!r} is malformed; {_FORMS}") from None
    if not (math.isfinite(c) and c > 0):
        raise ConfigError(f"clip {text!r} needs a finite C > 0; {_FORMS}")
    return Clip(kind, c)
