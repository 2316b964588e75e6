"""How much memory a run will need, estimated before anything is allocated, and the check that
refuses a run the machine cannot hold (RunConfig.validated calls it, so the CLI, sweeps and
``train.run`` all get it).

The estimate counts the large arrays only, from shapes alone (no task data is generated):

    trained model, per step:  saved gates, input projections and states of every layer and
                              direction, (B, T, (2G + S + 1) H), and half again for the
                              backward's buffers, or (the larger) the gradient probe's float64
                              twin of the same; parameters with their gradients and two
                              optimizer moments; the spectra's dense copies of W_hh (H, H); one
                              batch of inputs, targets and outputs (loss and its gradient)
    reservoir:                W (nonzeros at ~40 bytes each while it is drawn, or dense N^2
                              copies), the states of one batch (B, T, N) and their float64
                              features, the ridge system (N + 1)^2, one batch of data
It aims at the right order of magnitude, not the byte: runs it refuses would not fit. Against
peak RSS on this machine (2 cores, 24 GB): LSTM H=256 B=256 T=1000 6.9 GB estimated, 6.7 GB
measured; memory-capacity ESN N=3000 B=8 (K = 6000 targets) 2.8 vs 1.4; narma10 ESN N=2000
B=16 0.85 vs 1.6; GRU H=2000 B=16 copy T=20 0.48 vs 1.4 (of which ~0.4 is the interpreter,
numba and the libraries, already in use and so not in MemAvailable).
"""

from __future__ import annotations

import os

from .errors import ConfigError

F64 = 8
SPARSE_BUILD_BYTES = 40  # per nonzero of W while it is drawn: positions, values, rows, CSR


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else free physical pages (os.sysconf), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def data_bytes(batch, steps, input_size, output_size, per_step, classification, itemsize,
               out_copies=3):  # fmt: skip
    """One batch: inputs in float64 and the model's dtype, targets, and ``out_copies`` float64
    arrays of outputs (a trained head: outputs, loss terms, their gradient)."""
    x = batch * steps * input_size * (F64 + itemsize)
    rows = batch * (steps if per_step else 1)
    y = rows * (F64 if classification else output_size * F64)
    out = rows * output_size * (out_copies * F64 + itemsize)
    return x + y + out


def trained_bytes(*, batch, steps, input_size, hidden, layers, directions, gates, states, itemsize):
    """The recurrent part of a gradient-trained run (data_bytes apart)."""
    H, G = hidden, gates
    tape = layers * directions * batch * steps * H * (2 * G + states + 1)
    params = 0
    for layer in range(layers):
        fan_in = input_size if layer == 0 else directions * H
        params += directions * G * H * (fan_in + H + 2)
    step = 1.5 * tape * itemsize
    probe = 1.2 * tape * F64 + params * F64
    spectra = 3 * H * H * F64
    return int(max(step, probe) + 4 * params * itemsize + spectra)


def reservoir_bytes(*, batch, steps, input_size, output_size, hidden, connectivity, sparse,
                    itemsize):  # fmt: skip
    """A reservoir's build and readout fit (data_bytes apart)."""
    N = hidden
    w = connectivity * N * N * SPARSE_BUILD_BYTES if sparse else 3 * N * N * F64
    states = batch * steps * N * (itemsize + F64)
    ridge = 2 * (N + 1) ** 2 * F64 + (N + 1) * output_size * F64
    return int(w + states + ridge + N * input_size * F64)


def check_fits(needed: int, available: int | None = None) -> None:
    """ConfigError when ``needed`` bytes exceed what the machine has available."""
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise ConfigError(
        f"this run needs ~{_gb(needed)} GB, {_gb(available)} GB available; "
        "lower --batch, --seq-len or --hidden"
    )


def _gb(n: int) -> str:
    gb = n / 1e9
    return f"{gb:,.0f}" if gb >= 100 else f"{gb:.1f}"
