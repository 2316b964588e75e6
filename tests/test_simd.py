"""The register-tiled matmul of the CPU kernels (kernels/cpu/_simd.py) against numpy."""

import numpy as np
import pytest
from seqbench.kernels.cpu._simd import KC, VECTOR_BYTES, pack_panels, tile_matmul


def _lanes(dtype):
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _shapes(dtype):
    L = _lanes(dtype)
    # rows: one, under a tile, tiles plus leftovers; columns: under a vector, whole tiles,
    # an odd vector, 4-vector single-row tiles plus a ragged tail, every single-row tile width
    # (16, 8, 4, 2, 1 vectors) at once; k: empty, small, fewer than and not a multiple of a
    # tile's k split (2, 4, 8), > KC
    return [
        (1, 21, 31 * L + 3),
        (5, 3, 6 * L),
        (1, 1, 1),
        (3, 5, 7),
        (8, 9, 2 * L),
        (17, 13, 3 * L + 5),
        (9, KC + 3, 4 * L + 1),
        (2, 2 * KC + 1, 5 * L),
        (10, 0, L + 1),
    ]


@pytest.mark.parametrize("packed", [False, True], ids=["w", "panels"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tile_matmul_matches_numpy(dtype, packed, rng):
    """Plain W and W in tile panels (pack_panels): full tiles read the panels, the leftover
    columns and rows read W itself."""
    tol = 1e-13 if dtype == "float64" else 2e-6
    for B, K, N in _shapes(dtype):
        a = rng.standard_normal((B, K))
        w = rng.standard_normal((K, N))
        wd = w.astype(dtype)
        wp = pack_panels(wd) if packed else None
        for lo, hi in [(0, B), (B // 3, B), (0, 0)]:
            for acc in (False, True):
                out0 = rng.standard_normal((B, N))
                out = out0.astype(dtype)
                tile_matmul(a.astype(dtype), wd, wp, out, lo, hi, acc)
                want = out0.copy()
                want[lo:hi] = (want[lo:hi] if acc else 0.0) + a[lo:hi] @ w
                scale = max(1.0, float(np.abs(want).max(initial=0.0))) * max(1, K)
                assert np.abs(out - want).max(initial=0.0) <= tol * scale, (B, K, N, lo, hi, acc)
                # rows outside [lo, hi) untouched
                keep = np.r_[0:lo, hi:B]
                assert np.array_equal(out[keep], out0[keep].astype(dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tile_matmul_strided_rows(dtype, rng):
    """Rows of a batch-first (B, T, K) array at one step: the fused-input product."""
    L = _lanes(dtype)
    x = rng.standard_normal((11, 4, 10)).astype(dtype)
    w = rng.standard_normal((10, 2 * L + 3)).astype(dtype)
    out = np.zeros((11, w.shape[1]), dtype=dtype)
    tile_matmul(x[:, 2], w, None, out, 0, 11, False)
    want = x[:, 2].astype(np.float64) @ w
    assert np.allclose(out, want, rtol=1e-5, atol=1e-5)


def test_tile_matmul_rejects_non_contiguous_weights(rng):
    w = rng.standard_normal((6, 8))
    with pytest.raises(Exception, match="(?i)typing|No implementation"):
        tile_matmul(np.ones((2, 8)), w.T, None, np.zeros((2, 6)), 0, 2, False)


_ROWS = {}


def _sparse_rows(width, group):
    """A compiled loop over rows of make_sparse_row(width, group), one per shape, reused."""
    if (width, group) not in _ROWS:
        from numba import njit
        from seqbench.kernels.cpu._sparse import make_sparse_row

        row = make_sparse_row(width, group)

        @njit
        def rows(x, idx, dat, out, ptr):
            for i in range(ptr.size - 1):
                row(x, idx, dat, out, i, ptr[i], ptr[i + 1])

        _ROWS[width, group] = rows
    return _ROWS[width, group]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("width,group", [(16, 4), (8, 2)])
def test_sparse_row_matches_numpy(dtype, width, group, rng):
    """out[i] += sum of dat[k] x[idx[k]] over row i's nonzeros; rows of 0, 1 and several
    groups, repeated columns, and an output that already holds values."""
    tol = 1e-13 if dtype == "float64" else 2e-6
    rows, cols = 7, 11
    lengths = np.array([0, group, 3 * group, group, 0, 5 * group, 2 * group])
    ptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.intp)
    idx = rng.integers(0, cols, ptr[-1]).astype(np.uint32)
    dat = rng.standard_normal(ptr[-1]).astype(dtype)
    x = rng.standard_normal((cols, width)).astype(dtype)
    out0 = rng.standard_normal((rows, width)).astype(dtype)
    out = out0.copy()
    _sparse_rows(width, group)(x, idx, dat, out, ptr)
    want = out0.astype(np.float64)
    for i in range(rows):
        for k in range(ptr[i], ptr[i + 1]):
            want[i] += float(dat[k]) * x[idx[k]].astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=0, atol=tol * 10)
    assert out.dtype == np.dtype(dtype)


def test_pack_panels_lays_each_tile_side_by_side(rng):
    for dtype in ("float32", "float64"):
        tw = 2 * _lanes(dtype)
        w = rng.standard_normal((5, 3 * tw + 7)).astype(dtype)
        wp = pack_panels(w)
        assert wp.shape == (3, 5, tw) and wp.dtype == w.dtype and wp.flags.c_contiguous
        for j in range(3):
            np.testing.assert_array_equal(wp[j], w[:, j * tw : (j + 1) * tw])
        assert wp.ctypes.data % 64 == 0


def test_aligned_arrays_start_on_a_cache_line():
    from numba import njit
    from seqbench.kernels.cpu._simd import empty_aligned

    @njit
    def addresses(rows, cols, like):
        out = np.empty((8, 2), np.intp)
        for n in range(8):  # several allocations: numba's own alignment is 32 bytes
            a = empty_aligned(rows + n, cols, like.dtype)
            out[n, 0] = a.ctypes.data & 63  # offset within a cache line
            out[n, 1] = a.shape[0] * a.shape[1]
        return out

    got = addresses(5, 16, np.zeros(1))
    assert np.all(got[:, 0] == 0)
    np.testing.assert_array_equal(got[:, 1], 16 * (5 + np.arange(8)))


def test_borrowed_views_read_and_write_the_parent(rng):
    """at / at2 / span (kernels/cpu/_common.py): the same elements as numpy's indexing, writes
    land in the parent, and the parent's reference count is left alone."""
    import sys

    from numba import njit
    from seqbench.kernels.cpu._common import aligned_copy, at, at2, span

    @njit
    def views(a, t, b, lo, hi):
        row = at2(a, t, b)
        part = span(row, lo, hi)
        part[0] = -1.0  # lands in a[t, b, lo]
        plane = at(a, t)
        return plane.shape[0], plane.shape[1], plane[b, hi - 1], part.shape[0], part.sum()

    a = rng.standard_normal((3, 4, 9))
    want = a.copy()
    want[2, 1, 3] = -1.0
    refs = sys.getrefcount(a)
    rows, cols, last, n, total = views(a, 2, 1, 3, 7)
    assert sys.getrefcount(a) == refs
    np.testing.assert_array_equal(a, want)
    assert (rows, cols, n) == (4, 9, 4)
    assert last == want[2, 1, 6] and total == pytest.approx(want[2, 1, 3:7].sum())
    w = rng.standard_normal((5, 7)).astype(np.float32)
    c = aligned_copy(w)
    np.testing.assert_array_equal(c, w)
    assert c.ctypes.data % 64 == 0
