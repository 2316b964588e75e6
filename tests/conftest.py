import numpy as np
import pytest

# (cell, options) of every recurrent cell variant; the registry decides what exists.
CELL_CASES = [
    ("elman", {"nonlinearity": "tanh"}),
    ("elman", {"nonlinearity": "relu"}),
    ("jordan", {"output_size": 3}),
    ("lstm", {}),
    ("gru", {}),
]


def case_id(case):
    cell, opts = case
    return "-".join([cell, *map(str, opts.values())])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
