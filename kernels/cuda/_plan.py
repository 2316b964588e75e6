"""The launch plan of a recurrence: how its unit spaces are split over blocks and threads,
and whether it runs as one persistent cooperative launch or one launch per step (the split is
described in _common.py's docstring; ``plan_recurrence`` is the entry point, and
``cooperative_capacity`` / ``persistent_refused`` serve the reservoir's kernel too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import cuda

from .. import config
from ._common import SIMULATOR, _ceil


@dataclass(frozen=True)
class Space:
    """One unit space of a recurrence and how it is split (see the module docstring)."""

    units: int  # U
    gates: int  # columns per unit
    k: int  # dot-product length K
    per_block: int = 1  # S
    blocks: int = 1  # blocks that cover the space
    split: int = 1  # ks, threads per dot product

    @property
    def kp(self) -> int:  # K padded to odd
        return self.k | 1

    @property
    def cols(self) -> int:
        return self.gates * self.per_block

    @property
    def weights(self) -> int:  # elements of one block's slice
        return self.cols * self.kp


@dataclass(frozen=True)
class Plan:
    persistent: bool
    blocks: int  # grid of the persistent kernel (unused per step: each space has its own)
    threads: int
    spaces: tuple
    batch: int
    accumulators: int  # shared scratch per thread for the group sums
    norms: int  # index of the space whose units make ||dL/dh_t||, -1 for none
    itemsize: int

    def _scratch(self, i: int) -> int:
        sq = self.batch * self.spaces[i].per_block if i == self.norms else 0
        return self.accumulators * self.threads + sq

    def step_shared(self, i: int) -> int:
        """Dynamic shared bytes of a per-step launch over space i: [group sums][squares]."""
        return self.itemsize * self._scratch(i)

    @property
    def persistent_shared(self) -> int:
        """[slice of space 0][slice of space 1]...[group sums][squares]."""
        w = sum(s.weights for s in self.spaces)
        n = self.accumulators * self.threads
        sq = self.batch * self.spaces[self.norms].per_block if self.norms >= 0 else 0
        return self.itemsize * (w + n + sq)


last_plan: Plan | None = None  # the most recent plan, for benchmarks and diagnostics
persistent_error: str | None = None  # why the persistent kernel last failed to compile


def _split(batch: int, per_block: int, threads: int) -> int:
    """Largest power of two ks <= a warp with ks * pairs <= threads."""
    pairs, ks = batch * per_block, 1
    while ks * 2 <= min(config.CUDA_MAX_SPLIT, threads) and ks * 2 * pairs <= threads:
        ks *= 2
    return ks


def _spread(specs, batch, threads, blocks):
    """Spaces split over `blocks` blocks: S = ceil(U / blocks) units per block."""
    out = []
    for units, gates, k in specs:
        s = _ceil(units, blocks)
        out.append(Space(units, gates, k, s, _ceil(units, s), _split(batch, s, threads)))
    return tuple(out)


def _device_facts():
    """(number of SMs, cooperative launch supported) of the current device."""
    if SIMULATOR:
        return 1, True
    dev = cuda.get_current_device()
    return int(dev.MULTIPROCESSOR_COUNT), bool(getattr(dev, "COOPERATIVE_LAUNCH", 0))


def cooperative_capacity(kernel, args, threads: int, shared: int) -> int:
    """Most blocks a cooperative launch of `kernel` may have (1 in the simulator), 0 where it
    cannot run here: no cooperative launch, or the kernel does not compile (grid sync needs
    libcudadevrt from the CUDA toolkit), the reason then kept in ``persistent_error``.
    `args` only provide types: placeholders of the right dtype and ndim do."""
    global persistent_error
    if not _device_facts()[1]:
        persistent_error = "this device has no cooperative launch"
        return 0
    try:
        if SIMULATOR:
            return kernel.overloads[None].max_cooperative_grid_blocks(threads)
        argtypes = tuple(kernel.typeof_pyval(a) for a in args)
        return kernel.compile(argtypes).max_cooperative_grid_blocks(threads, shared)
    except Exception as exc:  # the caller launches per step instead
        persistent_error = f"{type(exc).__name__}: {exc}"
        return 0


def persistent_refused(what: str) -> RuntimeError:
    """The error for CUDA_RECURRENCE='persistent' where the persistent kernel cannot run."""
    reason = f" ({persistent_error})" if persistent_error else ""
    return RuntimeError(f"the persistent {what} kernel cannot run here{reason}")


def plan_recurrence(specs, batch, dtype, accumulators, norms=-1, persistent=None) -> Plan:
    """Choose persistent or per-step launches for unit spaces `specs` = [(U, gates, K), ...].

    `persistent`: (kernel, placeholder args) for the occupancy query, or None where the
    caller has no persistent kernel.
    """
    global last_plan
    threads = config.THREADS_PER_BLOCK
    mode = config.CUDA_RECURRENCE
    itemsize = np.dtype(dtype).itemsize
    plan = None
    if mode not in ("auto", "persistent", "per-step"):
        raise ValueError(f"CUDA_RECURRENCE={mode!r}; use auto, persistent or per-step")
    if mode != "per-step" and persistent is not None:
        plan = _persistent_plan(specs, batch, threads, itemsize, accumulators, norms, persistent)
        if plan is None and mode == "persistent":
            raise persistent_refused("recurrence")
    if plan is None:
        per_block = max(1, threads // (batch * config.CUDA_MAX_SPLIT))
        spaces = []
        for units, gates, k in specs:
            s = min(per_block, units)
            spaces.append(Space(units, gates, k, s, _ceil(units, s), _split(batch, s, threads)))
        plan = Plan(False, 0, threads, tuple(spaces), batch, accumulators, norms, itemsize)
    last_plan = plan
    return plan


def _persistent_plan(specs, batch, threads, itemsize, accumulators, norms, persistent):
    n_sm, coop = _device_facts()
    if not coop:
        return None
    kernel, args = persistent
    blocks = min(max(u for u, _, _ in specs), n_sm * config.CUDA_PERSISTENT_BLOCKS_PER_SM)
    for _ in range(2):  # a second try with the grid the occupancy query allows
        spaces = _spread(specs, batch, threads, blocks)
        grid = max(s.blocks for s in spaces)
        plan = Plan(True, grid, threads, spaces, batch, accumulators, norms, itemsize)
        if plan.persistent_shared > config.CUDA_SHARED_BYTES:
            return None
        capacity = cooperative_capacity(kernel, args, threads, plan.persistent_shared)
        if capacity == 0:
            return None
        if grid <= capacity:
            return plan
        blocks = capacity
    return None
