"""seqbench reproduce: the registry, --list, each reproduction's smoke run end to end, the
verdict rules on synthetic runs, bad input, and the README table."""

import math

import pandas as pd
import pytest

from seqbench.cli import main
from seqbench.reproduce import (
    CLAIM_COLUMNS,
    REPRODUCTIONS,
    VERDICTS,
    Reproduction,
    above,
    at_least,
    below,
    configs,
    evaluate,
    readme_table,
    write_claims,
    zero_rate,
)
from seqbench.results import Interval

NAMES = ("arjovsky2016-copy", "arjovsky2016-adding", "pascanu2013-clipping")
REQUIRED = ("reproduction", "claim", "published", "measured", "ci_low", "ci_high", "n",
            "verdict", "rule", "scale_down", "source")  # fmt: skip


def test_registry_declares_each_reproduction():
    assert set(NAMES) <= set(REPRODUCTIONS)
    for name, repro in REPRODUCTIONS.items():
        assert isinstance(repro, Reproduction) and repro.name == name
        assert repro.claims and repro.scale_downs and repro.paper
        assert all(c.rule.text and c.source and c.published for c in repro.claims)
        quick, full = len(configs(repro, "quick")), len(configs(repro, "full"))
        assert 0 < quick < full


def test_list_prints_names_runs_and_scale_downs(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    for name in NAMES:
        assert name in text
    assert "quick 36 (3 seeds), full 80 (5 seeds)" in text  # the copy reproduction
    assert "quick 3 (3 seeds), full 20 (20 seeds)" in text  # jaeger2004: its own seeds
    assert "quick 12 (3 seeds), full 80 (10 seeds)" in text  # jaeger2002
    assert "scaled down: T ∈ {10, 20, 50, 100}" in text


@pytest.mark.parametrize("name", NAMES)
def test_smoke_runs_end_to_end_and_resumes(name, tmp_path, capsys):
    out = tmp_path / name
    args = ["reproduce", name, "--smoke", "--workers", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    claims = pd.read_parquet(out / "claims.parquet")
    assert set(REQUIRED) <= set(claims.columns)
    assert len(claims) >= len(REPRODUCTIONS[name].claims)
    assert set(claims["verdict"]) <= set(VERDICTS)
    assert (claims["reproduction"] == name).all() and (claims["mode"] == "smoke").all()
    assert claims["scale_down"].str.contains("smoke").all()
    assert (out / "report.html").is_file() and list(out.glob("*.png"))
    assert "claims, figures and report.html" in text
    # a second call finds every run done and redoes none
    assert main(args) == 0
    assert "0 runs done now" in capsys.readouterr().out


def test_rules_say_each_verdict():
    rule = below(1.0)
    assert rule.decide(Interval(3, 0.5, 0.4, 0.6)) == "reproduced"
    assert rule.decide(Interval(3, 0.9, 0.7, 1.1)) == "partly"
    assert rule.decide(Interval(1, 0.5, math.nan, math.nan)) == "partly"
    assert rule.decide(Interval(3, 1.2, 1.1, 1.3)) == "not reproduced"
    assert rule.decide(Interval(0, math.nan, math.nan, math.nan)) == "not reproduced"
    assert at_least(0.9).decide(Interval(3, 1.0, 0.95, 1.05)) == "reproduced"
    assert at_least(0.9).decide(Interval(3, 0.5, 0.4, 0.6)) == "not reproduced"
    assert above(0.0).decide(Interval(3, 0.2, -0.1, 0.5)) == "partly"
    assert zero_rate().decide(Interval(3, 0.0, 0.0, 0.0)) == "reproduced"
    assert zero_rate().decide(Interval(3, 0.05, -0.1, 0.2)) == "partly"
    assert zero_rate().decide(Interval(3, 0.5, 0.2, 0.8)) == "not reproduced"


def _runs(rows) -> pd.DataFrame:
    """A synthetic runs table: one dict per run, the columns the measures read."""
    base = dict(task="copy-task", backend="numba", dtype="float32", hidden_size=8,
                num_layers=1, bidirectional=False, batch_size=8, optimizer="adam",
                clip="norm:1", init="default", steps=10, options="{}", status="finished",
                baseline_loss=1.0, grad_ratio_log10_init=0.0)  # fmt: skip
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df["final_loss"] = df.get("final_loss", df["loss_ratio"] * df["baseline_loss"])
    return df


def _copy_runs(gated: float, elman: float, spread=0.02, longer=0.1) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for t in (10, 20):
            worse = longer if t == 20 else 0.0
            for model, ratio in (("lstm", gated), ("gru", gated), ("elman", elman)):
                for lr, bump in ((1e-3, 0.3), (1e-2, 0.0)):
                    value = ratio + worse + bump + spread * (seed - 1)
                    rows.append(dict(model=model, seq_len=t, lr=lr, seed=seed, loss_ratio=value))
    return _runs(rows)


def _verdicts(name, runs) -> dict:
    table = evaluate(REPRODUCTIONS[name], runs, "quick")
    assert list(table.columns) == list(CLAIM_COLUMNS)
    return {(r.claim, r.case): r.verdict for r in table.itertuples()}


def test_copy_rules_on_synthetic_runs():
    good = _verdicts("arjovsky2016-copy", _copy_runs(gated=0.3, elman=1.05))
    assert set(good.values()) == {"reproduced"}
    bad = _verdicts("arjovsky2016-copy", _copy_runs(gated=1.3, elman=0.3, longer=-0.1))
    assert set(bad.values()) == {"not reproduced"}
    edge = _verdicts("arjovsky2016-copy", _copy_runs(gated=0.97, elman=1.05, spread=0.3))
    assert edge[("gated-beat-baseline", "T=10")] == "partly"


def test_adding_elman_claim_counts_every_rate():
    rows = []
    for seed in range(3):
        for t in (50, 100):
            rows.append(dict(model="lstm", seq_len=t, lr=1e-2, seed=seed, final_loss=0.01))
            for lr, mse in ((1e-4, 0.17), (1e-3, 0.168), (1e-2, 0.05 + 0.2 * (t == 50))):
                rows.append(dict(model="elman", seq_len=t, lr=lr, seed=seed, final_loss=mse))
    runs = _runs([{**r, "task": "adding", "loss_ratio": r["final_loss"] / 0.167} for r in rows])
    v = _verdicts("arjovsky2016-adding", runs)
    assert v[("lstm-beats-baseline", "T=50")] == v[("lstm-beats-baseline", "T=100")] == "reproduced"
    assert ("elman-fails", "T=50") not in v  # beyond the shortest T only
    assert v[("elman-fails", "T=100")] == "not reproduced"  # lr 1e-2 beat the baseline


def test_clipping_rules_on_synthetic_runs():
    rows = []
    for seed in range(3):
        for rho in (0.8, 1.0, 2.0):
            for clip in ("none", "norm:1"):
                status = "diverged" if (rho == 2.0 and clip == "none") else "finished"
                probe = -3.0 if rho < 1 else 0.0
                rows.append(dict(model="elman", task="adding", seq_len=50, lr=0.01, seed=seed,
                                 init=f"spectral:{rho}", clip=clip, status=status,
                                 loss_ratio=1.0, grad_ratio_log10_init=probe))  # fmt: skip
    v = _verdicts("pascanu2013-clipping", _runs(rows))
    assert v[("divergence-rises-with-rho", "")] == "reproduced"
    assert v[("norm-clipping-no-divergence", "")] == "reproduced"
    assert v[("vanishing-below-one", "clip=none")] == "reproduced"
    runs = _runs([{**r, "status": "diverged"} for r in rows])
    v = _verdicts("pascanu2013-clipping", runs)
    assert v[("divergence-rises-with-rho", "")] == "not reproduced"
    assert v[("norm-clipping-no-divergence", "")] == "not reproduced"


@pytest.mark.parametrize(
    "args, match",
    [
        (["reproduce", "nope"], "reproduction 'nope' is not known"),
        (["reproduce", "arjovsky2016-copy", "--seeds", "0"], "--seeds must be at least 1"),
        (
            ["reproduce", "arjovsky2016-copy", "--workers", "2", "--scheduler", "tcp://h:1"],
            "--workers and --scheduler both given",
        ),  # fmt: skip
        (["reproduce", "arjovsky2016-copy", "--workers", "0"], "--workers must be at least 1"),
        (["reproduce", "arjovsky2016-copy", "--quick", "--smoke"], "two modes"),
        (["reproduce"], "name a reproduction, or --list"),
        (["reproduce", "arjovsky2016-copy", "--backend", "abacus"], "abacus"),
        (["reproduce", "arjovsky2016-copy", "--seeds", "x"], "invalid int value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, match, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not out.exists()


def test_readme_table_from_claims_files(tmp_path):
    row = dict(reproduction="demo", claim="c", case="T=10", statement="LSTM beats it",
               published="below 1", source="Someone 2016, Fig. 1", measured=0.5, ci_low=0.4,
               ci_high=0.6, n=3, left_out=0, verdict="reproduced", rule="a rule",
               scale_down="T shorter", mode="full", runs=6)  # fmt: skip
    table = pd.DataFrame([row, {**row, "case": "", "measured": 1.2, "n": 1,
                                "verdict": "not reproduced"}])  # fmt: skip
    write_claims(table, tmp_path / "demo")
    text = readme_table(tmp_path)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| reproduction | claim | paper's figure | ours")
    assert "| demo | LSTM beats it (T=10) | below 1 (Someone 2016, Fig. 1) | 0.5 [0.4, 0.6] | 3 |" \
        " reproduced |" in text  # fmt: skip
    assert lines[-1].endswith("| 1.2 | 1 | not reproduced |")
    assert "no claims.parquet" in readme_table(tmp_path / "empty")
    write_claims(table.assign(mode="quick"), tmp_path / "demo" / "quick")
    quick = readme_table(tmp_path, mode="quick")
    assert "| demo (quick mode) |" in quick and len(quick.splitlines()) == 4
    assert readme_table(tmp_path) == text  # the full table reads the full claims only
