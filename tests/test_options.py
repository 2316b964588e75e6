"""Task and model options: declared once, parsed and range-checked, listed, validated in
RunConfig, recorded in the run's identity (and only when set), and reaching the run."""

import numpy as np
import pytest

from seqbench import sweep
from seqbench.cli import main
from seqbench.config import RunConfig, task_for
from seqbench.errors import ConfigError
from seqbench.models import MODELS
from seqbench.options import Option, check_options, describe, parse_assignments
from seqbench.results import run_id
from seqbench.tasks import TASKS, make_task, task_options

# -- Option: parsing and ranges


def test_option_parses_text_to_its_type():
    assert Option("k", int, 1, "").check("12") == 12
    assert Option("x", float, 1.0, "").check(" 0.25") == 0.25
    assert Option("b", bool, True, "").check("false") is False
    assert Option("b", bool, True, "").check("yes") is True
    assert Option("s", str, "a", "", choices=("a", "b")).check("b") == "b"
    assert Option("auto", int, None, "").check("none") is None
    assert Option("x", float, 1.0, "").check(3) == 3.0 and isinstance(
        Option("x", float, 1.0, "").check(3), float
    )


@pytest.mark.parametrize(
    "option, value, words",
    [
        (Option("k", int, 1, "", 1), "0", "option 'k' must be in [1, inf)"),
        (Option("k", int, 1, "", 1, 5), 6, "must be in [1, 5]"),
        (Option("k", int, 1, ""), "1.5", "must be an integer, got '1.5'"),
        (Option("k", int, 1, ""), 1.5, "must be an integer, got 1.5"),
        (Option("k", int, 1, ""), True, "must be an integer"),
        (Option("x", float, 1.0, "", 0.0, 1.0, True), "0", "must be in (0, 1]"),
        (Option("x", float, 1.0, ""), "nan", "must be a finite number"),
        (Option("x", float, 1.0, ""), float("inf"), "must be a finite number"),
        (Option("x", float, 1.0, ""), "one", "must be a number, got 'one'"),
        (Option("x", float, 1.0, ""), None, "must be a number, got None"),
        (Option("b", bool, True, ""), "2", "must be true or false"),
        (Option("b", bool, True, ""), 1, "must be true or false"),
        (Option("s", str, "a", "", choices=("a", "b")), "c", "use one of a, b"),
        (Option("s", str, "a", ""), 3, "must be a string"),
    ],
)
def test_option_refuses_wrong_type_and_out_of_range(option, value, words):
    with pytest.raises(ConfigError, match=None) as e:
        option.check(value, "task 't'")
    assert words in str(e.value) and str(e.value).startswith(f"task 't' option '{option.name}'")


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x=y"], "--o") == {"a": "1", "b": " x=y"}
    for bad, words in (
        (["a"], "--o takes KEY=VALUE, got 'a'"),
        (["=1"], "takes KEY=VALUE"),
        (["a=1", "a=2"], "--o sets 'a' twice"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_assignments(bad, "--o")


def test_check_options_names_the_allowed_ones():
    declared = (Option("a", int, 1, ""), Option("b", float, 1.0, ""))
    assert check_options(declared, {"b": "2"}, "model 'm'") == {"b": 2.0}
    with pytest.raises(ConfigError, match="model 'm' has no option 'c'; its options: a, b"):
        check_options(declared, {"c": 1}, "model 'm'")
    with pytest.raises(ConfigError, match="options must be a table"):
        check_options(declared, 3, "model 'm'")


# -- declarations: every task and model, and `seqbench list NAME`


def test_every_task_and_model_declares_valid_defaults():
    for name in TASKS:
        for o in task_options(name):
            assert o.check(o.default, name) == o.default and o.help, (name, o.name)
    for name, kind in MODELS.items():
        for o in kind.options:
            assert o.check(o.default, name) == o.default and o.help, (name, o.name)
    names = {n: {o.name for o in task_options(n)} for n in TASKS}
    assert {"tau", "horizon", "free_run", "protocol", "washout", "scaling"} <= names["mackey-glass"]
    assert {"max_delay", "distribution"} <= names["memory-capacity"]
    assert "order" in names["narma10"] and {"n_copy", "n_symbols"} <= names["copy-task"]
    esn = {o.name for o in MODELS["esn"].options}
    assert {"spectral_radius", "leak", "input_scaling", "connectivity", "activation", "ridge",
            "bias_scaling"} <= esn  # fmt: skip
    assert {o.name for o in MODELS["lstm"].options} == {"forget_bias"}
    assert {o.name for o in MODELS["elman"].options} == {"nonlinearity"}


def test_list_task_shows_its_options(capsys):
    assert main(["list", "mackey-glass"]) == 0
    text = capsys.readouterr().out
    assert "name" in text and "range" in text and "default" in text
    line = next(x for x in text.splitlines() if x.split()[:1] == ["tau"])
    assert line.split()[1:4] == ["float", "[0.1,", "1000]"] and "17.0" in line and "delay" in line
    assert main(["list", "memory-capacity"]) == 0
    assert "auto: 2N" in capsys.readouterr().out


def test_list_model_shows_its_options_and_what_it_does_not_take(capsys):
    assert main(["list", "esn"]) == 0
    text = capsys.readouterr().out
    leak = next(x for x in text.splitlines() if x.split()[:1] == ["leak"])
    assert leak.split()[1:4] == ["float", "(0,", "1]"]
    assert "does not take:" in text and "lr" in text.split("does not take:")[1]
    assert main(["list", "adding"]) == 0
    assert "(no options)" in capsys.readouterr().out
    assert describe(()) == ["  (no options)"]


# -- identity and run ids

# Run ids from before options existed (commit 4990b92): configs without options keep them.
# The copy task's default T was 20 then (10 now, so that the headline run solves): those
# configs name T=20, the same resolved config, so the same id.
IDS_BEFORE = [
    ({"seq_len": 20}, "d94cd0bb9ee5"),
    ({"task": "adding", "model": "lstm", "seq_len": 50, "hidden_size": 32}, "e46e6542180a"),
    ({"model": "elman", "seq_len": 20, "model_options": {"nonlinearity": "relu"}}, "6276eb478f0f"),
    (
        {"task": "temporal-order", "init": "orthogonal", "tbptt": 10, "readout": "mean"},
        "c21b3f8fb4f1",
    ),  # fmt: skip
    ({"task": "mackey-glass", "seq_len": 200}, "784437af5ef1"),
    ({"task": "memory-capacity", "model": "lstm", "hidden_size": 16}, "cd8c0cad38f2"),
    (
        {"task": "narma10", "model": "jordan", "bidirectional": True, "num_layers": 2},
        "9dd5cc14b86a",
    ),  # fmt: skip
    (
        {
            "model": "lstm",
            "seq_len": 20,
            "model_options": {"forget_bias": 1.0},
            "clip": "value:1",
            "lr": 1e-3,
        },
        "52df7c969d50",
    ),  # fmt: skip
]


@pytest.mark.parametrize("fields, rid", IDS_BEFORE)
def test_run_ids_without_options_are_unchanged(fields, rid):
    assert run_id(RunConfig(**fields).validated().identity()) == rid


def test_task_options_enter_the_identity_only_when_set():
    plain = RunConfig(task="mackey-glass").validated()
    assert "task_options" not in plain.identity()["options"]
    tau = RunConfig(task="mackey-glass", task_options={"tau": "30"}).validated()
    assert tau.task_options == {"tau": 30.0}
    assert tau.identity()["options"]["task_options"] == {"tau": 30.0}
    assert run_id(tau.identity()) != run_id(plain.identity())
    same = RunConfig(task="mackey-glass", task_options={"tau": 30}).validated()
    assert run_id(same.identity()) == run_id(tau.identity())  # text or number: one id


def test_model_options_are_typed_before_they_are_recorded():
    a = RunConfig(model="lstm", model_options={"forget_bias": "1"}).validated()
    b = RunConfig(model="lstm", model_options={"forget_bias": 1.0}).validated()
    assert a.model_options == {"forget_bias": 1.0} and run_id(a.identity()) == run_id(b.identity())


def test_fields_a_fitted_model_ignores_are_none_in_its_identity():
    esn = RunConfig(task="narma10", model="esn", hidden_size=20).validated().identity()
    for name in ("lr", "optimizer", "clip", "init", "num_layers", "bidirectional"):
        assert esn[name] is None
    assert esn["options"] == {}
    # ESN ids changed when the ignored fields left the identity (intended): before, 024b97cc4ee9
    assert run_id(RunConfig(task="mackey-glass", model="esn", hidden_size=100).validated()
                  .identity()) == "89557dbbd83e"  # fmt: skip


# -- options reach the task and the model


def test_task_for_applies_the_options():
    t = task_for(RunConfig(task="copy-task", seq_len=5, task_options={"n_copy": 3}))
    assert t.steps == 5 + 6 and t.n_copy == 3
    t = task_for(RunConfig(task="narma10", seq_len=50, task_options={"order": 5}))
    assert t.order == 5
    mc = task_for(RunConfig(task="memory-capacity", hidden_size=300))
    assert mc.max_delay == 600 and mc.output_size == 600  # 2N, no cap at 100
    mg = task_for(RunConfig(task="mackey-glass", task_options={"protocol": "jaeger2004"}))
    assert (mg.seq_len, mg.washout, mg.free_run) == (3084, 1000, 84)
    assert RunConfig(task="mackey-glass", task_options={"protocol": "jaeger2004"}).validated(
    ).seq_len == 3084  # fmt: skip


def test_task_for_without_options_is_make_task():
    rng = [np.random.default_rng(0), np.random.default_rng(0)]
    for name, T in (("copy-task", 5), ("narma10", 40), ("mackey-glass", 30)):
        a = task_for(RunConfig(task=name, seq_len=T)).generate(rng[0], 3)
        b = make_task(name, T).generate(rng[1], 3)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def test_esn_fit_options_go_to_the_fit_not_the_build():
    cfg = RunConfig(task="narma10", model="esn", hidden_size=20,
                    model_options={"ridge": "1e-3", "leak": 0.5}).validated()  # fmt: skip
    kind = MODELS["esn"]
    assert kind.fit_options_for(cfg) == {"ridge": 1e-3}
    assert kind.options_for(cfg) == {"leak": 0.5}


def test_cli_options_reach_the_record(tmp_path, capsys):
    from seqbench import results

    out = str(tmp_path / "res")
    argv = ["run", "copy-task", "--model", "elman", "--seq-len", "3", "--hidden", "8",
            "--batch", "4", "--steps", "2", "--quiet", "--out", out,
            "--nonlinearity", "relu", "--task-opt", "n_copy=2"]  # fmt: skip
    assert main(argv) == 0
    row = results.load(out).iloc[0]
    cfg = RunConfig(task="copy-task", model="elman", seq_len=3, hidden_size=8, batch_size=4,
                    steps=2, model_options={"nonlinearity": "relu"},
                    task_options={"n_copy": 2})  # fmt: skip
    assert row["run_id"] == run_id(cfg.validated().identity())


# -- suite files: the same tables in [defaults], [grid] and [[runs]]

SUITE = """
[defaults]
task = "mackey-glass"
seq_len = 50
hidden_size = 8
lr = 0.003
task_options = {washout = 10}

[grid]
seed = [0]
task_options = [{tau = 17}, {tau = 30}]

[[runs]]
model = "gru"

[[runs]]
model = "esn"
model_options = {leak = 0.5, ridge = 1e-4}
task_options = {tau = 17, horizon = 2}
"""


def test_suite_tables_reach_the_configs(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    suite = sweep.load_suite(path)
    by_model = {}
    for c in suite.configs:
        by_model.setdefault(c.model, []).append(c)
    assert [c.task_options for c in by_model["gru"]] == [{"tau": 17.0}, {"tau": 30.0}]
    assert by_model["gru"][0].lr == 0.003
    (esn,) = by_model["esn"]
    assert esn.task_options == {"tau": 17.0, "horizon": 2} and esn.lr == RunConfig().lr
    assert esn.model_options == {"leak": 0.5, "ridge": 1e-4}


@pytest.mark.parametrize(
    "table, line, words",
    [
        ("task_options = 3", 4, "'task_options' in [[runs]] #1 must be an inline table"),
        ("task_options = {tua = 1}", 4, "task 'mackey-glass' has no option 'tua'"),
        ("task_options = {tau = 'x'}", 4, "option 'tau' must be a number, got 'x'"),
        ("task_options = {tau = -1}", 4, "option 'tau' must be in [0.1, 1000]"),
        ("model_options = {nonlinearity = 3}", 4, "option 'nonlinearity' must be a string"),
        ("lr = 0.5\nmodel = 'esn'", 4, "lr=0.5 does not apply to model 'esn'"),
    ],
)
def test_malformed_option_tables_in_a_suite(table, line, words, tmp_path, capsys):
    text = f"[defaults]\ntask = 'mackey-glass'\n[[runs]]\n{table}\n"
    if "model =" not in table:
        text = text.replace("[[runs]]\n", "[[runs]]\nmodel = 'elman'\n").replace(
            f"{table}\n", f"{table}\n"
        )
        line += 1
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert err.startswith(f"seqbench: error: {path}:{line}: "), err


def test_task_options_reach_the_training_run():
    from seqbench.train import run

    cfg = RunConfig(task="copy-task", model="gru", seq_len=3, hidden_size=8, batch_size=4,
                    steps=2, task_options={"n_copy": 2})  # fmt: skip
    record = run(cfg).record
    assert record["baseline_loss"] == pytest.approx(2 * np.log(8) / 7)
    fit = RunConfig(task="narma10", model="esn", seq_len=300, hidden_size=20, batch_size=4,
                    model_options={"ridge": 1.0})  # fmt: skip
    plain = RunConfig(task="narma10", model="esn", seq_len=300, hidden_size=20, batch_size=4)
    assert run(fit).record["final_loss"] != run(plain).record["final_loss"]


def test_suite_keys_checked_alone_do_not_meet_the_default_task(tmp_path, capsys):
    """tbptt and readout = "mean" are right for the suite's task (adding, T=200), whatever the
    default task is; too long a window is still refused, on its own line."""
    text = "[defaults]\ntask = 'adding'\nseq_len = 200\ntbptt = 150\nreadout = 'mean'\n"
    path = tmp_path / "ok.toml"
    path.write_text(text + "[grid]\nseed = [0, 1]\n")
    assert len(sweep.load_suite(path).configs) == 2
    path.write_text(text.replace("150", "250") + "[grid]\nseed = [0, 1]\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seqbench: error: {path}:4: ") and "tbptt=250 is longer" in err


# -- issue 20: mackey-glass window counts, esn activation linear, esn state noise


def _listed(capsys, name, option) -> list:
    assert main(["list", name]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == [option])
    return line.split()


def test_mackey_glass_window_options_listed_checked_recorded(capsys):
    for name in ("train_windows", "test_windows"):
        assert _listed(capsys, "mackey-glass", name)[1:5] == ["int", "[1,", "inf)", "auto"]
        declared = {o.name: o for o in task_options("mackey-glass")}[name]
        assert declared.check("5") == 5 and declared.check("none") is None
        with pytest.raises(ConfigError, match=name):
            declared.check("0")
        with pytest.raises(ConfigError, match=name):
            declared.check("1.5")
    plain = RunConfig(task="mackey-glass", model="esn", hidden_size=20).validated()
    assert run_id(plain.identity()) == run_id(
        RunConfig(task="mackey-glass", model="esn", hidden_size=20, task_options={}).validated()
        .identity()
    )  # fmt: skip
    assert (task_for(plain).train_windows, task_for(plain).test_windows) == (None, None)
    cfg = RunConfig(task="mackey-glass", model="esn", hidden_size=20,
                    task_options={"train_windows": "3", "test_windows": 7}).validated()  # fmt: skip
    assert cfg.identity()["options"]["task_options"] == {"train_windows": 3, "test_windows": 7}
    assert run_id(cfg.identity()) != run_id(plain.identity())
    t = task_for(cfg)
    assert (t.train_windows, t.test_windows, t.windows_set) == (3, 7, True)
    jaeger = {"protocol": "jaeger2004"}
    t = task_for(RunConfig(task="mackey-glass", task_options=jaeger))
    assert (t.train_windows, t.test_windows, t.windows_set) == (1, 100, False)
    t = task_for(RunConfig(task="mackey-glass", task_options={**jaeger, "test_windows": 20}))
    assert (t.train_windows, t.test_windows) == (1, 20)  # the protocol's, unless set
    with pytest.raises(ConfigError, match="train_windows"):
        make_task("mackey-glass", 100, train_windows=0)
    with pytest.raises(ConfigError, match="test_windows"):
        make_task("mackey-glass", 100, test_windows=True)


def test_esn_activation_linear_listed_parsed_recorded(capsys):
    assert _listed(capsys, "esn", "activation")[2:7] == ["tanh", "|", "identity", "|", "linear"]
    cfg = RunConfig(task="narma10", model="esn", hidden_size=20,
                    model_options={"activation": "linear"}).validated()  # fmt: skip
    assert cfg.identity()["options"]["activation"] == "linear"  # as asked
    assert MODELS["esn"].options_for(cfg) == {"activation": "linear"}
    with pytest.raises(ConfigError, match="activation"):
        RunConfig(model="esn", model_options={"activation": "relu"}).validated()


def test_esn_state_noise_listed_checked_recorded_and_fitted(capsys):
    from seqbench.train import run

    assert _listed(capsys, "esn", "state_noise")[1:5] == ["float", "[0,", "inf)", "0.0"]
    with pytest.raises(ConfigError, match="state_noise"):
        RunConfig(model="esn", model_options={"state_noise": "-0.1"}).validated()
    base = {"task": "narma10", "model": "esn", "seq_len": 150, "hidden_size": 20, "batch_size": 3}
    plain = RunConfig(**base).validated()
    cfg = RunConfig(**base, model_options={"state_noise": "0.01"}).validated()
    assert "state_noise" not in plain.identity()["options"]
    assert cfg.identity()["options"]["state_noise"] == 0.01
    assert run_id(cfg.identity()) != run_id(plain.identity())
    assert MODELS["esn"].fit_options_for(cfg) == {"state_noise": 0.01}
    assert MODELS["esn"].options_for(cfg) == {}  # the fit's, not the build's
    a, b = run(cfg).record, run(cfg).record
    assert a["final_loss"] == b["final_loss"] != run(plain).record["final_loss"]


def test_mackey_glass_windows_reach_the_feedback_fit_only():
    from seqbench.esn_fit import fit_esn
    from seqbench.models.esn import build_esn

    task = make_task("mackey-glass", 120, free_run=10, washout=20, train_windows=2,
                     test_windows=3)  # fmt: skip
    m = build_esn(1, 10, seed=0, output_feedback=True, sparse=False, spectral_radius=0.8)
    r = fit_esn(m, task, np.random.default_rng(0), batch_size=2)
    assert (r["metrics"]["train_windows"], r["metrics"]["test_windows"]) == (2, 3)
    with pytest.raises(ConfigError, match="output-feedback"):
        fit_esn(build_esn(1, 10), task, np.random.default_rng(0), batch_size=2)
