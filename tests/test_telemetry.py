"""Telemetry on matrices and profiles whose answers are known in closed form."""

import math

import numpy as np
import pytest

from seqbench import build_model
from seqbench.telemetry import (
    global_norm,
    grad_ratio_log10,
    is_finite,
    largest_singular_value,
    recurrent_summary,
    spectral_radius,
)


def rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


# ----------------------------------------------------------------- spectra


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_spectral_radius_known_matrices(dtype):
    assert spectral_radius((0.5 * rotation(0.7)).astype(dtype)) == pytest.approx(0.5, rel=1e-6)
    assert spectral_radius(np.diag([0.3, -2.0, 1.0]).astype(dtype)) == pytest.approx(2.0)
    # nilpotent: every eigenvalue 0 although ||W||_2 = 5
    assert spectral_radius(np.array([[0.0, 5.0], [0.0, 0.0]], dtype=dtype)) == pytest.approx(0.0)


def test_largest_singular_value_known_matrices():
    assert largest_singular_value(np.diag([3.0, -4.0])) == pytest.approx(4.0)
    assert largest_singular_value(np.array([[0.0, 5.0], [0.0, 0.0]])) == pytest.approx(5.0)
    u, v = np.array([1.0, 2.0, 2.0]), np.array([3.0, 4.0, 0.0])
    assert largest_singular_value(np.outer(u, v)) == pytest.approx(15.0)  # |u| |v|
    assert largest_singular_value(0.5 * rotation(1.1)) == pytest.approx(0.5)


def test_gated_stack_reports_max_over_gate_blocks():
    blocks = [0.5 * rotation(0.3), np.diag([3.0, 0.1]), np.eye(2)]
    w = np.vstack(blocks)  # (3H, H) like a GRU weight_hh
    assert spectral_radius(w) == pytest.approx(3.0)
    assert spectral_radius(w, gates=3) == pytest.approx(3.0)
    assert largest_singular_value(w, gates=3) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="gate blocks"):
        spectral_radius(w, gates=4)


def test_non_square_block_reports_largest_singular_value():
    w = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # Jordan's (H, O) with H=3, O=2
    assert spectral_radius(w, gates=1) == pytest.approx(3.0)
    assert largest_singular_value(w, gates=1) == pytest.approx(3.0)


def test_non_finite_matrix_gives_nan():
    w = np.eye(3)
    w[1, 2] = np.nan
    assert math.isnan(spectral_radius(w))
    assert math.isnan(largest_singular_value(w))


@pytest.mark.parametrize(
    ("cell", "opts"), [("elman", {}), ("lstm", {}), ("gru", {}), ("jordan", {"output_size": 2})]
)
def test_recurrent_summary_of_orthogonal_init_is_one(cell, opts):
    model = build_model(cell, 3, 4, num_layers=2, bidirectional=True, init="orthogonal", **opts)
    summary = recurrent_summary(model)
    assert set(summary) == {"spectral_radius", "max_singular_value"}
    assert summary["max_singular_value"] == pytest.approx(1.0, rel=1e-5)
    assert summary["spectral_radius"] == pytest.approx(1.0, rel=1e-5)


def test_recurrent_summary_is_max_over_matrices():
    model = build_model("elman", 3, 4, num_layers=2, init="identity", dtype="float64")
    model.params["weight_hh_l1"] *= 2.5
    assert recurrent_summary(model) == pytest.approx(
        {"spectral_radius": 2.5, "max_singular_value": 2.5}
    )
    model.params["weight_hh_l0"][0, 0] = np.inf
    assert all(math.isnan(v) for v in recurrent_summary(model).values())


# ----------------------------------------------------------------- gradient profile


def test_grad_ratio_of_geometric_profile():
    T, r = 50, 0.8
    vanishing = r ** np.arange(T - 1, -1, -1.0)  # ||dL/dh_t|| = r^(T-t), loss at the end
    assert grad_ratio_log10(vanishing) == pytest.approx((T - 1) * math.log10(r))
    assert grad_ratio_log10(vanishing[::-1]) == pytest.approx(-(T - 1) * math.log10(r))
    assert grad_ratio_log10(vanishing.astype(np.float32)) == pytest.approx(
        (T - 1) * math.log10(r), rel=1e-5
    )
    assert grad_ratio_log10([2.0]) == 0.0


def test_grad_ratio_zeros_are_not_floored():
    """An exact zero is reported as one (+-inf), never as a floor such as -298."""
    assert grad_ratio_log10([0.0, 0.5, 1.0]) == -math.inf
    assert grad_ratio_log10([1.0, 0.0]) == math.inf
    assert math.isnan(grad_ratio_log10([0.0, 0.0]))
    assert grad_ratio_log10([1e-310, 1.0]) == pytest.approx(-310 + math.log10(1.0), abs=1e-3)
    assert math.isnan(grad_ratio_log10([np.nan, 1.0]))
    assert grad_ratio_log10([np.inf, 1.0]) == math.inf


def test_grad_ratio_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(T,\)"):
        grad_ratio_log10(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(T,\)"):
        grad_ratio_log10([])


# ----------------------------------------------------------------- norm and guard


def test_global_norm_over_listed_keys():
    g = {"a": np.array([[3.0, 0.0]]), "b": np.array([4.0], dtype=np.float32), "input": np.ones(9)}
    assert global_norm(g, ["a", "b"]) == pytest.approx(5.0)
    assert global_norm(g, []) == 0.0


def test_global_norm_does_not_overflow():
    assert global_norm({"a": np.full(4, 1e30, dtype=np.float32)}, ["a"]) == pytest.approx(2e30)
    assert global_norm({"a": np.full(4, 1e300)}, ["a"]) == pytest.approx(2e300)
    assert global_norm({"a": np.array([np.inf, 1.0])}, ["a"]) == math.inf
    assert math.isnan(global_norm({"a": np.array([np.nan, 1.0]), "b": np.ones(2)}, ["a", "b"]))


def test_is_finite_guard():
    g = {"w": np.ones((2, 2)), "input": np.ones(3)}
    assert is_finite(0.5, g)
    assert not is_finite(math.nan, g)
    assert not is_finite(np.float32(np.inf), g)
    g["input"][1] = np.nan
    assert not is_finite(0.5, g)
    assert is_finite(0.5, g, keys=["w"])
