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


@pytest.fixture
def two_threads():
    """seqbench's kernels on two threads (row blocks, split GEMMs, barrier groups) for the
    test, whatever the machine has; the old count afterwards."""
    from seqbench.backends import cpu_runtime

    old = cpu_runtime.get_num_threads()
    cpu_runtime.set_num_threads(2)
    yield
    cpu_runtime.set_num_threads(old)
