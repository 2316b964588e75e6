"""What each recurrent cell is: its parameters, state, options and initialisation.

A cell spec knows shapes and names only; the arithmetic lives in the backends (NumPy
reference, Numba kernels). Parameter short names are torch's without the ``_l{k}`` suffix.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..options import Option

INITS = ("default", "orthogonal", "identity")  # plus "spectral:RHO"


def check_init(init: str) -> str:
    if init in INITS:
        return init
    if isinstance(init, str) and init.startswith("spectral:"):
        try:
            rho = float(init.split(":", 1)[1])
        except ValueError:
            rho = float("nan")
        if np.isfinite(rho) and rho > 0:
            return init
    raise ConfigError(
        f"init={init!r} is not known; use one of {', '.join(INITS)} or 'spectral:RHO' with RHO > 0"
    )


class CellSpec:
    """Base spec: a gated cell with torch's four parameters per layer and direction."""

    name = ""
    gates = 1  # weight_ih has gates * H rows
    n_states = 1  # 1: h; 2: (h, c)
    options: tuple = ()  # seqbench.options.Option: the cell options, declared once
    recurrent_weight = "weight_hh"  # the matrix whose spectrum telemetry reports

    def resolve_options(self, hidden_size: int, opts: dict) -> dict:
        defaults = {o.name: o.default for o in self.options}
        unknown = sorted(set(opts) - set(defaults) - {"init"})
        if unknown:
            allowed = ", ".join(sorted(set(defaults) | {"init"}))
            raise ConfigError(
                f"option {unknown[0]!r} is not known for cell {self.name!r}; allowed: {allowed}"
            )
        out = {**defaults, "init": "default", **opts}
        out["init"] = check_init(out["init"])
        return out

    def state_size(self, hidden_size: int, opts: dict) -> int:
        return hidden_size

    def output_size(self, hidden_size: int, opts: dict) -> int:
        return hidden_size

    def param_shapes(self, input_size: int, hidden_size: int, opts: dict) -> dict:
        G, H = self.gates * hidden_size, hidden_size
        return {"weight_ih": (G, input_size), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}

    def init_params(self, rng, input_size: int, hidden_size: int, opts: dict, dtype) -> dict:
        """torch's U(-1/sqrt(H), 1/sqrt(H)) for all, then the recurrent init asked for."""
        k = 1.0 / np.sqrt(hidden_size)
        shapes = self.param_shapes(input_size, hidden_size, opts)
        p = {n: rng.uniform(-k, k, size=s) for n, s in shapes.items()}
        self._recurrent_init(rng, p, hidden_size, opts["init"])
        return {n: np.ascontiguousarray(v, dtype=dtype) for n, v in p.items()}

    def _recurrent_init(self, rng, p: dict, hidden_size: int, init: str) -> None:
        w = p[self.recurrent_weight]
        rows = w.shape[0] // self.gates
        for g in range(self.gates):
            block = w[g * rows : (g + 1) * rows]
            if init == "orthogonal":  # Henaff et al. 2016
                block[:] = _orthogonal(rng, block.shape)
            elif init == "identity":  # IRNN, Le et al. 2015
                block[:] = np.eye(*block.shape)
            elif init.startswith("spectral:"):
                rho = float(init.split(":", 1)[1])
                if block.shape[0] == block.shape[1]:
                    block *= rho / max(np.max(np.abs(np.linalg.eigvals(block))), 1e-12)
                else:
                    block *= rho / max(np.linalg.norm(block, 2), 1e-12)
        if init == "identity":
            for name in p:
                if name.startswith("bias"):
                    p[name][:] = 0.0


def _orthogonal(rng, shape):
    tall = shape[0] >= shape[1]
    a = rng.standard_normal(shape if tall else shape[::-1])
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if tall else q.T


class Elman(CellSpec):
    name = "elman"
    gates = 1
    options = (
        Option("nonlinearity", str, "tanh", "f of h = f(W x + U h + b)", choices=("tanh", "relu")),
    )

    def resolve_options(self, hidden_size, opts):
        out = super().resolve_options(hidden_size, opts)
        if out["nonlinearity"] not in ("tanh", "relu"):
            raise ConfigError(
                f"nonlinearity={out['nonlinearity']!r} is not known; use 'tanh' or 'relu'"
            )
        return out


class LSTM(CellSpec):
    name = "lstm"
    gates = 4
    n_states = 2
    options = (
        Option("forget_bias", float, None, "forget-gate bias at init (auto: torch's uniform)"),
    )

    def init_params(self, rng, input_size, hidden_size, opts, dtype):
        p = super().init_params(rng, input_size, hidden_size, opts, dtype)
        if opts["forget_bias"] is not None:  # total forget bias b_ih_f + b_hh_f = forget_bias
            H = hidden_size
            p["bias_ih"][H : 2 * H] = opts["forget_bias"]
            p["bias_hh"][H : 2 * H] = 0.0
        return p


class GRU(CellSpec):
    name = "gru"
    gates = 3


class Jordan(CellSpec):
    """h_t = tanh(W_ih x_t + W_yh y_{t-1} + b_ih), y_t = W_hy h_t + b_hy; state and output y."""

    name = "jordan"
    gates = 1
    options = (Option("output_size", int, None, "size of y fed back (auto: hidden size)", 1),)
    recurrent_weight = "weight_yh"

    def resolve_options(self, hidden_size, opts):
        out = super().resolve_options(hidden_size, opts)
        if out["output_size"] is None:
            out["output_size"] = hidden_size
        out["output_size"] = check_size("output_size", out["output_size"])
        return out

    def state_size(self, hidden_size, opts):
        return opts["output_size"]

    def output_size(self, hidden_size, opts):
        return opts["output_size"]

    def param_shapes(self, input_size, hidden_size, opts):
        H, O = hidden_size, opts["output_size"]
        return {
            "weight_ih": (H, input_size),
            "weight_yh": (H, O),
            "weight_hy": (O, H),
            "bias_ih": (H,),
            "bias_hy": (O,),
        }


def check_size(name: str, value) -> int:
    """A positive integer, or a ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


CELLS = {c.name: c for c in (Elman(), Jordan(), LSTM(), GRU())}
