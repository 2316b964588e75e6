"""Every CUDA kernel compiled for an H100 (cc 9.0), no GPU needed (issue #24): float32
kernels run no float64 instruction, and float64 kernels hold no float32 value of their own.

float32: no PTX instruction with an ``.f64`` operand type (``cvt`` to or from f64
included), libdevice's inlined functions counted too. float64: no ``float`` (f32) value
in the kernel's LLVM IR, so no f32 <-> f64 conversion of seqbench's making; the PTX of
libdevice's float64 exp and tanh does convert to float32 for a fast 2^x inside them, by
design, which is why this side reads the IR before libdevice is linked in.

The kernels are found by running the public kernel entry points (every cell's forward and
backward, the GEMM, column sums, both reservoir kernels; persistent and per-step paths)
with numba.cuda's device arrays faked and every launch recorded instead of run; each
distinct (kernel, argument types) is then compiled once. That part runs in a subprocess,
``python tests/test_ptx.py OUT.json``, because the fakes patch numba.cuda.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CC = (9, 0)
F32_IR = re.compile(r"\bfloat\b")  # LLVM's name for f32 (double is f64)


def instructions(ptx, pattern):
    """PTX instruction lines (no directive, label or comment) matching ``pattern``."""
    lines = (line.split("//")[0].strip() for line in ptx.splitlines())
    return [s for s in lines if s and s[0] not in ".{}()" and re.search(pattern, s)]


# ---------------------------------------------------------------- the subprocess


def _record_launches():
    """Fake device arrays and record every launch; returns the list of launches."""
    import numba
    import numba.cuda.dispatcher as nd
    import numpy as np
    from numba import cuda, typeof

    class _Device:
        compute_capability = CC

    nd.get_current_device = lambda: _Device()  # device functions compile for CC

    class FakeDeviceArray(np.ndarray):
        __cuda_ndarray__ = True  # what numba.cuda's is_cuda_ndarray looks for

        def copy_to_host(self, ary=None):
            if ary is None:
                return np.array(self)
            ary[...] = self
            return ary

        def copy_to_device(self, ary):
            self[...] = ary

    cuda.to_device = lambda a, *_, **__: np.array(a).view(FakeDeviceArray)
    cuda.device_array = lambda shape, dtype=np.float64, *_, **__: np.zeros(shape, dtype).view(
        FakeDeviceArray
    )

    def argtype(a):
        if isinstance(a, np.ndarray):
            return typeof(np.asarray(a))
        if isinstance(a, tuple):
            return numba.types.BaseTuple.from_types([argtype(x) for x in a])
        return typeof(a)

    launches = []

    def call(self, args, griddim, blockdim, stream, sharedmem):
        launches.append((self, tuple(argtype(a) for a in args)))

    nd.CUDADispatcher.call = call
    from seqbench.kernels.cuda import _plan

    _plan._device_facts = lambda: (132, True)  # an H100's SMs, cooperative launch
    _plan.cooperative_capacity = lambda *_, **__: 1 << 20
    return launches, FakeDeviceArray


def _drive(dtype, fake):
    """Call every public kernel entry point once with small host arrays of ``dtype``."""
    import numpy as np
    import scipy.sparse as sparse
    from seqbench.kernels.cuda import _common, elman, esn, gru, jordan, lstm

    rng = np.random.default_rng(0)
    T, B, H, O, N = 3, 2, 5, 3, 6

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def z(*shape):
        return np.zeros(shape, dtype)

    elman.elman_forward(r(T, B, H), r(H, H), r(H), r(B, H), True, z(T, B, H))
    elman.elman_backward(r(T, B, H), r(B, H), r(T, B, H), r(H, H), True, z(T, B, H), z(B, H), z(T))
    jordan.jordan_forward(r(T, B, H), r(O, H), r(H, O), r(O), r(B, O), z(T, B, H), z(T, B, O))
    jordan.jordan_backward(
        r(T, B, O), r(B, O), r(T, B, H), r(H, O), r(O, H), z(T, B, O), z(T, B, H), z(B, O), z(T)
    )
    lstm.lstm_forward(
        *(r(T, B, 4 * H), r(H, 4 * H), r(4 * H), r(B, H), r(B, H)),
        *(z(T, B, 4 * H), z(T, B, H), z(T, B, H)),
    )
    lstm.lstm_backward(
        *(r(T, B, H), r(B, H), r(B, H), r(T, B, 4 * H), r(T, B, H), r(B, H), r(4 * H, H)),
        *(z(T, B, 4 * H), z(B, H), z(B, H), z(T)),
    )
    gru.gru_forward(r(T, B, 3 * H), r(H, 3 * H), r(3 * H), r(B, H), z(T, B, 4 * H), z(T, B, H))
    gru.gru_backward(
        *(r(T, B, H), r(B, H), r(T, B, 4 * H), r(T, B, H), r(B, H), r(3 * H, H)),
        *(z(T, B, 3 * H), z(T, B, H), z(B, H), z(T)),
    )
    _common.gemm(r(4, 3).view(fake), r(3, 5).view(fake), z(4, 5).view(fake), bias=r(5).view(fake))
    _common.colsum(r(7, 3).view(fake), z(3).view(fake))
    w = r(N, N) * (rng.random((N, N)) < 0.5)
    csr = sparse.csr_array(w)
    indices = (csr.indptr.astype(np.uint32), csr.indices.astype(np.uint32), csr.data)
    for fb in (0, 2):  # with and without output feedback
        rest = (0.5, False, r(B, N), z(B, T, N), r(N, fb), r(fb, N), r(fb), r(B, fb), z(B, T, fb))
        esn.esn_forward(r(B, T, N), np.ascontiguousarray(w.T), *rest)
        esn.esn_forward_csr(r(B, T, N), *indices, *rest)


def _compile(dispatcher, argtypes):
    """(PTX, LLVM IR before libdevice) of one kernel, as numba.cuda.compile_ptx builds it."""
    from numba.cuda.compiler import compile_cuda

    nvvm_options = {"opt": 3, "fastmath": False}
    cres = compile_cuda(dispatcher.py_func, None, argtypes, nvvm_options=nvvm_options, cc=CC)
    code = dispatcher.py_func.__code__
    lib, _ = cres.target_context.prepare_cuda_kernel(
        cres.library, cres.fndesc, False, False, nvvm_options, code.co_filename, code.co_firstlineno
    )
    return lib.get_asm_str(cc=CC), lib.get_llvm_str()


def collect(out_path):
    """Compile every kernel; write {name: {dtype, f64, cvt_f64, f32_ir}} as JSON."""
    import numpy as np
    from seqbench.kernels import config

    launches, fake = _record_launches()
    for mode in ("persistent", "per-step"):
        config.CUDA_RECURRENCE = mode
        for dtype in (np.float32, np.float64):
            _drive(dtype, fake)
    result, seen = {}, set()
    for dispatcher, argtypes in launches:
        if (id(dispatcher), argtypes) in seen:
            continue
        seen.add((id(dispatcher), argtypes))
        floats = {str(a.dtype) for a in _arrays(argtypes)} & {"float32", "float64"}
        (dtype,) = floats  # every kernel is of one float dtype
        ptx, ir = _compile(dispatcher, argtypes)
        name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
        name = f"{name.replace('.<locals>', '')}[{dtype}]"
        while name in result:  # one kernel, two launch signatures (e.g. CSR and dense)
            name += "'"
        result[name] = {
            "dtype": dtype,
            "f64": len(instructions(ptx, r"\.f64\b")),  # cvt to or from f64 included
            "cvt_f64": len(instructions(ptx, r"^cvt\.\S*f64")),
            "f32_ir": len(F32_IR.findall(ir)),
        }
    Path(out_path).write_text(json.dumps(result, indent=1, sort_keys=True))


def _arrays(types_):
    import numba

    for t in types_:
        if isinstance(t, numba.types.Array):
            yield t
        elif isinstance(t, numba.types.BaseTuple):
            yield from _arrays(t.types)


# ---------------------------------------------------------------- the tests


def _nvvm_missing():
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    reason = _nvvm_missing()
    if reason is not None:
        pytest.skip(f"libNVVM cannot be loaded, so no PTX can be compiled here ({reason})")
    out = tmp_path_factory.mktemp("ptx") / "kernels.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS": "0"}
    proc = subprocess.run(
        [sys.executable, __file__, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_every_kernel_was_compiled(kernels):
    names = {n.split("[")[0] for n in kernels}
    for kernel in ("_one_phase.persistent", "_two_phases.persistent", "_per_step.per_step"):
        assert any(n.endswith(kernel) for n in names), (kernel, sorted(names))
    for kernel in ("gemm", "colsum_partial", "colsum_finish", "norms", "_pack_kernel"):
        assert any(n.endswith(kernel) for n in names), (kernel, sorted(names))
    for kernel in ("_dense_step", "_csr_step", "_readout_step", "_persistent.run"):
        assert any(n.endswith(kernel) for n in names), (kernel, sorted(names))
    for dtype in ("float32", "float64"):
        assert sum(k["dtype"] == dtype for k in kernels.values()) >= 25, dtype


def test_float32_kernels_have_no_f64_instruction(kernels):
    bad = {n: k["f64"] for n, k in kernels.items() if k["dtype"] == "float32" and k["f64"]}
    assert not bad, f"f64 instructions in float32 kernels: {bad}"


def test_float64_kernels_hold_no_float32_value(kernels):
    bad = {n: k["f32_ir"] for n, k in kernels.items() if k["dtype"] == "float64" and k["f32_ir"]}
    assert not bad, f"float (f32) in the LLVM IR of float64 kernels: {bad}"


if __name__ == "__main__":
    collect(sys.argv[1])
