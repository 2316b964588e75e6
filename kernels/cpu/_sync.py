"""A barrier for kernels whose threads must meet every time step.

Row-split kernels (one series cut into row ranges, one range per thread) need every thread's
new state before anyone takes the next step. A step is ~20 us, so the barrier must cost well
under a microsecond: each thread bumps its own counter (a cache line apart) with an atomic add
and spins on acquire loads of the others'. A thread that has spun ``config.BARRIER_SPINS``
PAUSEs (~8 us on Emerald Rapids, 33 ns a PAUSE and load) gives its core away (sched_yield,
~0.4 us when nothing else is runnable) at every further check: beside a busy process the OS
takes a partner off its core for whole time slices, and a thread that spins through them only
keeps the partner's replacement from running (one series, N = 1000, T = 10^4, two threads on a
2-vCPU machine at load 5-8: 1.9-17 s spinning, 0.45-1.06 s yielding). The kernels run on the
backend's thread pool with one thread per core; seqbench.models.esn runs one such group at a
time so that a group never waits for a pool thread held by another group.
"""

import ctypes
import os
import platform

from llvmlite import binding as llvm
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


def _yield_address():
    """Address of the OS call that gives this thread's core to another runnable thread:
    sched_yield (POSIX), SwitchToThread (Windows); None where neither is found."""
    try:
        if os.name == "nt":
            return ctypes.cast(ctypes.windll.kernel32.SwitchToThread, ctypes.c_void_p).value
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value
    except (AttributeError, OSError):
        return None


# The kernels call the yield by this name; it is bound here, at import, in every process, so
# that a kernel loaded from numba's disk cache links to this process's libc.
_YIELD_SYMBOL = "seqbench_yield_cpu"
_YIELD = _yield_address()
if _YIELD is not None:
    llvm.add_symbol(_YIELD_SYMBOL, _YIELD)


@intrinsic
def _yield_cpu(typingctx):
    def codegen(context, builder, sig, args):
        if _YIELD is not None:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), _YIELD_SYMBOL
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


# PAUSE in a spin loop: it yields the core's pipeline to a hyperthread sibling (two vCPUs are
# often one core's two threads) and avoids the memory-order flush on exit.
_pause = _x86_instruction("llvm.x86.sse2.pause")
# SFENCE: the streaming (non-temporal) stores issued so far become visible to other threads
# before any later store; x86 orders them only with fences and locked instructions.
store_fence = _x86_instruction("llvm.x86.sse.sfence")


@njit(cache=config.CACHE, nogil=True)
def barrier(counters, me, threads, generation):
    """Thread ``me`` of ``threads`` arrives at ``generation`` (1, 2, ...) and waits for all:
    spinning at first, yielding its core at every check after config.BARRIER_SPINS PAUSEs.
    Which thread waits and how long never changes what the kernels compute.

    counters: int64 [threads * STRIDE], zero before the first call of a run."""
    _atomic_add(counters, me * STRIDE, 1)
    spins = 0
    for other in range(threads):
        while _atomic_load(counters, other * STRIDE) < generation:
            if spins < config.BARRIER_SPINS:
                _pause()
                spins += 1
            else:
                _yield_cpu()
