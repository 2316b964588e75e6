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
