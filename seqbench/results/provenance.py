"""Where and when a run was made: versions, CPU, GPU, git commit, and the UTC time."""

from __future__ import annotations

import contextlib
import datetime
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np


def utc_now() -> str:
    """The current time as started_at wants it: UTC, ISO 8601, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict:
    """Versions, CPU, GPU and git commit of this process; computed once (on the first call,
    or by ``pin``), returned as a copy."""
    return dict(_environment())


def pin() -> None:
    """Read the environment now and keep it for the life of the process. A sweep worker pins
    it as it starts, when it has just imported the code it runs: a checkout that moves on to
    another commit during the sweep leaves that worker's runs recording the commit they ran,
    not the one checked out when each is saved."""
    _environment()


@functools.cache
def _environment() -> dict:
    from .. import __version__

    return {
        "seqbench_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": _distribution_version("numba"),  # without importing numba (~0.7 s)
        "torch_version": _distribution_version("torch"),  # the torch backend's, if installed
        "python_version": platform.python_version(),
        "cpu": _cpu_name(),
        "gpu": _gpu_name(),
        "git_commit": _git_commit(),
    }


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    """NVIDIA model names from the driver's /proc files: no CUDA context, no subprocess."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model" and value.strip() not in names:
                    names.append(value.strip())
    return "; ".join(names) or None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed copy: not our checkout, whatever encloses it
        return None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
