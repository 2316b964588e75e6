"""Recurrent models by composition: any cell, stacked layers, one or two directions.

A layer-direction runs one backend layer function; the reverse direction is the forward one
on time-flipped input. Layer l > 0 reads the concatenated directions of layer l - 1, as
torch does. Parameter names, shapes and state layout follow torch.nn.RNN/LSTM/GRU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backends import layer_functions
from ..errors import ConfigError
from .cells import CellSpec

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype) -> str:
    """The dtype's name ("float32" or "float64"), from a name or a NumPy type."""
    dtype = getattr(dtype, "__name__", str(dtype))
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use float32 or float64")
    return dtype


@dataclass
class Tape:
    """What backward needs, plus the final states (torch's h_n and, for LSTM, c_n)."""

    batch_shape: tuple  # (B, T)
    caches: list  # one per layer-direction, backend-private
    h_n: np.ndarray  # (L*D, B, S)
    c_n: np.ndarray | None = None  # (L*D, B, H), LSTM only

    @property
    def state_n(self):
        return self.h_n if self.c_n is None else (self.h_n, self.c_n)


class Gradients(dict):
    """dL/d(parameter) keyed like state_dict(), plus "input" (B, T, I) unless not asked for.

    Attributes: ``dh_norms`` (L*D, T): ||dL/dh_t|| per layer-direction in input time order
    (L2 over the state, mean over the batch; for Jordan the recurrent state is y);
    ``initial_state``: dL/dh0 in the layout of ``h0``.
    """

    dh_norms: np.ndarray
    initial_state: object


@dataclass
class RecurrentModel:
    spec: CellSpec
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dtype: str
    backend: str
    seed: int
    options: dict
    params: dict = field(default_factory=dict)  # live arrays, state_dict() names

    def __post_init__(self):
        self._fwd, self._bwd = layer_functions(self.backend, self.spec.name)
        self._np_dtype = DTYPES[self.dtype]
        rng = np.random.default_rng(self.seed)
        for layer, _direction, suffix in self._units():
            fan_in = self._layer_input_size(layer)
            p = self.spec.init_params(rng, fan_in, self.hidden_size, self.options, self._np_dtype)
            self.params.update({f"{k}{suffix}": v for k, v in p.items()})
        self._shapes = {k: v.shape for k, v in self.params.items()}

    # ------------------------------------------------------------- structure

    @property
    def cell(self) -> str:
        return self.spec.name

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        return self.spec.state_size(self.hidden_size, self.options)

    @property
    def output_size(self) -> int:
        """Features of y: num_directions * the cell's output size."""
        return self.num_directions * self.spec.output_size(self.hidden_size, self.options)

    @property
    def parameters(self) -> int:
        """Number of scalar parameters."""
        return int(sum(v.size for v in self.params.values()))

    def _layer_input_size(self, layer: int) -> int:
        if layer == 0:
            return self.input_size
        return self.output_size

    def _units(self):
        """(layer, direction, name suffix) in torch's order."""
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                yield layer, direction, f"_l{layer}" + ("_reverse" if direction else "")

    def _unit_params(self, suffix: str) -> dict:
        n = len(suffix)
        return {k[:-n]: v for k, v in self.params.items() if k.endswith(suffix)}

    def recurrent_matrices(self) -> dict:
        """{name: matrix} of every recurrent weight (weight_hh_l0, ...), for telemetry."""
        base = self.spec.recurrent_weight
        return {f"{base}{s}": self.params[f"{base}{s}"] for _, _, s in self._units()}

    # ------------------------------------------------------------- state_dict

    def state_dict(self) -> dict:
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, sd: dict) -> None:
        """Load torch-named arrays; validates everything before changing anything."""
        if not hasattr(sd, "keys"):
            raise ConfigError("state_dict must be a mapping of parameter name -> array")
        missing = sorted(set(self._shapes) - set(sd))
        unexpected = sorted(set(sd) - set(self._shapes))
        if missing:
            raise ConfigError(f"state_dict is missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            raise ConfigError(f"state_dict has unexpected key {unexpected[0]!r}")
        new = {}
        for k, shape in self._shapes.items():
            v = np.asarray(sd[k])
            if v.shape != shape:
                raise ConfigError(f"state_dict[{k!r}] has shape {v.shape}, expected {shape}")
            if not np.issubdtype(v.dtype, np.number):
                raise ConfigError(f"state_dict[{k!r}] is not numeric (dtype {v.dtype})")
            if not np.all(np.isfinite(v)):
                raise ConfigError(f"state_dict[{k!r}] contains NaN or Inf")
            new[k] = np.ascontiguousarray(v, dtype=self._np_dtype)
        self.params.update(new)

    # ------------------------------------------------------------- checks

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ConfigError(
                f"x must have 3 dimensions (batch, time, features), got shape {x.shape}"
            )
        B, T, I = x.shape
        if I != self.input_size:
            raise ConfigError(f"x has {I} features but the model has input_size={self.input_size}")
        if B == 0 or T == 0:
            raise ConfigError(
                f"x must have at least one sequence and one step, got shape {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError(f"x must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self._np_dtype)
        if not np.all(np.isfinite(x)):
            raise ConfigError("x contains NaN or Inf")
        return x

    def _check_state(self, name, a, B, size) -> np.ndarray:
        want = (self.num_layers * self.num_directions, B, size)
        a = np.asarray(a)
        if a.shape != want:
            raise ConfigError(f"{name} has shape {a.shape}, expected {want} (layers*dirs, B, S)")
        a = np.ascontiguousarray(a, dtype=self._np_dtype)
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{name} contains NaN or Inf")
        return a

    def _initial_states(self, h0, B) -> list:
        """Per-unit tuples of (B, S) arrays, from torch's (L*D, B, S) layout or zeros."""
        S, H, n = self.state_size, self.hidden_size, self.num_layers * self.num_directions
        if self.spec.n_states == 2:
            if h0 is None:
                h0 = (np.zeros((n, B, H)), np.zeros((n, B, H)))
            if not (isinstance(h0, (tuple, list)) and len(h0) == 2):
                raise ConfigError("h0 for an LSTM must be a tuple (h0, c0)")
            h = self._check_state("h0", h0[0], B, H)
            c = self._check_state("c0", h0[1], B, H)
            return [(np.ascontiguousarray(h[u]), np.ascontiguousarray(c[u])) for u in range(n)]
        h = self._check_state("h0", np.zeros((n, B, S)) if h0 is None else h0, B, S)
        return [(np.ascontiguousarray(h[u]),) for u in range(n)]

    def _check_grad(self, name, a, want) -> np.ndarray:
        a = np.asarray(a)
        if a.shape != want:
            raise ConfigError(f"{name} has shape {a.shape}, expected {want}")
        return np.ascontiguousarray(a, dtype=self._np_dtype)

    # ------------------------------------------------------------- compute

    def forward(self, x, h0=None):
        """x: (B, T, I) -> y: (B, T, D*O), tape (with h_n, c_n)."""
        x = self._check_input(x)
        B, T, _ = x.shape
        states = self._initial_states(h0, B)
        caches, finals = [], []
        inp = x
        u = 0
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                p = self._unit_params(suffix)
                xi = inp[:, ::-1] if direction else inp
                out, state_n, cache = self._fwd(p, xi, states[u], self.options)
                outs.append(out[:, ::-1] if direction else out)
                caches.append(cache)
                finals.append(state_n)
                u += 1
            inp = np.ascontiguousarray(np.concatenate(outs, axis=2) if len(outs) > 1 else outs[0])
        h_n = np.stack([f[0] for f in finals])
        c_n = np.stack([f[1] for f in finals]) if self.spec.n_states == 2 else None
        return inp, Tape((B, T), caches, h_n, c_n)

    def backward(self, tape: Tape, dy, dh_n=None, input_grad=True) -> Gradients:
        """dy: dL/dy (B, T, D*O); dh_n: dL/d(final state), torch's layout, optional.
        input_grad=False: no "input" gradient (the training loop's data needs none; it saves
        the first layer's dL/dx GEMM, 10% of a char-lm LSTM step)."""
        B, T = tape.batch_shape
        n_units = self.num_layers * self.num_directions
        dy = self._check_grad("dy", dy, (B, T, self.output_size))
        dfinal = self._final_state_grads(dh_n, B)
        grads = Gradients()
        norms = np.zeros((n_units, T), dtype=self._np_dtype)
        dstate0 = [None] * n_units
        O = self.output_size // self.num_directions
        d_above = dy
        for layer in reversed(range(self.num_layers)):
            d_below = 0.0
            for direction in range(self.num_directions):
                u = layer * self.num_directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                dout = d_above[:, :, direction * O : (direction + 1) * O]
                dout = np.ascontiguousarray(dout[:, ::-1] if direction else dout)
                need_dx = input_grad or layer > 0
                g, dx, ds0, dn = self._bwd(
                    self._unit_params(suffix), tape.caches[u], dout, dfinal[u], need_dx
                )
                grads.update({f"{k}{suffix}": v for k, v in g.items()})
                if need_dx:
                    d_below = d_below + (dx[:, ::-1] if direction else dx)
                norms[u] = dn[::-1] if direction else dn
                dstate0[u] = ds0
            d_above = d_below
        if input_grad:
            grads["input"] = np.ascontiguousarray(d_above)
        grads.dh_norms = norms
        h0 = np.stack([s[0] for s in dstate0])
        grads.initial_state = (h0, np.stack([s[1] for s in dstate0])) if len(dstate0[0]) > 1 else h0
        return grads

    def _final_state_grads(self, dh_n, B) -> list:
        n, S, H = self.num_layers * self.num_directions, self.state_size, self.hidden_size
        if self.spec.n_states == 2:
            h, c = (None, None) if dh_n is None else dh_n
            h = np.zeros((n, B, H)) if h is None else h
            c = np.zeros((n, B, H)) if c is None else c
            h = self._check_grad("dh_n", h, (n, B, H))
            c = self._check_grad("dc_n", c, (n, B, H))
            return [(np.ascontiguousarray(h[u]), np.ascontiguousarray(c[u])) for u in range(n)]
        h = np.zeros((n, B, S)) if dh_n is None else dh_n
        h = self._check_grad("dh_n", h, (n, B, S))
        return [(np.ascontiguousarray(h[u]),) for u in range(n)]
