"""What the asv benchmarks share: parameters, and building one side (seqbench or torch).

A combination that cannot run here raises NotImplementedError in ``setup`` (asv records it as
skipped): torch not installed, no CUDA GPU, or the NumPy reference on a shape it would take
minutes on. Shapes are strings "B,T,I,H" so that asv's tables read well.
"""

from __future__ import annotations

import os

import numpy as np

# SEQBENCH_ASV_SMOKE=1 (CI): one small shape and float32 only, so that `asv run --quick` goes
# through every benchmark's code in minutes; measurements are taken without it.
SMOKE = os.environ.get("SEQBENCH_ASV_SMOKE", "0") == "1"

CELLS = ["elman", "lstm", "gru"]  # the cells with a torch peer
BACKENDS = ["numba", "numpy", "torch", "cuda"]
# the speed goals of issue 4
SHAPES = ["4,20,3,16"] if SMOKE else ["32,100,10,128", "1,1000,1,64", "128,100,64,512"]
DTYPES = ["float32"] if SMOKE else ["float32", "float64"]
NUMPY_MAX_STEPS = 32 * 100 * 128  # B*T*H above which the NumPy reference is skipped


def parse(shape: str) -> tuple[int, int, int, int]:
    from seqbench.bench import parse_shape

    return parse_shape(shape)


def make_case(cell: str, backend: str, shape: str, dtype: str):
    """An object with ``forward()`` and ``train_step()``, warmed up (JIT compiled)."""
    B, T, I, H = parse(shape)
    if backend == "numpy" and B * T * H > NUMPY_MAX_STEPS:
        raise NotImplementedError("the NumPy reference is only timed on small shapes")
    if backend == "cuda":
        _require_gpu()
    from seqbench.bench import SeqbenchCase, TorchCase

    ours = SeqbenchCase(cell, (B, T, I, H), dtype, "numba" if backend == "torch" else backend)
    if backend == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        case = TorchCase(cell, (B, T, I, H), dtype, ours.model.state_dict(), ours.x)
    else:
        case = ours
    case.forward()
    case.train_step()
    return case


def _require_gpu():
    try:
        from numba import cuda

        ok = cuda.is_available()
    except Exception:
        ok = False
    if not ok:
        raise NotImplementedError("no CUDA GPU")


def set_threads(backend: str = "torch"):
    """Same threads for every backend: the CPUs this process may use. torch is imported for
    its own cases only: imported beside seqbench it adds ~180 MB to the process (289 against
    107 MB of peak RSS here), which asv's ``peakmem_`` would charge to seqbench's step."""
    if backend == "torch":
        from seqbench.bench import set_threads as _set

        return _set(None)
    from seqbench.backends import cpu_runtime

    return cpu_runtime.set_num_threads(None)


def ones_like(y):
    return np.ones_like(y)
