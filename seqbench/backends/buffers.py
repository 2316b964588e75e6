"""Recycled memory for the CPU backend's large arrays (states, gates, gradients).

A forward or backward step allocates a few arrays of megabytes (B x T x H and more). glibc
serves those with a fresh mmap and unmaps them on free, so every call pays a page fault
per 4 KiB on first touch: 768 faults per Elman (32, 100, 10, 128) float32 forward, and its
train step took 6.5 ms against 4.8 ms with the memory kept (torch pays the same toll). Here
the memory of an array that nobody references any more goes back to a bounded pool and
serves the next array of the same size: the caller owns what it gets as usual, and the
memory is reused only after its last reference, views included, is gone. Every buffer also
starts on a 64-byte boundary, so rows of whole cache lines stay whole for vector loads.

SEQBENCH_POOL_MB caps the memory held for reuse; 0 turns recycling off. The default, an
eighth of physical memory but at least 512 MB, lets a batch-sized array come back too: an
echo-state forward of 32 series x 10^4 steps x 1000 units writes 2.6 GB of states, and
calls after the first took 4.9 s with fresh memory against 2.3 s with the pool's (this VM
hands freed memory back to its host, so every fresh page faults twice). ``POOL.clear()``
gives the held memory back to the system.
"""

import math
import os
import threading
import weakref

import numpy as np

_MIN_BYTES = 1 << 17  # below this, malloc's heap serves without fresh pages
_ALIGN = 64
_GRANULE = 1 << 16  # sizes rounded up to this, so that near sizes share buffers


class Pool:
    """Buffers that outlived their arrays, by size, up to ``cap`` bytes in all (None: the
    default_cap(), read on first use, so that a bad SEQBENCH_POOL_MB is reported where the
    CLI turns errors into one line, not at import)."""

    def __init__(self, cap: int | None):
        self._cap = cap
        self._free: dict[int, list[tuple[np.ndarray, int]]] = {}
        self._held = 0
        self._lock = threading.Lock()

    @property
    def cap(self) -> int:
        if self._cap is None:
            self._cap = default_cap()
        return self._cap

    @property
    def held(self) -> int:
        """Bytes kept for reuse now."""
        return self._held

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        nbytes = math.prod(shape) * dtype.itemsize
        cap = self.cap  # first, so that a bad SEQBENCH_POOL_MB shows up on any call
        if nbytes < _MIN_BYTES or nbytes > cap:
            return np.empty(shape, dtype)
        size = -(-(nbytes + _ALIGN) // _GRANULE) * _GRANULE
        entry = self._take(size)
        if entry is None:
            buf = np.empty(size, np.uint8)
            entry = (buf, -buf.ctypes.data % _ALIGN)
        buf, skip = entry
        # numpy points a view at the first array up its chain of bases whose own base is not
        # an array: here ``flat``, whose base is a memoryview. Every view of the result
        # therefore keeps ``flat`` alive, and the buffer goes back only when all are gone.
        flat = np.frombuffer(memoryview(buf)[skip : skip + nbytes], dtype)
        weakref.finalize(flat, self._give, entry).atexit = False
        return flat.reshape(shape)

    def zeros(self, shape, dtype) -> np.ndarray:
        out = self.empty(shape, dtype)
        out.fill(0)
        return out

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._held = 0

    def _take(self, size):
        with self._lock:
            stack = self._free.get(size)
            if not stack:
                return None
            self._held -= size
            return stack.pop()

    def _give(self, entry):  # entry: (buffer, offset of its first 64-byte boundary)
        size = entry[0].nbytes
        with self._lock:
            if self._held + size <= self.cap:
                self._free.setdefault(size, []).append(entry)
                self._held += size


def default_cap() -> int:
    """Bytes: SEQBENCH_POOL_MB if set, else max(512 MB, physical memory / 8)."""
    from ..kernels.config import env_number

    mb = env_number("SEQBENCH_POOL_MB", None, float, example=512)
    if mb is not None:
        return int(mb * (1 << 20))
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): the floor
        physical = 0
    return max(512 << 20, physical // 8)


POOL = Pool(None)
empty, zeros = POOL.empty, POOL.zeros


def empty_like(a: np.ndarray) -> np.ndarray:
    return POOL.empty(a.shape, a.dtype)


def contiguous(a: np.ndarray) -> np.ndarray:
    """a itself when C-contiguous, else a C-contiguous copy (np.ascontiguousarray, pooled)."""
    if a.flags.c_contiguous:
        return a
    out = POOL.empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out
