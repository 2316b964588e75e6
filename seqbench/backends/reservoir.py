"""The reservoir's backend contract, and what its backends share.

Each backend registered in ``backends.BACKENDS`` names a reservoir module exposing
``RESERVOIR = ReservoirFunctions(prepare, run, check)``:

    check() -> None                          ConfigError where the backend cannot run here
    prepare(model) -> handle                 once per set of weights (build, load_state_dict):
                                             the backend's layouts and copies of W
    run(handle, x, w_in_t, s0, free) -> (states (B, T, N), outputs (B, T, O))

``x`` (B, T, K) enters through ``w_in_t`` (K, N) with the bias b; ``free`` = (W_fb, W_out,
b_out, y0) for a free run (y_t = W_out x_t + b_out fed back through W_fb), or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sparse_mod

from . import buffers


class ReservoirFunctions(NamedTuple):
    prepare: Callable
    run: Callable
    check: Callable = lambda: None


class Prepared:
    """A handle's common part: the model's weights as loaded, its leak and activation."""

    def __init__(self, model):
        self.params = model.params
        self.hidden_size = model.hidden_size
        self.dtype = model.np_dtype
        self.leak = model.options["leak"]
        self.linear = model.options["activation"] == "identity"


class KernelReady(Prepared):
    """W as the compiled kernels take it: CSR with uint32 indices, or dense W^T."""

    def __init__(self, model):
        super().__init__(model)
        w = self.params["weight_hh_l0"]
        if sparse_mod.issparse(w):
            self.csr = (w.indptr.astype(np.uint32), w.indices.astype(np.uint32), w.data)
            self.w_hh_t = None
        else:
            self.csr = None
            self.w_hh_t = np.ascontiguousarray(w.T)


def project(h: Prepared, x, w_in_t) -> np.ndarray:
    """x @ w_in_t + b for every step: one GEMM, batch-first (B, T, N)."""
    B, T, K = x.shape
    out = buffers.empty((B * T, h.hidden_size), h.dtype)  # the only (B, T, N)
    np.matmul(x.reshape(B * T, K), w_in_t, out=out)  # array of a forward
    out += h.params["bias_hh_l0"]
    return out.reshape(B, T, -1)


def kernel_arguments(h: Prepared, states, s0, free):
    """(common, outputs): the arguments every esn kernel takes after its W, as
    (leak, linear, s0, states, w_fb, w_out, b_out, y0, outputs); without a free run the
    feedback arrays are empty."""
    B, T, N = states.shape
    dt = h.dtype
    if free is None:
        w_fb, w_out = np.zeros((N, 0), dt), np.zeros((0, N), dt)
        b_out, y0 = np.zeros(0, dt), np.zeros((B, 0), dt)
    else:
        w_fb, w_out, b_out, y0 = (np.ascontiguousarray(a, dtype=dt) for a in free)
    outputs = np.empty((B, T, w_out.shape[0]), dtype=dt)
    return (h.leak, h.linear, s0, states, w_fb, w_out, b_out, y0, outputs), outputs
