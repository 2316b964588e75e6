"""The output head every gradient-trained run shares: a linear layer over the recurrent
features, per step ("all") or per sequence (last / mean), trained jointly with the cell.

Its three products (logits, dL/dW, dL/dfeatures) go to BLAS through
``backends.cpu_runtime.gemm`` (BLAS held to one thread, rows split over seqbench's pool)
once a product has ``GEMM_MACS`` multiply-adds or more and the head ``GEMM_MIN_OUTPUTS``
outputs or more, and to the compiled loops of kernels/cpu/head.py otherwise: below the first a
BLAS call's fixed cost (~10-25 us here) dominates, and below the second BLAS's skinny product
is no faster than the loops' vectorised dot products (2560 x 128 features, Intel Xeon, quiet,
forward + backward: 10 outputs 0.83 ms loops / 0.87 ms BLAS on one thread, 0.74 / 1.0 ms on
two; 16 outputs 1.46 / 0.88 ms). The char-lm head (3200 rows x 128 features x 96 classes) took
9.2 ms of a 22 ms Elman step in the loops, 2.2 ms on BLAS. tests/test_train.py checks that the
two paths agree.
"""

from __future__ import annotations

import copy

import numpy as np

# A head product with at least this many multiply-adds, and a head of at least this many
# outputs, goes to BLAS.
GEMM_MACS = 1 << 16
GEMM_MIN_OUTPUTS = 16


def _on_blas(rows, w) -> bool:
    return w.shape[0] >= GEMM_MIN_OUTPUTS and rows.shape[0] * w.size >= GEMM_MACS


def head_kernels():
    from .kernels.cpu import head  # numba is imported on first use only

    return head


def _gemm(a, b, trans_a=False, trans_b=False):
    from .backends.cpu_runtime import gemm

    return gemm(a, b, trans_a=trans_a, trans_b=trans_b)


def _same_dtype(*arrays):  # C-contiguous, in their common dtype (the kernels' one signature)
    dt = np.result_type(*arrays)
    return [np.ascontiguousarray(a, dtype=dt) for a in arrays]


def linear_forward(rows, w, b):
    """rows (N, F) @ w.T (O, F) + b (O,) -> (N, O)."""
    if not _on_blas(rows, w):
        out = np.empty((rows.shape[0], w.shape[0]), dtype=w.dtype)
        head_kernels().linear_forward(rows, w, b, out)
        return out
    out = _gemm(rows, w, trans_b=True)
    out += b
    return out


def linear_backward(rows, w, d):
    """-> (dw (O, F), db (O,), drows (N, F)) for dL/dout = d (N, O)."""
    if not _on_blas(rows, w):
        dw, db, d_rows = np.empty_like(w), np.empty(w.shape[0], dtype=w.dtype), np.empty_like(rows)
        head_kernels().linear_backward(rows, w, d, dw, db, d_rows)
        return dw, db, d_rows
    db = d.sum(axis=0, dtype=np.float64).astype(w.dtype)
    return _gemm(d, rows, trans_a=True), db, _gemm(d, w)


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

    def astype(self, dtype) -> Head:
        """A copy with its parameters cast (the gradient probe's float64 head)."""
        twin = copy.copy(self)
        twin.params = {k: v.astype(dtype) for k, v in self.params.items()}
        return twin

    def forward(self, y):
        feats = self._features(y)
        rows, w, b = _same_dtype(feats.reshape(-1, feats.shape[-1]), *self.params.values())
        out = linear_forward(rows, w, b)
        return out.reshape(*feats.shape[:-1], w.shape[0])

    def backward(self, y, dout):
        """-> (grads of the head, dL/dy (B, T, F))."""
        w = self.params["head.weight"]
        feats = self._features(y)
        O, F = w.shape
        rows, w, d = _same_dtype(feats.reshape(-1, F), w, dout.reshape(-1, O))
        dw, db, d_rows = linear_backward(rows, w, d)
        grads = {"head.weight": dw, "head.bias": db}
        d_feats = d_rows.reshape(feats.shape)
        if self.per_step:
            return grads, d_feats
        dy = np.zeros_like(y)
        if self.readout == "last":
            dy[:, -1] = d_feats
        else:
            dy[:] = d_feats[:, None, :] / y.shape[1]
        return grads, dy
