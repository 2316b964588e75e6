"""Bad input a user might type: one line on stderr, exit code 2, nothing written, no traceback,
and for runs too big for the machine, a refusal before anything is allocated."""

import time

import pytest

from seqbench import memory
from seqbench.cli import main
from seqbench.config import RunConfig
from seqbench.errors import ConfigError

TINY = ["--seq-len", "3", "--hidden", "8", "--batch", "4", "--steps", "2", "--quiet"]


def _task_opts(task: str, rows: list) -> list:
    """BAD_RUNS rows for ``task``, each ("KEY=VALUE ...", words): one --task-opt per pair."""
    return [([task, *(w for kv in kvs.split() for w in ("--task-opt", kv))], words)
            for kvs, words in rows]  # fmt: skip


def _argv(prefix: str, rows: list) -> list:
    """BAD_RUNS rows whose argv starts with ``prefix``, each ("rest of the argv", words)."""
    return [(f"{prefix} {rest}".split(), words) for rest, words in rows]


# (--task-opt pairs, words the one line must hold)
MACKEY_GLASS_OPTS = [
    ("tua=17", "task 'mackey-glass' has no option 'tua'"),
    ("tau=abc", "option 'tau' must be a number, got 'abc'"),
    ("tau=nan", "option 'tau' must be a finite number"),
    ("tau=0", "option 'tau' must be in [0.1, 1000]"),
    ("tau=17.05", "tau must be a positive multiple of dt=0.1"),
    ("tau", "--task-opt takes KEY=VALUE, got 'tau'"),
    ("=17", "--task-opt takes KEY=VALUE, got '=17'"),
    ("tau=17 tau=18", "sets 'tau' twice"),
    ("horizon=-1", "option 'horizon' must be in [1, inf)"),
    ("horizon=1.5", "option 'horizon' must be an integer"),
    ("free_run=2000", "free_run=2000 must be shorter than"),
    ("protocol=jaeger", "use one of jaeger2004"),
    ("protocol=jaeger2004 washout=5", "protocol=jaeger2004 sets washout itself"),
    ("scaling=log", "use one of minmax, tanh"),
]
MEMORY_CAPACITY_OPTS = [
    ("max_delay=0", "option 'max_delay' must be in [1, inf)"),
    ("max_delay=50 washout=10", "washout=10 must cover max_delay=50"),
]
# (the argv after the group's start, words)
MODEL_OPTS = [
    ("--model-opt leak=0.5", "model 'gru' has no option 'leak'"),
    ("--model lstm --model-opt forget_bias=big", "option 'forget_bias' must be a number"),
    ("--model elman --model-opt nonlinearity=sigmoid", "use one of tanh, relu"),
    ("--model elman --nonlinearity relu --model-opt nonlinearity=tanh",
     "--nonlinearity and --model-opt nonlinearity"),
]  # fmt: skip
ESN_REFUSALS = [
    ("--model-opt leak=1.5", "option 'leak' must be in (0, 1]"),
    ("--model-opt sparse=maybe", "must be true or false"),
    ("--model-opt ridge=-1", "option 'ridge' must be in"),
    ("--model-opt feedback_size=2", "no option 'feedback_size'"),
    ("--bidirectional", "bidirectional=True does not apply"),
    ("--optimizer sgd", "optimizer='sgd' does not apply"),
    ("--clip none", "clip='none' does not apply"),
    ("--init orthogonal", "init='orthogonal' does not apply"),
    ("--tbptt 5", "tbptt=5 does not apply"),
    ("--lr 0.1", "lr=0.1 does not apply"),
    ("--layers 2", "num_layers=2 does not apply"),
    ("--no-early-stop", "stop_when_solved=False does not apply"),
]
SIZES_AND_SHAPES = [
    ("copy-task --tbptt 500", "tbptt=500 is longer than the 30 steps"),
    ("copy-task --readout mean", "readout='mean' applies to sequence-level targets"),
    ("adding --readout median", "readout 'median' is not known"),
    ("adding --seq-len 0", "seq_len must be a positive integer"),
    ("adding --batch -4", "batch_size must be a positive integer"),
    ("adding --steps 0", "steps must be a positive integer"),
    ("adding --seed -1", "seed must be a non-negative integer"),
    ("adding --lr inf", "lr must be a finite number > 0"),
    ("seq-digits --seq-len 50", "has a fixed length of 64 steps"),
    ("adding --hidden 1000000", "lower --batch, --seq-len or --hidden"),
    ("adding --batch 100000000 --seq-len 100000", "GB available"),
    ("copy-task --hidden 20000", "GB available"),
    ("memory-capacity --model esn --hidden 200000", "GB available"),
]
# (argv after "run", words the one line must hold)
BAD_RUNS = [
    *_task_opts("mackey-glass", MACKEY_GLASS_OPTS),
    *_task_opts("memory-capacity", MEMORY_CAPACITY_OPTS),
    *_task_opts("narma10", [("order=30", "option 'order' must be in [1, 11]")]),
    *_task_opts("copy-task", [("n_copy=-3", "option 'n_copy' must be in [1, 1000]")]),
    *_task_opts("adding", [("n_copy=3", "task 'adding' has no option 'n_copy'")]),
    *_argv("copy-task", MODEL_OPTS),
    *_argv("copy-task --model esn", ESN_REFUSALS),
    *_argv("", SIZES_AND_SHAPES),
]


def _one_line_error(capsys) -> str:
    """stderr after a refusal: one line, seqbench's error prefix, no traceback."""
    err = capsys.readouterr().err
    assert err.startswith("seqbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("args, words", BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_run_is_one_line_exit_2_nothing_written(args, words, tmp_path, capsys):
    out = tmp_path / "res"
    t0 = time.perf_counter()
    assert main(["run", *args, "--quiet", "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert words in err, err
    assert not out.exists()
    assert time.perf_counter() - t0 < 20  # refused up front, nothing allocated or trained


BAD_OTHER = [
    (["list", "copy-tsk"], "'copy-tsk' is neither a task nor a model"),
    (["sweep", "reference", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["sweep", "reference", "--workers", "-3"], "--workers must be at least 1, got -3"),
]


@pytest.mark.parametrize("args, words", BAD_OTHER, ids=[" ".join(a) for a, _ in BAD_OTHER])
def test_bad_list_and_sweep_arguments(args, words, capsys):
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert words in err, err


def test_more_workers_than_cores_is_a_warning_not_an_error(capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main(["sweep", "reference", "--workers", "3", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: --workers 3 is more than the 2 cores" in err and err.count("\n") == 1


def test_memory_refusal_uses_what_the_machine_has(monkeypatch):
    cfg = RunConfig(task="adding", model="gru", hidden_size=64, batch_size=8)
    cfg.validated()  # small: fits
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(ConfigError, match=r"needs ~0\.\d GB, 0\.0 GB available; lower --batch"):
        RunConfig(task="adding", model="gru", hidden_size=64, batch_size=8).validated()


def test_memory_estimate_grows_with_each_size():
    base = dict(batch=8, steps=100, input_size=2, hidden=64, layers=1, directions=1, gates=3,
                states=1, itemsize=4)  # fmt: skip
    b0 = memory.trained_bytes(**base)
    for key in ("batch", "steps", "hidden", "layers", "directions", "gates"):
        assert memory.trained_bytes(**{**base, key: base[key] * 2}) > b0, key
    r = dict(batch=8, steps=100, input_size=1, output_size=1, hidden=100, connectivity=0.1,
             sparse=True, itemsize=8)  # fmt: skip
    assert memory.reservoir_bytes(**{**r, "hidden": 200}) > 2 * memory.reservoir_bytes(**r)
    assert memory.reservoir_bytes(**{**r, "sparse": False}) > memory.reservoir_bytes(**r)


def test_available_bytes_reads_meminfo_or_sysconf(monkeypatch):
    assert memory.available_bytes() > 0
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    assert memory.available_bytes() > 0  # os.sysconf's free pages


def test_memory_estimate_of_the_run_path_matches_the_hidden_size():
    small = RunConfig(task="copy-task", model="gru", hidden_size=64).validated()
    from seqbench.models import MODELS
    from seqbench.tasks import make_task

    task = make_task("copy-task", small.seq_len)
    kind = MODELS["gru"]
    big = RunConfig(task="copy-task", model="gru", hidden_size=20000)
    # weights (3 H^2), their gradients and Adam's two moments alone: 4 * 3 * 4e8 * 4 bytes
    assert kind.memory_bytes(big, task) > 19e9 > kind.memory_bytes(small, task)
