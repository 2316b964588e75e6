"""The whole batch on the calling thread: what every cell's ``<cell>_forward`` /
``<cell>_backward`` adds around its ``_rows`` kernel, run as one block of rows [0, B).

Those pairs are the tests' entry points and the oracle of kernels/cuda (same arguments);
seqbench.backends.numba_cpu calls the ``_rows`` kernels itself, one block per thread.
"""

import numpy as np
from numba import njit

from .. import config
from ._common import use_blas

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(inline="always", **_JIT)
def batch_forward(x_proj, w_t):
    """(rec, B, blas) for a whole-batch forward: rec (B, N) the scratch of the step product
    state_{t-1} @ w_t (w_t: (K, N)), and whether that product goes to BLAS."""
    B = x_proj.shape[1]
    K, N = w_t.shape
    return np.empty((B, N), dtype=x_proj.dtype), B, use_blas(B, K, N)


@njit(inline="always", **_JIT)
def batch_backward(d0, d_last, w, seq):
    """(sums, B, blas) for a whole-batch backward, after d0[:] = d_last (the carried gradient:
    dL/d(final state) in, dL/d(state0) out): sums (T,) zeroed for the block's ||dL/dh_t||,
    and whether the step product (B, K) @ w (K, N) goes to BLAS. seq (T, B, .): any
    sequence of the forward, for T and the dtype."""
    d0[:] = d_last
    B = d0.shape[0]
    return np.zeros(seq.shape[0], dtype=seq.dtype), B, use_blas(B, w.shape[0], w.shape[1])


@njit(**_JIT)
def batch_norms(sums, B, dh_norms):  # dh_norms[t] = sums[t] / B: the mean of ||dL/dh_t||
    for t in range(sums.shape[0]):
        dh_norms[t] = sums[t] / B
