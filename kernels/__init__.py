"""Numba kernels of seqbench, installed as ``seqbench.kernels``.

Conventions shared by every kernel (``cpu/`` and ``cuda/`` alike):

- Arrays are time-major inside a kernel: ``[T, B, F]``. The harness keeps the public API
  batch-first ``(B, T, F)`` and hands kernels transposed, C-contiguous arrays.
- Recurrent weights arrive transposed from torch's layout for the forward pass
  (``w_hh_t = weight_hh.T``, shape ``[H, G*H]``) so that one step is ``h @ w_hh_t``, and in
  torch's layout for the backward pass (``[G*H, H]``) so that ``dpre @ w_hh`` gives ``dh``.
- The input projection of all steps (``x @ weight_ih.T + bias_ih``) is one GEMM done by the
  caller; kernels only run the recurrence, which cannot be hoisted.
- One dtype per call: float32 or float64 everywhere, never mixed. Kernels compile lazily,
  once per dtype, and are cached on disk (``cache=True``).
- Kernels allocate nothing per step; outputs and saved activations are caller-owned buffers.
"""
