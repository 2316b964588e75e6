"""Seeds are an axis: `run --seeds N`, and `seqbench results` grouping by every config column
that varies (pooling only when asked), with n, mean and a 95% t interval per row."""

import math
import re

import pandas as pd
import pytest

from seqbench import results
from seqbench.cli import main
from seqbench.errors import ConfigError

TINY = ["--seq-len", "3", "--hidden", "8", "--batch", "4", "--steps", "4", "--quiet"]


def _runs():
    """elman at T=10: clip none (1.64, 1.44) and norm:1 (1.00, 0.98); one lstm run at lr 0.1
    and two at lr 0.01."""
    rows = [
        dict(model="elman", clip="none", lr=0.01, seed=0, loss_ratio=1.64),
        dict(model="elman", clip="none", lr=0.01, seed=1, loss_ratio=1.44),
        dict(model="elman", clip="norm:1", lr=0.01, seed=0, loss_ratio=1.00),
        dict(model="elman", clip="norm:1", lr=0.01, seed=1, loss_ratio=0.98),
        dict(model="lstm", clip="none", lr=0.1, seed=0, loss_ratio=0.1, solved=True),
        dict(model="lstm", clip="none", lr=0.01, seed=0, loss_ratio=0.5),
        dict(model="lstm", clip="none", lr=0.01, seed=1, loss_ratio=0.7),
    ]
    base = dict(task="copy-task", seq_len=10, status="finished", solved=False, solved_step=None,
                steps_per_second=10.0, options="{}")  # fmt: skip
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["final_loss"] = df["loss_ratio"]
    df.loc[df["solved"], "solved_step"] = 120
    return df


def test_group_keys_are_every_varying_config_column_but_the_seed():
    df = _runs()
    assert results.group_keys(df) == ["task", "model", "seq_len", "lr", "clip"]
    assert results.group_keys(df, pool=["clip"]) == ["task", "model", "seq_len", "lr"]
    assert results.group_keys(df, lead=["model"]) == ["model", "lr", "clip"]
    with pytest.raises(ConfigError, match="cannot pool over 'seed'"):
        results.group_keys(df, pool=["seed"])


def test_by_seed_counts_and_interval():
    df = _runs()
    stats = results.by_seed(df, results.group_keys(df))
    none = stats.loc[("copy-task", "elman", 10, 0.01, "none")]
    assert none["runs"] == 2 and none["loss_ratio_n"] == 2
    assert none["loss_ratio_mean"] == pytest.approx(1.54)
    # s/sqrt(2) = 0.1, times t(0.975, 1) = 12.7062
    assert none["loss_ratio_high"] - none["loss_ratio_mean"] == pytest.approx(1.27062, abs=1e-5)
    one = stats.loc[("copy-task", "lstm", 10, 0.1, "none")]
    assert one["runs"] == 1 and math.isnan(one["loss_ratio_low"])
    assert one["solved"] == 1 and one["solved_step_median"] == 120


def test_diverged_runs_are_counted_not_averaged():
    df = _runs().iloc[:2].copy()
    df.loc[1, "status"], df.loc[1, "loss_ratio"] = "diverged", math.nan
    stats = results.by_seed(df, ["model"])
    assert stats.loc["elman", "diverged"] == 1 and stats.loc["elman", "loss_ratio_n"] == 1
    assert stats.loc["elman", "loss_ratio_mean"] == 1.64


def test_best_of_lr_picks_per_group_fewest_diverged_then_lowest_mean_loss():
    df = _runs()
    best = results.best_of(df, "lr")
    assert set(best.loc[best["model"] == "lstm", "lr"]) == {0.1}  # 0.1 beats mean 0.6
    assert len(best[best["model"] == "elman"]) == 4  # one rate, both clip settings kept
    df.loc[4, "status"] = "diverged"  # now 0.1 diverged: 0.01 wins despite the loss
    assert set(results.best_of(df, "lr").query("model == 'lstm'")["lr"]) == {0.01}


CONFIG = dict(backend="numba", dtype="float32", hidden_size=64, num_layers=1,
              bidirectional=False, batch_size=32, optimizer="adam", init="default", steps=200,
              baseline_loss=1.0)  # fmt: skip


def _write(tmp_path, df):
    for r in df.to_dict("records"):
        record = {**CONFIG, **{k: v for k, v in r.items() if v is not None and v == v}}
        record["options"] = {}
        results.write_run(tmp_path, {**record, "run_id": results.run_id(record)})


def test_results_cli_shows_n_and_interval_and_never_pools_clip(tmp_path, capsys):
    _write(tmp_path, _runs())
    assert main(["results", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "1.54 [0.269, 2.81]" in text  # elman, clip none: 1.64 and 1.44
    assert "0.99 [0.863, 1.12]" in text  # elman, clip norm:1: 1.00 and 0.98
    assert "95% t interval" in text and "only seeds are pooled" in text
    assert main(["results", "--out", str(tmp_path), "--pool", "clip"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"1\.2[67] \[", text) and "pooled over: clip" in text  # mean 1.265 of 4
    assert main(["results", "--out", str(tmp_path), "--best-of", "lr"]) == 0
    text = capsys.readouterr().out
    assert "best lr" in text and "at the best lr" in text
    assert "0.6 [" not in text  # lstm's lr 0.01 (mean 0.6) is not the best: not shown


def test_results_cli_rejects_an_unknown_pool_column(tmp_path, capsys):
    _write(tmp_path, _runs().iloc[:1])
    assert main(["results", "--out", str(tmp_path), "--pool", "colour"]) == 2
    assert "cannot pool over 'colour'" in capsys.readouterr().err


def test_run_with_seeds_runs_each_seed_and_summarises(tmp_path, capsys):
    out = str(tmp_path / "res")
    assert main(["run", "copy-task", "--model", "gru", *TINY, "--seed", "3", "--seeds", "3",
                 "--out", out]) == 0  # fmt: skip
    text = capsys.readouterr().out
    df = results.load(out)
    assert sorted(df["seed"]) == [3, 4, 5] and df["run_id"].nunique() == 3
    assert text.count("saved run") == 3
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("seeds 3..5: 3 seeds: final loss / baseline ")
    assert "[" in summary and "mean [95% t interval]" in summary and "solved " in summary
    assert main(["run", "copy-task", *TINY, "--seeds", "0", "--out", out]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
