"""The gradient terms of cell_kernels.py over column ranges of buffers ("dx_proj[:2H] dhn"):
parsed as declared, and assembled by the CPU backend's ops to the gradient that one buffer
holding the parts side by side would give."""

from types import SimpleNamespace

import numpy as np
import pytest

from seqbench.backends import numba_cpu
from seqbench.backends.cell_kernels import (
    CELLS,
    Part,
    after_state,
    assemble_gradients,
    column_sums,
    input_projection,
    same_step,
)


def test_parts_are_buffers_or_their_column_ranges():
    term = after_state("weight_hh", "dx_proj[:2H] dhn", "h")
    assert term.d == (Part("dx_proj", "", "2H"), Part("dhn"))
    assert (term.seq, term.first) == ("h_seq", "h0")
    dims = {"H": 4, "2H": 8}
    assert [p.columns(dims) for p in term.d] == [slice(None, 8), None]
    assert Part("d", "H", "2H").columns(dims) == slice(4, 8)


@pytest.mark.parametrize("bad", ["", "d[2H]", "d[:2H", "d-e", "d[:2H]x"])
def test_a_malformed_part_is_refused(bad):
    with pytest.raises(ValueError, match="buffer"):
        column_sums("bias_hh", bad)


def test_a_bound_becomes_a_dimension_of_the_cell():
    assert ("2H", 2, "H") in CELLS["gru"].scaled


def test_parts_give_the_gradient_of_the_buffers_side_by_side(rng):
    """weight_hh over "a[:2H] b" equals the term over [a[..., :2H] | b] in one array; so do
    same_step and column_sums (both with and without the kernel's partial sums)."""
    T, B, I, H = 4, 3, 2, 5
    a, b = rng.standard_normal((T, B, 3 * H)), rng.standard_normal((T, B, H))
    h_seq, h0 = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    joined = np.concatenate([a[..., : 2 * H], b], axis=2)
    prev = np.concatenate([h0[None], h_seq[:-1]])
    cell = SimpleNamespace(
        gradients=(
            input_projection("a"),
            after_state("weight_hh", "a[:2H] b", "h"),
            same_step("weight_hy", "a[H:] b", "h_seq"),
            column_sums("bias_hh", "a[:2H] b"),
        )
    )
    dims = {"T": T, "B": B, "H": H, "2H": 2 * H}
    p = {"weight_ih": rng.standard_normal((3 * H, I))}
    for partial in ({}, {"a": a.sum(axis=(0, 1))[None], "b": b.sum(axis=(0, 1))[None]}):
        v = {"a": a, "b": b, "h_seq": h_seq, "h0": h0, "x_tm": rng.standard_normal((T, B, I))}
        v.update(x_idx=None, need_dx=False, partial_sums=partial)
        g, dx = assemble_gradients(cell, numba_cpu._OPS, v, p, dims)
        assert dx is None
        np.testing.assert_allclose(g["weight_hh"], np.einsum("tbg,tbk->gk", joined, prev))
        tail = np.concatenate([a[..., H:], b], axis=2)
        np.testing.assert_allclose(g["weight_hy"], np.einsum("tbg,tbk->gk", tail, h_seq))
        np.testing.assert_allclose(g["bias_hh"], joined.sum(axis=(0, 1)))
        np.testing.assert_allclose(g["bias_ih"], a.sum(axis=(0, 1)))
        assert not np.shares_memory(g["bias_ih"], g["bias_hh"])
