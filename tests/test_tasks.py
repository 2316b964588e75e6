"""The long-dependency tasks: generators, targets, baselines, losses and "solved"."""

from __future__ import annotations

import numpy as np
import pytest

from seqbench.errors import ConfigError
from seqbench.tasks import make_task
from seqbench.tasks.base import mean_squared_error, one_hot, softmax_cross_entropy
from seqbench.tasks.digits import PERMUTATION_SEED, load_splits

NAMES = ["copy-task", "adding", "temporal-order", "seq-digits", "pseq-digits"]
SMALL = {"copy-task": 7, "adding": 12, "temporal-order": 30, "seq-digits": 64, "pseq-digits": 64}


def batch(name, seed=0, size=16, seq_len=None, split="train"):
    task = make_task(name, SMALL[name] if seq_len is None else seq_len)
    return task, task.generate(np.random.default_rng(seed), size, split)


def perfect_output(task, y):
    if task.kind == "regression":
        return y.copy()
    return 50.0 * one_hot(y, task.output_size)


# -- contract: shapes, dtypes, determinism


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name):
    task, b = batch(name, size=5)
    assert b.x.shape == (5, task.steps, task.input_size)
    assert b.x.dtype == np.float64
    if task.readout == "all":
        assert b.y.shape == (5, task.steps)
    elif task.kind == "classification":
        assert b.y.shape == (5,)
    else:
        assert b.y.shape == (5, task.output_size)
    expected = np.int64 if task.kind == "classification" else np.float64
    assert b.y.dtype == expected
    if task.kind == "classification":
        assert b.y.min() >= 0 and b.y.max() < task.output_size


@pytest.mark.parametrize("name", ["copy-task", "temporal-order", "char-lm"])
def test_one_hot_inputs_come_in_the_runs_dtype(name):
    """A float32 run's trainer asks its task for float32 one-hot inputs: the same batch as the
    float64 one cast (0 and 1 are exact), without the cast every step."""
    from seqbench.config import RunConfig
    from seqbench.train import Trainer

    cfg = RunConfig(task=name, model="gru", seq_len=12, hidden_size=4, batch_size=4)
    tr = Trainer(cfg.validated())
    assert tr.task.input_dtype == np.float32
    ours = tr.task.generate(np.random.default_rng(0), 4, "test")  # char-lm's train split is
    tr.task.input_dtype = np.float64  # a stream that moves on: "test" draws from the rng
    wide = tr.task.generate(np.random.default_rng(0), 4, "test")
    assert ours.x.dtype == np.float32 and wide.x.dtype == np.float64
    np.testing.assert_array_equal(ours.x, wide.x.astype(np.float32))
    np.testing.assert_array_equal(ours.y, wide.y)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_other_seed_other_batch(name):
    _, a = batch(name, seed=3)
    _, b = batch(name, seed=3)
    _, c = batch(name, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_copy_steps_and_default_lengths():
    assert make_task("copy-task", 30).steps == 50
    for name in NAMES:
        task = make_task(name)
        assert task.steps >= task.seq_len
    assert make_task("seq-digits").seq_len == 64


# -- targets follow from the inputs


@pytest.mark.parametrize("T", [1, 5, 30])
def test_copy_targets_are_the_input_symbols(T):
    task, b = batch("copy-task", seq_len=T, size=64)
    assert np.all(b.x.sum(axis=-1) == 1.0)  # one-hot
    seq = b.x.argmax(axis=-1)
    assert seq.shape[1] == T + 20
    assert np.all(seq[:, :10] < 8)
    assert np.all(seq[:, 10 : T + 9] == 8)
    assert np.all(seq[:, T + 9] == 9)
    assert np.all(seq[:, T + 10 :] == 8)
    assert np.all(b.y[:, : T + 10] == 8)
    np.testing.assert_array_equal(b.y[:, -10:], seq[:, :10])
    assert set(np.unique(seq[:, :10])) == set(range(8))


def test_adding_target_is_the_sum_of_the_marked_values():
    T = 13
    task, b = batch("adding", seq_len=T, size=256)
    values, markers = b.x[..., 0], b.x[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, : T // 2].sum(axis=1) == 1)
    assert np.all(markers[:, T // 2 :].sum(axis=1) == 1)
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_allclose(b.y[:, 0], (values * markers).sum(axis=1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("T", [10, 37, 100])
def test_temporal_order_class_matches_the_marked_symbols(T):
    task, b = batch("temporal-order", seq_len=T, size=512)
    assert np.all(b.x.sum(axis=-1) == 1.0)
    seq = b.x.argmax(axis=-1)
    rows, cols = np.nonzero(seq < 2)  # A = 0, B = 1; rows come sorted, two per row
    assert np.array_equal(rows, np.repeat(np.arange(len(seq)), 2))
    p0, p1 = cols[0::2], cols[1::2]
    d = T // 10
    assert np.all((p0 >= d) & (p0 < 2 * d))
    assert np.all((p1 >= T // 2) & (p1 < T // 2 + d))
    idx = np.arange(len(seq))
    np.testing.assert_array_equal(b.y, 2 * seq[idx, p0] + seq[idx, p1])
    assert set(np.unique(b.y)) == {0, 1, 2, 3}


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_samples_come_from_their_split(split):
    images, labels = load_splits()[split]
    task, b = batch("seq-digits", size=50, split=split)
    assert np.all((b.x >= 0) & (b.x <= 1))
    flat = b.x[..., 0]
    match = (flat[:, None, :] == images[None]).all(axis=-1)  # (B, N)
    assert np.all(match.any(axis=1))
    assert np.all(labels[match.argmax(axis=1)] == b.y)


def test_digits_split_is_fixed_and_disjoint():
    splits = load_splits()
    assert load_splits() is splits  # cached
    (train, _), (test, yte) = splits["train"], splits["test"]
    assert len(train) + len(test) == 1797
    assert len(test) == 359
    assert not (train[:, None, :] == test[None]).all(axis=-1).any()
    assert set(np.unique(yte)) == set(range(10))


def test_pseq_digits_is_a_fixed_permutation_of_seq_digits():
    _, plain = batch("seq-digits", seed=5)
    task, perm = batch("pseq-digits", seed=5)
    order = np.random.default_rng(PERMUTATION_SEED).permutation(64)
    assert not np.array_equal(order, np.arange(64))
    np.testing.assert_array_equal(task.order, order)
    np.testing.assert_array_equal(perm.x, plain.x[:, order])
    np.testing.assert_array_equal(perm.y, plain.y)


def test_digits_full_split():
    task = make_task("pseq-digits")
    full = task.full_split("test")
    images, labels = load_splits()["test"]
    assert full.x.shape == (359, 64, 1)
    np.testing.assert_array_equal(full.x[..., 0], images[:, task.order])
    np.testing.assert_array_equal(full.y, labels)


# -- baselines, by simulating the memoryless predictor


@pytest.mark.parametrize("T", [1, 20, 100])
def test_copy_baseline_is_blank_then_uniform_over_symbols(T):
    task, b = batch("copy-task", seq_len=T, size=32)
    logits = np.zeros((32, task.steps, 9))
    logits[:, :, 8] = 1000.0  # certain blank ...
    logits[:, -10:, 8] = -1000.0  # ... except on the recall steps: uniform over a0..a7
    loss, _ = task.loss(logits, b.y)
    assert loss == pytest.approx(10 * np.log(8) / (T + 20), rel=1e-12)
    assert task.baseline == pytest.approx(loss, rel=1e-12)
    assert not task.solved(loss, task.metrics(logits, b.y))


def test_adding_baseline_is_the_variance_of_the_sum():
    task, b = batch("adding", size=200_000)
    assert b.y.mean() == pytest.approx(1.0, abs=0.005)  # 1.0 is the best constant
    loss, _ = task.loss(np.ones_like(b.y), b.y)
    assert task.baseline == pytest.approx(1 / 6)
    assert loss == pytest.approx(task.baseline, abs=0.002)
    assert not task.solved(loss, task.metrics(np.ones_like(b.y), b.y))


@pytest.mark.parametrize("name", ["temporal-order", "seq-digits", "pseq-digits"])
def test_uniform_prediction_is_the_classification_baseline(name):
    task, b = batch(name, size=20_000)
    n = task.output_size
    loss, _ = task.loss(np.zeros((len(b.y), n)), b.y)
    assert loss == pytest.approx(np.log(n), rel=1e-12)
    assert task.baseline == pytest.approx(loss, rel=1e-12)
    # the best constant predictor (log class frequencies) does not beat it by much
    freq = np.bincount(b.y, minlength=n) / len(b.y)
    best, _ = task.loss(np.broadcast_to(np.log(freq), (len(b.y), n)), b.y)
    assert best == pytest.approx(task.baseline, abs=0.01)
    assert not task.solved(loss, task.metrics(np.zeros((len(b.y), n)), b.y))


@pytest.mark.parametrize("name", NAMES)
def test_perfect_predictor_is_solved(name):
    task, b = batch(name, size=64, split="test")
    out = perfect_output(task, b.y)
    loss, _ = task.loss(out, b.y)
    metrics = task.metrics(out, b.y)
    assert loss < 1e-12
    assert metrics.get("accuracy", 1.0) == 1.0
    assert task.solved(loss, metrics)


def test_copy_solved_by_recall_alone():
    task, b = batch("copy-task", size=8)
    out = perfect_output(task, b.y) * 1e-3  # right everywhere, but far from confident
    loss, _ = task.loss(out, b.y)
    metrics = task.metrics(out, b.y)
    assert loss > task.baseline
    assert metrics["recall_accuracy"] == 1.0
    assert task.solved(loss, metrics)


def test_temporal_order_solved_by_accuracy_alone():
    task, b = batch("temporal-order", size=200)
    out = perfect_output(task, b.y) * 1e-3
    loss, _ = task.loss(out, b.y)
    assert loss > 0.1 * task.baseline
    assert task.solved(loss, task.metrics(out, b.y))


# -- loss gradients against central finite differences (eps 1e-6, float64)


def finite_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("label_shape", [(4,), (3, 5)])
def test_softmax_cross_entropy_gradient(label_shape):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(*label_shape, 6))
    labels = rng.integers(0, 6, size=label_shape)
    _, grad = softmax_cross_entropy(logits, labels)
    numeric = finite_difference(lambda z: softmax_cross_entropy(z, labels)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-10)


def test_mean_squared_error_gradient():
    rng = np.random.default_rng(1)
    out, target = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    _, grad = mean_squared_error(out, target)
    numeric = finite_difference(lambda o: mean_squared_error(o, target)[0], out)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-10)


# -- bad input


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seq_len", [0, -3, 2.5, "x", True])
def test_bad_seq_len_is_a_config_error(name, seq_len):
    with pytest.raises(ConfigError, match="seq_len"):
        make_task(name, seq_len)


@pytest.mark.parametrize(
    "name, seq_len",
    [("adding", 1), ("temporal-order", 9), ("seq-digits", 63), ("pseq-digits", 100)],
)
def test_seq_len_outside_the_task_range_is_a_config_error(name, seq_len):
    with pytest.raises(ConfigError, match="seq_len"):
        make_task(name, seq_len)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8", True, None])
def test_bad_batch_size_is_a_config_error(name, batch_size):
    task = make_task(name)
    with pytest.raises(ConfigError, match="batch_size"):
        task.generate(np.random.default_rng(0), batch_size)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_split_is_a_config_error(name):
    with pytest.raises(ConfigError, match="split"):
        make_task(name).generate(np.random.default_rng(0), 2, split="validation")


def test_unknown_task_option_is_a_config_error():
    from seqbench.tasks import make_task

    with pytest.raises(ConfigError, match="task 'adding' has no option 'foo'"):
        make_task("adding", 10, foo=1)


# -- task options


def test_copy_task_options_set_the_sizes_and_baseline():
    t = make_task("copy-task", 5, n_copy=3, n_symbols=4)
    b = t.generate(np.random.default_rng(0), 2)
    assert b.x.shape == (2, 5 + 6, 6) and b.y.shape == (2, 11) and t.output_size == 5
    assert np.array_equal(b.y[:, -3:], b.x[:, :3].argmax(-1)) and b.y[:, -3:].max() < 4
    assert b.x[:, 5 + 3 - 1].argmax(-1).tolist() == [5, 5]  # the delimiter
    assert t.baseline == pytest.approx(3 * np.log(4) / 11)
    d = make_task("copy-task", 5)
    assert (d.input_size, d.output_size, d.steps) == (10, 9, 25)


def test_narma_order_generalises_narma10():
    from seqbench.tasks.narma import draw_stable, narma, narma10

    u = np.random.default_rng(0).uniform(0, 0.5, (2, 300))
    assert np.array_equal(narma(u, 10), narma10(u))
    assert not np.allclose(narma(u, 5), narma10(u))
    t = make_task("narma10", 50, order=5)
    assert t.order == 5 and t.baseline != make_task("narma10", 50).baseline
    with pytest.raises(ConfigError, match="NARMA of order 20 blows up"):
        draw_stable(np.random.default_rng(0), 2, 300, order=20)


def test_memory_capacity_options():
    from seqbench.tasks.memory_capacity import MemoryCapacity

    assert MemoryCapacity.options_for_model({}, 64) == {"max_delay": 128}
    assert MemoryCapacity.options_for_model({"max_delay": 7}, 64) == {"max_delay": 7}
    t = make_task("memory-capacity", 4000, max_delay=3, distribution="normal")
    u = t.generate(np.random.default_rng(0), 8).x[..., 0]
    assert abs(u.var() - 0.64 / 3) < 0.01 and np.abs(u).max() > 0.8  # normal, same variance
    assert make_task("memory-capacity", 50).max_delay == 100  # no model to size it by


def test_mackey_glass_tanh_scaling():
    mm = make_task("mackey-glass", 200)
    th = make_task("mackey-glass", 200, scaling="tanh")
    a, b = (t.generate(np.random.default_rng(0), 2).x for t in (mm, th))
    assert not np.allclose(a, b) and np.abs(b).max() < 1
    assert 0 < th.baseline < 1 and th.baseline != mm.baseline
