"""The register-tiled matmul of the CPU kernels (kernels/cpu/_simd.py) against numpy."""

import numpy as np
import pytest
from seqbench.kernels.cpu._simd import KC, VECTOR_BYTES, tile_matmul


def _lanes(dtype):
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _shapes(dtype):
    L = _lanes(dtype)
    # rows: one, under a tile, tiles plus leftovers; columns: under a vector, whole tiles,
    # an odd vector, 4-vector single-row tiles plus a ragged tail; k: empty, small, > KC
    return [
        (1, 1, 1),
        (3, 5, 7),
        (8, 9, 2 * L),
        (17, 13, 3 * L + 5),
        (9, KC + 3, 4 * L + 1),
        (2, 2 * KC + 1, 5 * L),
        (10, 0, L + 1),
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tile_matmul_matches_numpy(dtype, rng):
    tol = 1e-13 if dtype == "float64" else 2e-6
    for B, K, N in _shapes(dtype):
        a = rng.standard_normal((B, K))
        w = rng.standard_normal((K, N))
        for lo, hi in [(0, B), (B // 3, B), (0, 0)]:
            for acc in (False, True):
                out0 = rng.standard_normal((B, N))
                out = out0.astype(dtype)
                tile_matmul(a.astype(dtype), w.astype(dtype), out, lo, hi, acc)
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
    tile_matmul(x[:, 2], w, out, 0, 11, False)
    want = x[:, 2].astype(np.float64) @ w
    assert np.allclose(out, want, rtol=1e-5, atol=1e-5)


def test_tile_matmul_rejects_non_contiguous_weights(rng):
    w = rng.standard_normal((6, 8))
    with pytest.raises(Exception, match="(?i)typing|No implementation"):
        tile_matmul(np.ones((2, 8)), w.T, np.zeros((2, 6)), 0, 2, False)
