"""Subnormal floats flushed to zero while seqbench's CPU kernels run (x86 MXCSR FTZ + DAZ).

An x86 core takes a microcode assist, ~100+ cycles, for every vector instruction that reads
or makes a subnormal number. Saturated gates make them: sigmoid(z) for z < -87 in float32
lies below 2^-126, and products of small gates with small cell states fall under it too.
A model with large weights (an exploding run, just what the suite studies) then ran its
LSTM train step (32, 100, 10, 128) 2.8x slower than with normal weights (50 against 18 ms).
With FTZ and DAZ set, such values are zero: the results differ from IEEE arithmetic only
below 1.2e-38 (float32) and 2.2e-308 (float64), far under any tolerance the suite uses, as
with torch.set_flush_denormal(True) or a -ffast-math build.

MXCSR is per thread and belongs to the caller: ``flush_denormals`` sets the two bits and
returns the old register, ``restore`` puts it back (seqbench.backends.cpu_runtime wraps each
kernel call in the pair). On other architectures both do nothing.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import config
from ._sync import _X86  # one test of the architecture for both intrinsics modules

_FTZ_DAZ = (1 << 15) | (1 << 6)  # MXCSR bits: flush-to-zero, denormals-are-zero


def _mxcsr_slot(builder):
    slot = cgutils.alloca_once(builder, ir.IntType(32))
    return slot, builder.bitcast(slot, ir.IntType(8).as_pointer())


def _mxcsr_call(builder, name, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), [ptr])


@intrinsic
def _get_mxcsr(typingctx):
    def codegen(context, builder, sig, args):
        if not _X86:
            return ir.Constant(ir.IntType(32), 0)
        slot, ptr = _mxcsr_slot(builder)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", ptr)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _set_mxcsr(typingctx, value):
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        if _X86:
            slot, ptr = _mxcsr_slot(builder)
            builder.store(context.cast(builder, args[0], value, types.uint32), slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", ptr)
        return context.get_dummy_value()

    return types.none(value), codegen


@njit(cache=config.CACHE)  # keeps the GIL: releasing it for ~20 ns adds a hand-over
def flush_denormals():
    """Set FTZ and DAZ on this thread; returns the previous MXCSR for ``restore``."""
    old = _get_mxcsr()
    _set_mxcsr(old | _FTZ_DAZ)
    return old


@njit(cache=config.CACHE)  # keeps the GIL: releasing it for ~20 ns adds a hand-over
def restore(old):
    _set_mxcsr(old)
