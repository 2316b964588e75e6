"""A spin barrier for kernels whose threads must meet every time step.

Row-split kernels (one series cut into row ranges, one range per thread) need every thread's
new state before anyone takes the next step. A step is ~20 us, so the barrier must cost well
under a microsecond: each thread bumps its own counter (a cache line apart) with an atomic add
and spins on acquire loads of the others'. The kernels run on the backend's thread pool with
one thread per core; seqbench.models.esn runs one such group at a time so that a group never
waits for a pool thread held by another group.
"""

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import config

STRIDE = 8  # int64 counters 64 bytes apart: no false sharing between spinning threads
_X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}


def _element_pointer(context, builder, sig, args):
    ary_t = sig.args[0]
    ary = context.make_array(ary_t)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, ary_t, ary, [args[1]])


@intrinsic
def _atomic_add(typingctx, counters, index, value):
    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return types.int64(counters, index, types.int64), codegen


@intrinsic
def _atomic_load(typingctx, counters, index):
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(counters, index), codegen


def _x86_instruction(name):
    """An intrinsic with no arguments that emits the LLVM x86 intrinsic ``name`` (an
    instruction with no operands) on x86 and nothing elsewhere."""

    @intrinsic
    def emit(typingctx):
        def codegen(context, builder, sig, args):
            if _X86:
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), []), name
                )
                builder.call(fn, [])
            return context.get_dummy_value()

        return types.none(), codegen

    return emit


# PAUSE in a spin loop: it yields the core's pipeline to a hyperthread sibling (two vCPUs are
# often one core's two threads) and avoids the memory-order flush on exit.
_pause = _x86_instruction("llvm.x86.sse2.pause")
# SFENCE: the streaming (non-temporal) stores issued so far become visible to other threads
# before any later store; x86 orders them only with fences and locked instructions.
store_fence = _x86_instruction("llvm.x86.sse.sfence")


@njit(cache=config.CACHE, nogil=True)
def barrier(counters, me, threads, generation):
    """Thread ``me`` of ``threads`` arrives at ``generation`` (1, 2, ...) and waits for all.

    counters: int64 [threads * STRIDE], zero before the first call of a run."""
    _atomic_add(counters, me * STRIDE, 1)
    for other in range(threads):
        while _atomic_load(counters, other * STRIDE) < generation:
            _pause()
