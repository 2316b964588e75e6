"""One-hot inputs, CPU: the input projection as a gather and its weight gradient as a
scatter, instead of two GEMMs that multiply by zeros.

A character model's input (vocabulary ~100) is one-hot: x_t W_ih^T picks one column of W_ih
per row, and dW_ih = sum_t dpre_t^T x_t adds each row of dpre into one column. As GEMMs these
were 7.2 of a 30.9 ms char-lm LSTM step (B32 T100 H128, vocabulary 96, one thread, Intel
Xeon); as a gather and a scatter they cost one pass over x_proj each. The gather is exact (a
one-hot GEMM adds zeros to one product with 1.0: the same number); the scatter sums each
column's rows in row order, where BLAS sums them in its own blocked order (float32 rounding).

    one_hot_index(x)               x: [N, I] -> [N] int64: the column of each row's single 1.0,
                                   -1 for a row of zeros; or an empty array if any row is
                                   neither (then x is not one-hot and the GEMMs stay)
    gather_rows(w_t, idx, b, out)  out[n] = w_t[idx[n]] (zeros where idx[n] = -1) + b;
                                   w_t: [I, G] = W_ih^T, b: [G] or None, out: [N, G]
    scatter_rows(d, idx, out)      out[i] = sum over n with idx[n] = i of d[n]; d: [N, G],
                                   out: [I, G] = dW_ih^T, written (zeroed first)
"""

import numpy as np
from numba import njit

from .. import config

_JIT = {"cache": config.CACHE, "fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL,
        "nogil": True}  # fmt: skip


@njit(**_JIT)
def one_hot_index(x):
    N, I = x.shape
    idx = np.empty(N, dtype=np.int64)
    for n in range(N):
        k = -1
        for i in range(I):
            v = x[n, i]
            if v == 0.0:
                continue
            if v != 1.0 or k >= 0:  # a value other than 0 and 1, or a second 1
                return np.empty(0, dtype=np.int64)
            k = i
        idx[n] = k
    return idx


@njit(**_JIT)
def gather_rows(w_t, idx, b, out):
    G = w_t.shape[1]
    for n in range(idx.shape[0]):
        k = idx[n]
        row = out[n]
        if k < 0:
            for g in range(G):
                row[g] = 0.0
        else:
            w = w_t[k]
            for g in range(G):
                row[g] = w[g]
        if b is not None:
            for g in range(G):
                row[g] += b[g]


@njit(**_JIT)
def scatter_rows(d, idx, out):
    G = d.shape[1]
    out[:] = 0.0
    for n in range(idx.shape[0]):
        k = idx[n]
        if k >= 0:
            acc, row = out[k], d[n]
            for g in range(G):
                acc[g] += row[g]
