"""The CUDA backend, with or without a GPU.

- Under numba's CUDA simulator: tests/cuda_sim_cases.py compares every CUDA kernel with its
  CPU twin and the cuda backend with the numba one. numba reads NUMBA_ENABLE_CUDASIM at
  import, so those cases run in a pytest subprocess with the simulator on and the launch
  geometry shrunk (4 threads per block, GEMM tiles of 4); a failure here lists the failing
  cases and their messages.
- On a GPU, where there is one: the same cases on the hardware (skipped without one).
- In this process (no simulator): importing the backend works and building a model with
  backend="cuda" raises one clear ConfigError where there is no GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqbench as sb
from seqbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).with_name("cuda_sim_cases.py")


def _run_cases(tmp_path, extra_env, how):
    env = {**os.environ, **extra_env}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(CASES),
        "-q",
        "-rf",
        "-p",
        "no:cacheprovider",
        f"--junitxml={tmp_path / 'cases.xml'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    rerun = " ".join(f"{k}={v}" for k, v in extra_env.items())
    assert proc.returncode == 0, (
        f"{how} cases failed (exit {proc.returncode}); rerun with\n"
        f"  {rerun} python -m pytest {CASES.relative_to(ROOT)}\n"
        + "\n".join(failed or out.splitlines()[-40:])
    )
    assert " passed" in out and "skipped" not in out.splitlines()[-1], out[-2000:]


def test_cuda_kernels_and_backend_under_simulator(tmp_path):
    env = {
        "NUMBA_ENABLE_CUDASIM": "1",
        "SEQBENCH_THREADS_PER_BLOCK": "4",
        "SEQBENCH_GEMM_TILE": "4",
    }
    _run_cases(tmp_path, env, "simulator")


def test_cuda_kernels_and_backend_on_the_gpu(tmp_path):
    """The same cases on real hardware, where there is one (CI has none): the persistent
    kernels then run a real cooperative grid of several blocks, and float32 meets the CPU
    kernels to 1e-5 with the device's own fused multiply-adds and tanh."""
    if _no_gpu_here():
        pytest.skip("no CUDA device here; the simulator test covers the same cases")
    _run_cases(tmp_path, {"NUMBA_ENABLE_CUDASIM": "0"}, "GPU")


def _no_gpu_here():
    from seqbench.backends import cuda_gpu

    return cuda_gpu.gpu_missing() is not None


def test_cuda_backend_imports_without_a_gpu():
    from seqbench.backends import cuda_gpu

    assert set(cuda_gpu.LAYERS) == {"elman", "jordan", "lstm", "gru"}
    assert "lstm" in cuda_gpu.LAYERS


def test_cuda_backend_without_a_gpu_says_so():
    if not _no_gpu_here():
        pytest.skip("a CUDA device (or the simulator) is available here")
    with pytest.raises(ConfigError) as err:
        sb.build_model("lstm", 3, 8, backend="cuda")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("backend 'cuda' needs an NVIDIA GPU with a CUDA driver")
    assert "backend='numba'" in message


# ---------------------------------------------------------------- suites/gpu_bench.py's table


def _gpu_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "suites" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENV = {
    "device": "NVIDIA H100 80GB HBM3",
    "torch": "2.13.0+cu130",
    "cudnn": "91400",
    "numba_cuda": "numba 0.68.1 (built-in CUDA target)",
}


def _row(cell, work, seqbench_ms, cudnn_ms):
    batch = 64 if work == "train" else 1
    return dict(
        cell=cell,
        work=work,
        batch=batch,
        seq_len=1000,
        hidden=256,
        input_size=64,
        dtype="float32",
        path="persistent",
        seqbench_ms=seqbench_ms,
        cudnn_ms=cudnn_ms,
        max_abs_diff=3.5e-7,
    )


def test_gpu_bench_writes_its_table(tmp_path):
    import csv
    import datetime

    bench = _gpu_bench()
    rows = [_row("lstm", "train", 30.0, 12.0), _row("gru", "infer", 4.5, 9.0)]
    path = bench.write_table(rows, ENV, tmp_path, day=datetime.date(2026, 12, 7))
    assert path == tmp_path / "nvidia-h100-80gb-hbm3-2026-12-07.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert tuple(reader.fieldnames) == bench.COLUMNS
    for name in ("cell", "work", "batch", "seq_len", "hidden", "seqbench_ms", "cudnn_ms"):
        assert name in bench.COLUMNS
    for name in ("ratio", "max_abs_diff", "device", "torch", "cudnn", "numba_cuda"):
        assert name in bench.COLUMNS
    assert [r["cell"] for r in got] == ["lstm", "gru"]
    assert [r["work"] for r in got] == ["train", "infer"]
    assert [float(r["ratio"]) for r in got] == [2.5, 0.5]  # seqbench_ms / cudnn_ms
    assert [int(r["batch"]) for r in got] == [64, 1]
    assert float(got[1]["seqbench_ms"]) == 4.5 and float(got[1]["max_abs_diff"]) == 3.5e-7
    assert all({k: r[k] for k in ENV} == ENV for r in got)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_gpu_bench_table_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    bench = _gpu_bench()
    path = bench.write_table([_row("lstm", "train", 30.0, 12.0)], ENV, tmp_path)
    before = path.read_text()
    with pytest.raises(ValueError, match="lacks seqbench_ms"):
        bad = _row("gru", "train", 1.0, 1.0)
        del bad["seqbench_ms"]
        bench.write_table([_row("elman", "infer", 1.0, 2.0), bad], ENV, tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        bench.write_table([], ENV, tmp_path)
    with pytest.raises(ValueError, match="environment lacks cudnn"):
        no_cudnn = {k: v for k, v in ENV.items() if k != "cudnn"}
        bench.write_table([_row("elman", "infer", 1.0, 2.0)], no_cudnn, tmp_path)
    assert path.read_text() == before

    def no_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)  # gpu_bench writes through write_atomic
    with pytest.raises(OSError, match="disk full"):
        bench.write_table([_row("elman", "infer", 1.0, 2.0)], ENV, tmp_path)
    assert path.read_text() == before  # the old table, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # temp file removed
    monkeypatch.undo()
    bench.write_table([_row("elman", "infer", 1.0, 2.0)], ENV, tmp_path)  # same day: replaced
    assert "elman" in path.read_text() and "lstm" not in path.read_text()


def test_gpu_bench_uses_no_private_helper_of_the_backend():
    source = (ROOT / "suites" / "gpu_bench.py").read_text()
    assert "cuda_gpu" not in source  # the model API only, not the backend's internals
