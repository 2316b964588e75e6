"""The spin barrier's ordering check, shared by tests/test_esn.py (in process, default barrier)
and tests/test_barrier.py (in a subprocess with SEQBENCH_BARRIER_SPINS=0, read at compile
time): two threads write, meet, read the other's write, meet, for ``steps`` steps; each must
see the other's write of the same step, never an older or newer one."""

from __future__ import annotations

import numpy as np
from numba import njit
from seqbench.kernels.cpu._sync import STRIDE, barrier

from seqbench.backends import cpu_runtime


@njit(nogil=True)
def _exchange(slots, seen, counters, me, threads):
    for step in range(1, seen.shape[1] + 1):
        slots[me] = step
        barrier(counters, me, threads, 2 * step - 1)
        seen[me, step - 1] = slots[1 - me]
        barrier(counters, me, threads, 2 * step)


def check_order(steps: int) -> None:
    cpu_runtime.set_num_threads(2)
    slots, seen = np.zeros(2, np.int64), np.zeros((2, steps), np.int64)
    cpu_runtime.run_group(_exchange, 2, slots, seen, np.zeros(2 * STRIDE, np.int64))
    np.testing.assert_array_equal(seen, np.tile(np.arange(1, steps + 1), (2, 1)))
