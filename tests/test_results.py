"""Run records -> Parquet -> DataFrames: round trip, run ids, atomic writes, comparisons."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from seqbench import results
from seqbench.errors import ConfigError
from seqbench.results import storage

CONFIG = {
    "task": "adding",
    "model": "lstm",
    "backend": "numba",
    "dtype": "float32",
    "seq_len": 100,
    "hidden_size": 128,
    "num_layers": 1,
    "bidirectional": False,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 1e-3,
    "clip": "norm:1.0",
    "init": "orthogonal",
    "seed": 0,
    "steps": 200,
    "options": {"readout": "last", "forget_bias": 1.0},
}


def make_record(**changes):
    record = {
        **CONFIG,
        "status": "finished",
        "final_loss": 0.0167,
        "baseline_loss": 0.167,
        "solved": True,
        "solved_step": 150,
        "metrics": {"mse": np.float64(0.0167), "accuracy": 0.9},
        "train_seconds": 12.5,
        "compile_seconds": 3.0,
        "steps_per_second": 16.0,
        "sequence_steps_per_second": 51200.0,
        "grad_ratio_log10": -1.5,
        "clip_fraction": 0.25,
        "max_preclip_norm": 4.0,
        "spectral_radius": 1.0,
        "max_singular_value": 1.2,
        "parameters": np.int64(67584),
        "started_at": results.utc_now(),
        **changes,
    }
    record.setdefault("run_id", results.run_id(record))
    return record


def make_history(steps=3):
    return pd.DataFrame(
        {
            "step": np.arange(steps),
            "loss": np.linspace(1.0, 0.1, steps),
            "preclip_norm": np.linspace(3.0, 1.0, steps),
            "clipped": np.arange(steps) % 2 == 0,
            "seconds": np.full(steps, 0.06),
        }
    )


def make_profiles():
    return pd.DataFrame(
        {
            "step": [0, 0, 0, 0],
            "layer_dir": ["l0", "l0", "l0_reverse", "l0_reverse"],
            "t": [0, 1, 0, 1],
            "dh_norm": [0.5, 1.0, 0.25, 1.0],
            "probe_log10": [-0.3, 0.0, -0.6, 0.0],
        }
    )


def leftovers(out):
    return sorted(p.name for p in out.rglob("*") if p.name.endswith(".tmp"))


# -- round trip


def test_round_trip_keeps_one_row_per_run_in_column_order(tmp_path):
    first = make_record(note="extra column")
    second = make_record(
        seed=1,
        status="diverged",
        diverged_step=17,
        final_loss=math.nan,
        solved=False,
        solved_step=None,
        metrics={},
    )
    path = results.write_run(tmp_path, first, make_history(), make_profiles())
    results.write_run(tmp_path, second)

    assert path == tmp_path / "runs" / f"{first['run_id']}.parquet"
    df = results.load(tmp_path)
    assert len(df) == 2
    assert list(df.columns) == results.RUN_COLUMNS + ["note"]
    assert df.dtypes.to_dict() == {**results.RUN_SCHEMA, "note": "string"}

    row = df.set_index("run_id").loc[first["run_id"]]
    assert row["seq_len"] == 100 and row["lr"] == 1e-3 and row["solved"]
    assert row["loss_ratio"] == pytest.approx(0.1)  # computed from final / baseline
    assert json.loads(row["metrics"]) == {"accuracy": 0.9, "mse": 0.0167}
    assert json.loads(row["options"]) == CONFIG["options"]
    assert row["parameters"] == 67584
    assert row["python_version"] == results.environment()["python_version"]
    assert row["note"] == "extra column"

    row = df.set_index("run_id").loc[second["run_id"]]
    assert row["diverged_step"] == 17
    assert pd.isna(row["solved_step"]) and math.isnan(row["final_loss"])
    assert pd.isna(row["note"])


def test_companion_tables_come_back_long_with_run_id(tmp_path):
    first, second = make_record(), make_record(seed=1)
    results.write_run(tmp_path, first, make_history(3), make_profiles())
    results.write_run(tmp_path, second, make_history(5), make_profiles())

    history = results.load_history(tmp_path)
    assert len(history) == 8
    assert list(history.columns) == list(results.HISTORY_SCHEMA)
    assert history.dtypes.to_dict() == results.HISTORY_SCHEMA
    assert history.groupby("run_id").size().to_dict() == {first["run_id"]: 3, second["run_id"]: 5}

    one = results.load_profiles(tmp_path, run_id=first["run_id"])
    assert list(one.columns) == list(results.PROFILE_SCHEMA)
    assert (one["run_id"] == first["run_id"]).all()
    assert one["dh_norm"].tolist() == [0.5, 1.0, 0.25, 1.0]
    assert results.load_profiles(tmp_path, run_id="0123456789ab").empty


def test_rewrite_replaces_a_run_and_drops_its_stale_history(tmp_path):
    record = make_record()
    results.write_run(tmp_path, record, make_history())
    results.write_run(tmp_path, {**record, "final_loss": 0.5})
    df = results.load(tmp_path)
    assert len(df) == 1 and df["final_loss"].iloc[0] == 0.5
    assert results.load_history(tmp_path).empty


def test_load_of_empty_directory_gives_typed_empty_frames(tmp_path):
    df = results.load(tmp_path)
    assert df.empty and list(df.columns) == results.RUN_COLUMNS
    assert df.dtypes.to_dict() == results.RUN_SCHEMA
    assert list(results.load_history(tmp_path).columns) == list(results.HISTORY_SCHEMA)
    assert list(results.load_profiles(tmp_path).columns) == list(results.PROFILE_SCHEMA)
    assert results.completed_run_ids(tmp_path) == set()
    assert results.completed_run_ids(tmp_path / "absent") == set()


def test_load_of_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no results directory"):
        results.load(tmp_path / "absent")


def test_corrupt_file_is_named_not_skipped(tmp_path):
    results.write_run(tmp_path, make_record())
    bad = tmp_path / "runs" / "badbadbadbad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="badbadbadbad.parquet"):
        results.load(tmp_path)


def test_completed_run_ids_and_stray_temp_files(tmp_path):
    ids = {results.write_run(tmp_path, make_record(seed=s)).stem for s in range(3)}
    (tmp_path / "runs" / ".abc.123.tmp").write_bytes(b"half a file")
    assert results.completed_run_ids(tmp_path) == ids
    assert set(results.load(tmp_path)["run_id"]) == ids


def test_record_validation(tmp_path):
    with pytest.raises(ValueError, match="status"):
        results.write_run(tmp_path, make_record(status="done"))
    with pytest.raises(ValueError, match="run_id"):
        results.write_run(tmp_path, make_record(run_id="../escape"))
    with pytest.raises(ValueError, match="profiles lacks column"):
        results.write_run(tmp_path, make_record(), profiles=make_profiles().drop(columns="t"))
    with pytest.raises(ValueError, match="history lacks column"):
        results.write_run(tmp_path, make_record(), history=make_history().set_index("step"))
    assert list(tmp_path.iterdir()) == []


def test_extra_column_typed_differently_per_run_still_loads(tmp_path):
    results.write_run(tmp_path, make_record(seed=0, note=3))
    results.write_run(tmp_path, make_record(seed=1, note="three"))
    results.write_run(tmp_path, make_record(seed=2))
    df = results.load(tmp_path)
    assert list(df.columns) == results.RUN_COLUMNS + ["note"]
    assert df.dtypes.drop("note").to_dict() == results.RUN_SCHEMA
    assert sorted(map(str, df["note"].dropna())) == ["3", "three"]


# -- run ids


def test_run_id_is_stable_and_ignores_key_order_and_outcome():
    rid = results.run_id(CONFIG)
    assert len(rid) == 12 and int(rid, 16) >= 0
    reordered = dict(reversed(list(CONFIG.items())))
    reordered["options"] = dict(reversed(list(CONFIG["options"].items())))
    assert results.run_id(reordered) == rid
    assert results.run_id({**CONFIG, "lr": 0.001}) == rid
    assert results.run_id({**CONFIG, "lr": np.float32(1e-3), "seed": np.int64(0)}) == rid
    assert results.run_id(make_record()) == rid  # outcome and environment are not config
    no_options = {k: v for k, v in CONFIG.items() if k != "options"}
    assert results.run_id({**no_options, "options": None}) == results.run_id(no_options)
    assert results.run_id({**no_options, "options": {}}) == results.run_id(no_options)


def test_run_id_is_the_same_in_another_process_and_environment_stays_off_cuda():
    code = (
        "import sys; from seqbench.results import environment, run_id; environment(); "
        f"print(run_id({CONFIG!r}), 'numba.cuda' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [results.run_id(CONFIG), "False"]


CHANGES = {
    "task": "copy-task",
    "model": "gru",
    "backend": "cuda",
    "dtype": "float64",
    "seq_len": 200,
    "hidden_size": 64,
    "num_layers": 2,
    "bidirectional": True,
    "batch_size": 16,
    "optimizer": "sgd",
    "lr": 1e-2,
    "clip": "none",
    "init": "torch",
    "seed": 1,
    "steps": 201,
    "options": {"readout": "mean", "forget_bias": 1.0},
}


@pytest.mark.parametrize("field", list(CHANGES))
def test_run_id_changes_with_every_config_field(field):
    assert set(CHANGES) == set(results.CONFIG_FIELDS)
    assert results.run_id({**CONFIG, field: CHANGES[field]}) != results.run_id(CONFIG)


# -- atomic writes


def failing_writer(fail_on_call, exception):
    calls = []

    def write(table, path):
        calls.append(path)
        with open(path, "wb") as f:
            f.write(b"PAR1 half written")
        if len(calls) == fail_on_call:
            raise exception

    return write


@pytest.mark.parametrize("exception", [RuntimeError("disk on fire"), KeyboardInterrupt()])
@pytest.mark.parametrize("fail_on_call", [1, 2, 3])  # history, profiles, runs file
def test_failed_write_leaves_no_trace(tmp_path, monkeypatch, exception, fail_on_call):
    kept = make_record(seed=7)
    results.write_run(tmp_path, kept, make_history(), make_profiles())
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    monkeypatch.setattr(storage, "_write_table", failing_writer(fail_on_call, exception))
    with pytest.raises(type(exception)):
        results.write_run(tmp_path, make_record(seed=8), make_history(), make_profiles())
    monkeypatch.undo()

    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert leftovers(tmp_path) == []
    assert results.completed_run_ids(tmp_path) == {kept["run_id"]}
    assert results.load(tmp_path)["run_id"].tolist() == [kept["run_id"]]
    assert len(results.load_history(tmp_path)) == 3


def test_out_under_a_regular_file_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "results"):
        with pytest.raises(ConfigError, match="cannot write results to"):
            results.check_writable(out)
        with pytest.raises(ConfigError, match="cannot write results to"):
            results.write_run(out, make_record())
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory_is_a_config_error(tmp_path):
    tmp_path.joinpath("ro").mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError, match="Permission denied"):
            results.check_writable(tmp_path / "ro")
    finally:
        tmp_path.joinpath("ro").chmod(0o700)


def test_check_writable_creates_the_layout_and_leaves_it_clean(tmp_path):
    out = results.check_writable(tmp_path / "new" / "results")
    assert sorted(p.name for p in out.iterdir()) == ["history", "profiles", "runs"]
    assert list(out.rglob("*.tmp")) == []


# -- environment


def test_environment_is_cached_and_complete():
    env = results.environment()
    assert set(env) == set(results.ENVIRONMENT_FIELDS)
    assert env["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["numpy_version"] == np.__version__
    assert env["cpu"]
    env["cpu"] = "changed"
    assert results.environment()["cpu"] != "changed"  # callers get a copy


@pytest.fixture
def fresh_environment():
    """provenance's cached environment emptied before and after: a test may fake git."""
    from seqbench.results import provenance

    provenance._environment.cache_clear()
    yield provenance
    provenance._environment.cache_clear()


def test_a_pinned_environment_keeps_the_commit_the_process_started_on(
    tmp_path, monkeypatch, fresh_environment
):
    # a sweep worker pins at its start; the checkout moves on before the run is saved
    provenance = fresh_environment
    monkeypatch.setattr(provenance, "_git_commit", lambda: "a" * 40)
    provenance.pin()
    monkeypatch.setattr(provenance, "_git_commit", lambda: "b" * 40)
    record = make_record()
    results.write_run(tmp_path, record)
    row = results.load(tmp_path).iloc[0]
    assert row["git_commit"] == "a" * 40
    assert row["run_id"] == record["run_id"] == results.run_id(make_record())  # no commit in it


# -- comparison


@pytest.fixture
def runs():
    # model x T: lstm/100 has 4 runs (3 solved, 1 diverged), gru/100 two, lstm/200 one.
    return pd.DataFrame(
        {
            "model": ["lstm"] * 4 + ["gru"] * 2 + ["lstm"],
            "seq_len": [100] * 6 + [200],
            "status": ["finished"] * 3 + ["diverged", "finished", "failed", "finished"],
            "solved": [True, True, True, False, False, None, False],
            "solved_step": [100, 300, 200, None, None, None, None],
            "loss_ratio": [0.01, 0.03, 0.02, np.nan, 0.9, np.nan, 1.0],
            "steps_per_second": [10.0, 12.0, 14.0, 9.0, 20.0, np.nan, 5.0],
        }
    )


def test_compare_numbers(runs):
    table = results.compare(runs)
    assert table.index.names == ["model", "seq_len"]
    assert list(table.columns) == list(results.SUMMARIES)

    lstm = table.loc[("lstm", 100)]
    assert lstm["runs"] == 4
    assert lstm["solved_rate"] == 0.75
    assert lstm["solved_step_median"] == 200
    assert lstm["loss_ratio_median"] == pytest.approx(0.025)  # 0.01 0.02 0.03 inf
    assert lstm["steps_per_second_median"] == 11.0
    assert lstm["diverged_rate"] == 0.25

    gru = table.loc[("gru", 100)]
    assert gru["runs"] == 2 and gru["solved_rate"] == 0 and gru["diverged_rate"] == 0
    assert math.isnan(gru["solved_step_median"])
    assert gru["loss_ratio_median"] == 0.9  # the failed run has no ratio
    assert table.loc[("lstm", 200), "runs"] == 1


def test_compare_on_loaded_runs_and_subset_of_values(tmp_path):
    for seed in range(3):
        results.write_run(tmp_path, make_record(seed=seed, solved=seed > 0))
    table = results.compare(results.load(tmp_path), by="model", values=["runs", "solved_rate"])
    assert table.to_dict("index") == {"lstm": {"runs": 3, "solved_rate": pytest.approx(2 / 3)}}


def test_compare_rejects_unknown_names(runs):
    with pytest.raises(ConfigError, match="'modle'.*valid names are .*model"):
        results.compare(runs, by=("modle", "seq_len"))
    with pytest.raises(ConfigError, match="'speed'.*solved_rate"):
        results.compare(runs, values=["speed"])
    with pytest.raises(ConfigError, match="steps_per_second"):
        results.compare(runs.drop(columns="steps_per_second"))


def test_compare_of_no_runs_is_empty(tmp_path):
    assert results.compare(results.load(tmp_path)).empty


def test_render_table(runs):
    text = results.render_table(results.compare(runs), title="adding")
    assert "adding" in text and "solved_rate" in text and "0.75" in text
    assert "\x1b[" not in text  # plain text, no colour codes
