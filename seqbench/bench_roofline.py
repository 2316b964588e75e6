"""``seqbench bench --roofline``: how close the matrix products run to this machine's GEMM
peak, and where seqbench's train step spends its time.

The first table rates each side's matrix products in GFLOP/s (every weight matrix meets every
series and step once in a forward, twice more in a backward: the input's and the weight's
gradient, less W_ih's input gradient, which neither side computes) and as a share of the
machine's GEMM peak, a square BLAS GEMM on the same threads (``gemm_peak``). A ratio goal
that needs more than the peak cannot be met by a faster kernel, only by doing less work.

The second splits seqbench's train step (timed in its own process, after the timed calls,
median over the pairs' processes) into its phases, as ``cpu_runtime.phases`` records them:
the forward recurrence kernel (the per-step product, the input's too where the kernel fuses
it, and the gate functions), the backward recurrence kernel, the GEMMs outside the time loop
(the hoisted input projection, the weight gradients) and the rest (Python, allocation, bias
sums). Each phase's rate counts the products it does; a recurrence far below the GEMMs' rate
is held back by its gate math and its per-step dependence, GEMMs below the peak by their shape.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

PHASES = ("forward recurrence", "backward recurrence", "GEMMs", "rest")
PEAK_N = {"float32": 1536, "float64": 1024}  # square GEMMs long enough for BLAS's steady rate
SETTLE_S = 0.02  # pause before each timed call (as seqbench.bench's)


def gemm_flops(model, B, T, train=False) -> float:
    """FLOPs of one forward's matrix products: each weight matrix (W_ih, W_hh, Jordan's W_hy)
    multiplies every series' input or state once a step, 2 FLOPs a weight. Gate functions and
    other elementwise work are left out. ``train``: a backward does two products per forward
    one (the gradient of the input and of the weights), except W_ih's input gradient, which
    neither side computes (SeqbenchCase.train_step)."""
    total, first_input = _weights(model)
    return 2.0 * B * T * (3 * total - first_input if train else total)


def phase_flops(model, B, T, fused_input) -> dict:
    """FLOPs of each phase of a train step (PHASES but the rest): every weight but W_ih is
    used inside the time loop, once forward and once backward; where the input is fused
    (small and dense) the kernels also do W_ih's product (forward) and its weight gradient
    (backward), else GEMMs do; the other weight gradients are GEMMs."""
    total, first_input = _weights(model)
    per = 2.0 * B * T
    inside = total - first_input + (first_input if fused_input else 0)
    fwd = bwd = per * inside
    return {PHASES[0]: fwd, PHASES[1]: bwd, PHASES[2]: gemm_flops(model, B, T, True) - fwd - bwd}


def case_phase_flops(model, cell, shape) -> dict:
    """phase_flops of a ``seqbench bench`` case (B, T, I, H) in GFLOP, on the numba backend
    (its kernels fuse a dense input of at most FUSE_INPUT_MAX features)."""
    from seqbench.kernels import config

    from .backends.cell_kernels import CELLS

    B, T, I, _ = shape
    fused = cell in CELLS and CELLS[cell].fused_input and I <= config.FUSE_INPUT_MAX
    return {k: v / 1e9 for k, v in phase_flops(model, B, T, fused).items()}


def _weights(model):  # (weights of every matrix, of the first layer's W_ih)
    sd = model.state_dict()
    total = sum(np.size(v) for v in sd.values() if np.ndim(v) == 2)
    return total, sum(np.size(v) for k, v in sd.items() if k.startswith("weight_ih_l0"))


def gemm_peak(dtype, repeat=5) -> float:
    """GFLOP/s of the best of ``repeat`` square GEMMs (PEAK_N) through BLAS on seqbench's
    threads (cpu_runtime.gemm: rows split over the threads, one BLAS thread each): about the
    most the recurrent products of a kernel can reach on this machine."""
    from .backends.cpu_runtime import gemm

    n = PEAK_N[dtype]
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeat):
        time.sleep(SETTLE_S)
        gemm(a, b)
        t0 = time.perf_counter()
        gemm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


# ---------------------------------------------------------------- where a step's time goes


def phase_ms(step, repeat) -> dict:
    """Milliseconds per call of ``step`` in each phase (PHASES) and in all ("step"), the means
    of ``repeat`` calls, each after a pause and an untimed call (as seqbench.bench._timed)."""
    from .backends.cpu_runtime import phases

    spent, total = {}, 0.0
    for _ in range(repeat):
        time.sleep(SETTLE_S)
        step()
        with phases() as rec:
            t0 = time.perf_counter()
            step()
            total += time.perf_counter() - t0
        for name, s in rec.items():
            spent[_phase(name)] = spent.get(_phase(name), 0.0) + s
    out = {p: 1e3 * spent.get(p, 0.0) / repeat for p in PHASES[:3]}
    out["step"] = 1e3 * total / repeat
    out[PHASES[3]] = out["step"] - sum(out[p] for p in PHASES[:3])
    return out


def _phase(name):  # a recorder's name (a kernel's, or "gemm") -> its phase
    if name.endswith("_forward_rows"):
        return PHASES[0]
    if name.endswith("_backward_rows"):
        return PHASES[1]
    return PHASES[2] if name == "gemm" else PHASES[3]


def median_phases(runs) -> dict:
    """Per phase the median over the workers' ``phases_ms``."""
    return {k: statistics.median(r["phases_ms"][k] for r in runs) for k in runs[0]["phases_ms"]}


# ---------------------------------------------------------------- tables


def roofline_table(rows, peaks, threads, on):
    """GFLOP/s of each side's matrix products and their share of the GEMM peak per dtype;
    ``on``: the threads, CPU and conditions for the title (bench._on)."""
    from rich.table import Table

    peak_text = ", ".join(f"{v:.0f} GFLOP/s {k}" for k, v in peaks.items())
    table = Table(
        title=f"matrix-product rate, {on}",
        caption=f"GEMM peak here (BLAS, square, {threads} threads, best before and after): "
        f"{peak_text}; "
        "FLOPs of the matrix products only (gate functions left out)",
    )
    for col in ("cell", "B,T,I,H", "dtype"):
        table.add_column(col)
    for col in ("GFLOP fwd", "seqbench fwd", "torch fwd", "seqbench train", "torch train"):
        table.add_column(col, justify="right")
    for r in rows:
        peak = peaks[r["dtype"]]
        rates = [
            _rate(r[f"gflop_{kind}"], r[f"{side}_{kind}"], peak)
            for kind in ("fwd", "train")
            for side in ("seqbench", "torch")
        ]
        table.add_row(*_case(r), r["dtype"], f"{r['gflop_fwd']:.3g}", *rates)
    return table


def profile_table(rows, peaks, on, rest="Python, allocation, bias sums"):
    """Per case seqbench's train step by phase: ms, share of the step, and the phase's
    matrix-product rate (share of the GEMM peak) where the row counts its FLOPs; ``rest``: what
    the rest holds, for the caption."""
    from rich.table import Table

    table = Table(
        title=f"where seqbench's train step goes, {on}",
        caption="ms a step (share of the step), then the phase's matrix products in GFLOP/s "
        "(share of the GEMM peak); recurrences: the time loops' kernels, gate math included; "
        "GEMMs: the products outside the loop through BLAS (input projection, weight gradients; "
        f"in a whole step the head's where its products go to BLAS); rest: {rest}",
    )
    for col in ("cell", "B,T,I,H" if len(rows[0]["shape"]) == 4 else "B,T,H", "dtype"):
        table.add_column(col)
    for col in ("step ms", *PHASES):
        table.add_column(col, justify="right")
    for r in rows:
        ph = r.get("seqbench_phases")
        if not ph:
            continue
        cells = [_phase_cell(ph[p], ph["step"], r["phase_gflop"].get(p), peaks.get(r["dtype"]))
                 for p in PHASES]  # fmt: skip
        table.add_row(*_case(r), r["dtype"], f"{ph['step']:.2f}", *cells)
    return table


def _phase_cell(ms, step_ms, gflop, peak):  # "3.50 (25%) 96 GF/s (45%)"
    text = f"{ms:.2f} ({ms / step_ms:.0%})"
    if gflop is None or ms <= 0:
        return text
    rate = gflop / (ms / 1e3)
    return f"{text} {rate:.0f} GF/s ({rate / peak:.0%})"


def _case(r):
    return r["cell"], ",".join(map(str, r["shape"]))


def _rate(gflop, ms, peak):
    """'GFLOP/s (share of peak)' of gflop done in ms; '-' without a time."""
    if ms is None or ms <= 0:
        return "-"
    rate = gflop / (ms / 1e3)
    return f"{rate:.1f} ({rate / peak:.0%})"
