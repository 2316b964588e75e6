"""Bad input: a ConfigError (a ValueError) naming the argument, and the model unchanged."""

import subprocess
import sys

import numpy as np
import pytest

import seqbench as sb
from seqbench import ConfigError


@pytest.fixture(scope="module")
def model():
    return sb.build_model("lstm", 3, 4, num_layers=2, bidirectional=True, dtype="float64")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell": "transformer"}, "cell 'transformer' is not known"),
        ({"input_size": 0}, "input_size"),
        ({"hidden_size": -2}, "hidden_size"),
        ({"hidden_size": 2.5}, "hidden_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"dtype": "float16"}, "dtype"),
        ({"backend": "tpu"}, "backend 'tpu'"),
        ({"seed": -1}, "seed"),
        ({"bidirectional": "yes"}, "bidirectional"),
        ({"nonlinearity": "sigmoid"}, "nonlinearity"),
        ({"init": "xavier"}, "init"),
        ({"init": "spectral:-1"}, "init"),
        ({"dropout": 0.1}, "option 'dropout'"),
    ],
)
def test_build_model_rejects(kwargs, match):
    args = {"cell": "elman", "input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        sb.build_model(**args)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((2, 3)), "3 dimensions"),
        (np.zeros((2, 3, 5)), "5 features"),
        (np.zeros((0, 3, 3)), "at least one"),
        (np.full((1, 2, 3), np.nan), "NaN"),
    ],
)
def test_forward_rejects_bad_x(model, x, match):
    with pytest.raises(ConfigError, match=match):
        model.forward(x)


def test_forward_rejects_bad_h0(model):
    with pytest.raises(ConfigError, match="h0 has shape"):
        model.forward(np.zeros((2, 3, 3)), (np.zeros((4, 3, 4)), np.zeros((4, 2, 4))))
    with pytest.raises(ConfigError, match="tuple"):
        model.forward(np.zeros((2, 3, 3)), np.zeros((4, 2, 4)))


def _bad_state_dicts(sd):
    missing = dict(sd)
    missing.pop("bias_hh_l1_reverse")
    misshaped = {**sd, "weight_hh_l0": np.zeros((16, 5))}
    nan = {**sd, "weight_ih_l1": np.full_like(sd["weight_ih_l1"], np.nan)}
    extra = {**sd, "weight_xx_l0": np.zeros(2)}
    return [
        (missing, "missing key 'bias_hh_l1_reverse'"),
        (misshaped, r"state_dict\['weight_hh_l0'\] has shape \(16, 5\)"),
        (nan, "NaN"),
        (extra, "unexpected key 'weight_xx_l0'"),
    ]


def test_load_state_dict_validates_before_changing(model):
    before = model.state_dict()
    changed = {k: v + 1.0 for k, v in before.items()}
    for bad, match in _bad_state_dicts(changed):
        with pytest.raises(ConfigError, match=match):
            model.load_state_dict(bad)
        for k, v in before.items():
            np.testing.assert_array_equal(model.params[k], v)
    model.load_state_dict(changed)
    np.testing.assert_array_equal(model.params["weight_hh_l0"], changed["weight_hh_l0"])
    model.load_state_dict(before)


def test_backward_rejects_misshaped_dy(model):
    y, tape = model.forward(np.zeros((2, 3, 3)))
    with pytest.raises(ConfigError, match="dy has shape"):
        model.backward(tape, np.zeros((2, 3, 4)))


def test_import_is_light_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import seqbench; "
        "dt = time.perf_counter() - t; "
        "print(dt, 'numba' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, numba_loaded, pandas_loaded = out.stdout.split()
    assert float(dt) < 1.0
    assert numba_loaded == "False" and pandas_loaded == "False"


@pytest.mark.parametrize("cell", ["elman", "jordan", "lstm", "gru"])
def test_kernels_are_cached_on_disk(cell):
    import importlib

    module = importlib.import_module(f"seqbench.kernels.cpu.{cell}")
    for name in (f"{cell}_forward", f"{cell}_backward"):
        assert type(getattr(module, name)._cache).__name__ == "FunctionCache", name


def test_cell_option_declarations_are_the_build_defaults():
    from seqbench.models import CELLS

    for name, spec in CELLS.items():
        resolved = spec.resolve_options(8, {})
        for o in spec.options:
            expected = 8 if (name, o.name) == ("jordan", "output_size") else o.default
            assert resolved[o.name] == expected, (name, o.name)
