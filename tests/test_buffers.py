"""The CPU backend's recycled buffers (seqbench/backends/buffers.py)."""

import os

import numpy as np

from seqbench.backends.buffers import Pool, contiguous

MB = 1 << 20


def _addr(a):
    return a.__array_interface__["data"][0]


def test_memory_is_reused_only_after_the_last_reference_goes():
    pool = Pool(64 * MB)
    a = pool.empty((100, 1000), np.float64)
    first = _addr(a)
    view = a[10:]
    del a
    b = pool.empty((100, 1000), np.float64)  # the view keeps a's memory: a fresh buffer
    assert _addr(b) != first
    view[:] = 1.0
    b[:] = 2.0
    assert np.all(view == 1.0)
    del view
    c = pool.empty((100, 1000), np.float64)  # now a's memory comes back
    assert _addr(c) == first
    assert pool.held == 0  # both buffers handed out
    d = c.reshape(-1)[::2]  # a view of a view
    del c
    assert pool.held == 0
    del d
    assert pool.held > 0


def test_buffers_are_cache_line_aligned_and_typed():
    pool = Pool(64 * MB)
    for shape, dtype in [((33, 70, 129), np.float32), ((5000, 7), np.float64), (70000, np.int64)]:
        a = pool.empty(shape, dtype)
        assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.shape == ((shape,) if np.isscalar(shape) else shape)
        assert _addr(a) % 64 == 0
    z = pool.zeros((300, 300), np.float32)
    assert not z.any()


def test_pool_holds_at_most_its_cap_and_skips_small_and_huge_arrays():
    pool = Pool(3 * MB)
    arrays = [pool.empty((MB // 8,), np.float64) for _ in range(5)]  # 1 MB each
    del arrays
    assert 0 < pool.held <= 3 * MB
    small = pool.empty((10,), np.float64)  # plain numpy: no finalizer, nothing pooled
    huge = pool.empty((4 * MB // 8,), np.float64)
    held = pool.held
    del small, huge
    assert pool.held == held
    off = Pool(0)
    a = off.empty((MB,), np.float32)
    del a
    assert off.held == 0


def test_contiguous_copies_only_when_needed(rng):
    a = rng.standard_normal((4, 50, 700))
    assert contiguous(a) is a
    t = a.transpose(1, 0, 2)
    c = contiguous(t)
    assert c.flags.c_contiguous and np.array_equal(c, t)


def test_outputs_kept_by_the_caller_survive_later_calls(rng):
    """The backend's arrays come from the pool: what a caller keeps (outputs, a view of
    them, gradients) is never handed to a later call."""
    from seqbench.models import build_model

    m = build_model("elman", 3, 64, dtype="float64", seed=0)
    x1, x2 = rng.standard_normal((2, 40, 300, 3))
    y1, tape1 = m.forward(x1)
    last = y1[:, -1]  # a view; y1 itself dropped below
    keep_y, keep_last = y1.copy(), last.copy()
    g1 = m.backward(tape1, np.ones_like(y1))
    keep_g = {k: np.array(v) for k, v in g1.items()}
    del y1, tape1
    for _ in range(3):
        y2, tape2 = m.forward(x2)
        m.backward(tape2, -np.ones_like(y2))
    np.testing.assert_array_equal(last, keep_last)
    for k, v in g1.items():
        np.testing.assert_array_equal(v, keep_g[k])
    y1_again, _ = m.forward(x1)
    np.testing.assert_array_equal(y1_again, keep_y)


def test_default_cap_follows_the_environment_else_an_eighth_of_memory(monkeypatch):
    from seqbench.backends.buffers import default_cap

    monkeypatch.setenv("SEQBENCH_POOL_MB", "3")
    assert default_cap() == 3 << 20
    monkeypatch.setenv("SEQBENCH_POOL_MB", "0")
    assert default_cap() == 0
    monkeypatch.delenv("SEQBENCH_POOL_MB")
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert default_cap() == max(512 << 20, physical // 8)
