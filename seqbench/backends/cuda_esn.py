"""The reservoir on the CUDA kernels (seqbench.kernels.cuda.esn).

Only x (B, T, K) crosses to the GPU: the input is projected there, one GEMM into the states
buffer that the kernel then overwrites in place, and the states come back once (a host
projection would send the (B, T, N) array over the bus as well).
"""

from __future__ import annotations

import numpy as np

from . import buffers
from .cuda_gpu import require_gpu
from .reservoir import KernelReady, ReservoirFunctions, kernel_arguments


def run(h: KernelReady, x, w_in_t, s0, free):
    """States (and free-run outputs) for the input x (B, T, K) through w_in_t (K, N)."""
    require_gpu()  # one-line ConfigError without a GPU
    from ..kernels.cuda import _common as cc

    B, T, K = x.shape
    N, dt = h.hidden_size, h.dtype
    u = cc.cuda.device_array((B * T, N), dt)
    x_d = cc.to_device(np.ascontiguousarray(x.reshape(B * T, K), dt))
    bias = cc.to_device(h.params["bias_hh_l0"])
    cc.gemm(x_d, cc.to_device(np.ascontiguousarray(w_in_t, dt)), u, bias=bias)
    u = u.reshape(B, T, N)
    outputs = _run_kernels(h, u, s0, free)
    states = buffers.empty((B, T, N), dt)
    u.copy_to_host(states)
    return states, outputs


def _run_kernels(h, u, s0, free):
    """The recurrence over u (B, T, N) on the device, in place: u_proj in, states out."""
    from ..kernels.cuda import esn as kernels

    common, outputs = kernel_arguments(h, u, s0, free)
    if h.csr is None:
        kernels.esn_forward(u, h.w_hh_t, *common)
    else:
        kernels.esn_forward_csr(u, *h.csr, *common)
    return outputs


RESERVOIR = ReservoirFunctions(prepare=KernelReady, run=run, check=require_gpu)
