"""The seqbench command end to end, at tiny sizes."""

import os
import subprocess
import sys

import pytest

from seqbench import results
from seqbench.cli import main

TINY = ["--seq-len", "3", "--hidden", "8", "--batch", "4", "--steps", "4", "--quiet"]


def test_run_records_a_row_and_results_compares(tmp_path, capsys):
    out = str(tmp_path / "res")
    assert main(["run", "copy-task", "--model", "gru", *TINY, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "copy-task T=3" in text and "baseline" in text and "saved run" in text
    df = results.load(out)
    assert len(df) == 1 and df.loc[0, "model"] == "gru" and df.loc[0, "seq_len"] == 3
    assert main(["run", "adding", "--model", "lstm", *TINY, "--out", out]) == 0
    assert len(results.load(out)) == 2
    capsys.readouterr()
    assert main(["results", "--out", out, "--by", "task,model"]) == 0
    table = capsys.readouterr().out
    assert "copy-task" in table and "adding" in table and "solved_rate" in table


def test_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "copy-task" in text and "gru" in text and "numba" in text


@pytest.mark.parametrize(
    "args, match",
    [
        (["run", "copy-tsk"], "task 'copy-tsk' is not known"),
        (["run", "copy-task", "--model", "rnn"], "model 'rnn' is not known"),
        (["run", "copy-task", "--backend", "tpu"], "backend 'tpu' is not known"),
        (["run", "copy-task", "--hidden", "0"], "hidden_size must be a positive integer"),
        (["run", "copy-task", "--hidden", "2.5"], "invalid int value: '2.5'"),
        (["run", "copy-task", "--seq-len", "-3"], "seq_len must be a positive integer"),
        (["run", "copy-task", "--lr", "0"], "lr must be a finite number > 0"),
        (["run", "copy-task", "--lr", "nan"], "lr must be a finite number > 0"),
        (["run", "copy-task", "--clip", "norm:"], "use none, value:C or norm:C"),
        (["run", "copy-task", "--clip", "max:3"], "use none, value:C or norm:C"),
        (["run", "copy-task", "--dtype", "int8"], "dtype 'int8' is not known"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(args, match, tmp_path, capsys):
    out = tmp_path / "res"
    assert main([*args, "--out", str(out)] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cuda_without_gpu_is_one_line(tmp_path, capsys):
    from seqbench.backends.cuda_gpu import gpu_missing

    if gpu_missing() is None:
        pytest.skip("a GPU is present: the no-GPU message cannot be shown here")
    out = tmp_path / "res"
    assert main(["run", "copy-task", "--backend", "cuda", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs an NVIDIA GPU" in err and err.count("\n") == 1
    assert not out.exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "copy-task", *TINY, "--out", str(blocker / "res")]) == 2
    err = capsys.readouterr().err
    assert "cannot write results" in err and err.count("\n") == 1


def test_ctrl_c_mid_run_leaves_nothing_partial(tmp_path, capsys, monkeypatch):
    from seqbench import train

    calls = {"n": 0}
    real = train.Trainer.loss_and_grads

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(train.Trainer, "loss_and_grads", interrupted)
    out = tmp_path / "res"
    assert main(["run", "copy-task", *TINY, "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files == []


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "seqbench.cli", "run", "copy-task", "--lr", "-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "seqbench: error: lr must be a finite number > 0, got -1.0"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SEQBENCH_THREADS", "is not an integer; unset it or set e.g. SEQBENCH_THREADS=0"),
        ("SEQBENCH_POOL_MB", "is not a number; unset it or set e.g. SEQBENCH_POOL_MB=512"),
    ],
)
def test_bad_environment_variable_is_one_line_and_exit_code_2(tmp_path, name, expected):
    env = {**os.environ, name: "lots"}
    proc = subprocess.run(
        [sys.executable, "-m", "seqbench.cli", "run", "copy-task", *TINY, "--out", "res"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"seqbench: error: environment variable {name}='lots' {expected}"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no partial result


def test_bench_prints_the_side_by_side_table(capsys):
    """seqbench bench at a tiny shape: one row per cell with both sides' times (torch when
    installed) and the caption naming the gate functions the kernels use."""
    import re

    from seqbench.bench import _torch

    argv = ["bench", "--cells", "elman", "gru", "--shapes", "2,3,2,4", "--repeat", "1"]
    assert main([*argv, "--same-process"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if "2,3,2,4" in line]
    assert len(rows) == 2 and "elman" in rows[0] and "gru" in rows[1]
    numbers = re.findall(r"\d+\.\d+x?", rows[0])
    assert len(numbers) == (6 if _torch() is not None else 2)
    assert "gates: float32 approximate, float64 exact" in " ".join(text.split())
    assert "one process, in turn" in text


def test_bench_times_each_side_in_its_own_process_alternated():
    """The default bench: torch, seqbench, torch, seqbench, each a fresh worker; per side the
    median of the workers' medians, ratio = torch / seqbench, range over the pairs."""
    import seqbench.bench as bench

    calls = []
    fake = {"torch": [[4.0, 6.0], [8.0, 8.0]], "seqbench": [[1.0, 1.0], [2.0, 4.0]]}

    def worker(job):
        calls.append(job["side"])
        ms = fake[job["side"]][sum(c == job["side"] for c in calls) - 1]
        return {"fwd_ms": ms, "train_ms": [2 * m for m in ms], "first_call_s": 0.5}

    r = bench.measure_isolated("gru", (2, 3, 2, 4), "float32", repeat=2, pairs=2,
                               worker=worker)  # fmt: skip
    if bench._torch() is None:
        assert calls == ["seqbench", "seqbench"] and r["ratio_fwd"] is None
        return
    assert calls == ["torch", "seqbench", "torch", "seqbench"]
    assert r["torch_fwd"] == 6.5 and r["seqbench_fwd"] == 2.0  # medians of (5, 8) and (1, 3)
    assert r["ratio_fwd"] == 6.5 / 2.0 and r["ratio_train"] == 6.5 / 2.0
    assert r["ratio_fwd_range"] == (8.0 / 3.0, 5.0)


def test_bench_worker_times_one_side_alone(capsys):
    """A real worker process per side at a tiny shape; the table says how it was timed."""
    from seqbench.bench import _torch, run_worker

    job = dict(cell="elman", shape=[2, 3, 2, 4], dtype="float32", repeat=2, threads=1)
    sides = ["seqbench"] + (["torch"] if _torch() is not None else [])
    for side in sides:
        r = run_worker({**job, "side": side})
        assert r["side"] == side and r["threads"] == 1
        assert len(r["fwd_ms"]) == 2 and min(r["fwd_ms"] + r["train_ms"]) > 0
    argv = ["bench", "--cells", "elman", "--shapes", "2,3,2,4", "--repeat", "1", "--pairs", "1"]
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "each side in its own process, 1 pairs alternated" in text


def test_bench_without_torch_says_so_in_its_caption(monkeypatch, capsys):
    """Without torch the peer columns are '-', and the caption says why and what to install."""
    import seqbench.bench as bench

    monkeypatch.setattr(bench, "_torch", lambda: None)
    argv = ["bench", "--cells", "elman", "--shapes", "2,3,2,4", "--repeat", "1"]
    assert main([*argv, "--same-process"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "torch is not installed, so its columns are '-' (pip install torch==2.13.0)" in text


def test_bench_roofline_counts_the_products_and_rates_them_against_a_gemm(capsys):
    """--roofline: a second table with each side's GFLOP/s and share of the GEMM peak; the
    FLOP count is 2 B T (gates H (I + H)) for a cell, W_hy included for Jordan."""
    import re

    import seqbench as sb
    from seqbench.bench import _torch
    from seqbench.bench_roofline import PHASES, gemm_flops

    lstm, jordan = sb.build_model("lstm", 3, 5), sb.build_model("jordan", 3, 5)
    assert gemm_flops(lstm, 2, 7) == 2 * 2 * 7 * 4 * 5 * (3 + 5)
    assert gemm_flops(jordan, 2, 7) == 2 * 2 * 7 * 5 * (3 + 5 + 5)
    # a train step: twice more in backward, less W_ih's input gradient (torch's x has no grad)
    assert gemm_flops(lstm, 2, 7, train=True) == 2 * 2 * 7 * 4 * 5 * (3 * (3 + 5) - 3)
    argv = ["bench", "--cells", "lstm", "--shapes", "2,3,2,4", "--repeat", "1", "--roofline",
            "--same-process"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if "2,3,2,4" in line]
    assert len(rows) == 3  # the timing table's row, the roofline table's, the phases'
    gflop = 2 * 2 * 3 * 16 * (2 + 4) / 1e9
    assert f"{gflop:.3g}" in rows[1]
    shares = re.findall(r"\((\d+)%\)", rows[1])
    assert len(shares) == (4 if _torch() is not None else 2)
    peak = re.search(r"GEMM peak here .*?: (\d+) GFLOP/s float32", " ".join(text.split()))
    assert peak and int(peak.group(1)) > 0
    assert all(p in text for p in PHASES)  # the phases' table: step ms, then ms (share) each
    cells = rows[2].split("│")[4:9]
    step, parts = float(cells[0]), [float(c.split()[0]) for c in cells[1:]]
    assert step > 0 and min(parts[:3]) > 0 and sum(parts) == pytest.approx(step, abs=0.02)


def test_bench_train_step_times_the_runs_step_against_the_torch_backend(monkeypatch, capsys):
    """--train-step: per cell a job carrying the run's config, torch then seqbench per pair;
    the table shows both sides' medians and the ratio with its range."""
    import seqbench.bench as bench

    jobs = []

    def worker(job):
        jobs.append(job)
        return {"train_ms": [8.0 if job["side"] == "torch" else 2.0], "first_call_s": 0.1}

    monkeypatch.setattr(bench, "run_worker", worker)
    argv = ["bench", "--train-step", "--cells", "lstm", "gru", "--step-shape", "4,3,8",
            "--repeat", "1", "--pairs", "2"]  # fmt: skip
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    sides = ["torch", "seqbench"] * 2 if bench._torch() is not None else ["seqbench"] * 2
    assert [j["side"] for j in jobs] == sides * 2
    run = jobs[0]["run"]
    assert (run["task"], run["model"], run["backend"]) == ("copy-task", "lstm", "numba")
    assert (run["batch_size"], run["seq_len"], run["hidden_size"]) == (4, 3, 8)
    assert "whole training step, copy-task B,T,H=4,3,8, adam lr 0.01, clip norm:1" in text
    if bench._torch() is not None:
        assert "│ lstm │ float32 │ 2.00 │ 8.00 │ 4.00x [4.00-4.00] │" in text


def test_bench_train_step_roofline_shows_the_seqbench_steps_phases(monkeypatch, capsys):
    """--train-step --roofline: the seqbench workers are asked for phases, and their medians
    over the pairs fill a table of the whole step's phases."""
    import seqbench.bench as bench
    from seqbench.bench_roofline import PHASES

    def worker(job):
        out = {"train_ms": [8.0 if job["side"] == "torch" else 2.0], "first_call_s": 0.1}
        if job["side"] == "seqbench" and job["phases"]:
            k = len([j for j in jobs if j["side"] == "seqbench"])  # 1.0, then 3.0 ms of rest
            out["phases_ms"] = {**dict.fromkeys(PHASES[:3], 0.5), "rest": 2.0 * k + 1, "step": 4.0}
        jobs.append(job)
        return out

    jobs = []
    monkeypatch.setattr(bench, "run_worker", worker)
    argv = ["bench", "--train-step", "--cells", "gru", "--step-shape", "4,3,8", "--repeat", "1",
            "--pairs", "2", "--roofline"]  # fmt: skip
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "where seqbench's train step goes" in text and "rest: batch, head, loss" in text
    half = "0.50 (12%) │ " * 3
    assert f"│ gru │ 4,3,8 │ float32 │ 4.00 │ {half}2.00 (50%) │" in text  # medians of the pairs


@pytest.mark.parametrize("task", ["copy-task", "char-lm"])
def test_bench_train_step_worker_runs_each_backend_alone(task):
    """A real worker per side: the seqbench side on the run's backend, torch on torch's;
    char-lm's streams of the shipped text too (issue 22)."""
    from dataclasses import asdict

    from seqbench.bench import _torch, run_worker
    from seqbench.config import RunConfig

    cfg = RunConfig(task=task, model="elman", seq_len=2, batch_size=2, hidden_size=4)
    run = asdict(cfg.validated())
    for side in ["seqbench"] + (["torch"] if _torch() is not None else []):
        r = run_worker(dict(cell="elman", run=run, repeat=2, threads=1, side=side, phases=True))
        assert r["side"] == side and r["threads"] == 1 and "fwd_ms" not in r
        assert len(r["train_ms"]) == 2 and min(r["train_ms"]) > 0
        assert ("phases_ms" in r) == (side == "seqbench")  # torch's step has no phases
        if side == "seqbench":
            ph = r["phases_ms"]
            assert ph["step"] > ph["rest"] > 0 and ph["forward recurrence"] > 0


@pytest.mark.parametrize(
    "args, match",
    [
        (["--step-shape", "4,3"], "--step-shape '4,3' is not B,T,H"),
        (["--step-shape", "4,0,8"], "is not B,T,H"),
        (["--task", "copy"], "task 'copy' is not known"),
        (["--same-process"], "--train-step times each side in its own process"),
        (["--cells", "gru", "jordan", "--backend", "numpy"], "'jordan' has no 'torch'"),
    ],
)
def test_bench_train_step_bad_input_is_one_line_exit_2(args, match, capsys):
    from seqbench.bench import _torch

    if "jordan" in args and _torch() is None:
        pytest.skip("without torch the torch side's configs are not built")
    assert main(["bench", "--train-step", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args, match",
    [
        (["--shapes", "2,3,4"], "shape '2,3,4' is not B,T,I,H"),
        (["--shapes", "2,0,1,4"], "is not B,T,I,H"),
        (["--cells", "rnn"], "cell 'rnn' is not known"),
        (["--dtype", "float16"], "dtype 'float16' is not supported"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--pairs", "0"], "--pairs must be at least 1"),
    ],
)
def test_bench_bad_input_is_one_line_exit_2(args, match, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
