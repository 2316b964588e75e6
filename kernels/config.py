"""Compilation and launch settings of every kernel, in one place."""

import os


def env_number(name: str, default, kind=int, example=None):
    """The environment variable ``name`` as ``kind`` (``default`` when unset); a value that
    is not one raises a one-line ValueError, which the harness reports as a ConfigError (exit
    code 2 from the CLI). The kernels know nothing of the harness, so not ConfigError here."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(
            f"environment variable {name}={text!r} is not {what}; unset it or set e.g. "
            f"{name}={default if example is None else example}"
        ) from None


# fastmath lets LLVM reassociate and vectorise the gate loops; NaN/Inf checks stay in the
# harness (the divergence guard), so the 'nnan'/'ninf' flags are left off on purpose.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# On-disk cache of compiled kernels: a cold start compiles once per dtype, later processes
# load in milliseconds. SEQBENCH_NO_CACHE=1 disables it (e.g. read-only installs).
CACHE = os.environ.get("SEQBENCH_NO_CACHE", "0") != "1"

# ---- CPU kernels (kernels/cpu/) and their driver (seqbench/backends/cpu_runtime.py).

# float32 gates use the vectorisable approximations of kernels/_math.py (error bounds stated
# there, tested in tests/test_fastmath.py); float64 always uses the exact functions.
# SEQBENCH_EXACT_ACTIVATIONS=1 makes float32 exact too. numba's disk cache keys on the
# kernel's own source file only, not on this flag, so the exact mode never uses the cache.
FAST_FLOAT32 = os.environ.get("SEQBENCH_EXACT_ACTIVATIONS", "0") != "1"

# SEQBENCH_FAST_FLOAT64=1: float64 gates use the branch-free float64 functions of
# kernels/_math.py too (errors at libm's level, a few ulp; tested), which vectorise where
# libm's scalar calls (~15-35 ns each) dominate a float64 step. Off by default: float64 is
# the precision of gradient checks and reference comparisons, so it stays exact unless asked.
FAST_FLOAT64 = os.environ.get("SEQBENCH_FAST_FLOAT64", "0") == "1"


def gate_functions() -> str:
    """Which gate functions the kernels compile with, per dtype (for tables' captions)."""
    f32 = "approximate" if FAST_FLOAT32 else "exact"
    f64 = "approximate (SEQBENCH_FAST_FLOAT64=1)" if FAST_FLOAT64 else "exact"
    return f"float32 {f32}, float64 {f64}"


# numpy's error model: x / 0 gives inf or NaN (caught by the divergence guard) instead of a
# raise; Python's model puts a zero test before every division, which stops vectorisation.
ERROR_MODEL = "numpy"

# Threads over the batch (seqbench.backends.cpu_runtime): each thread takes a block of rows
# through all T steps, so no thread waits for another inside the time loop. Plain threads
# running GIL-free kernels, not numba's prange: numba's OpenMP layer loads the system's
# libgomp.so.1, torch ships its own under the same soname, and in a process with both the
# first one loaded serves both; torch's per-step GRU then ran 30-40x slower (or seqbench's
# kernels 2x slower, the other way round). 0: every CPU this process may use.
THREADS = env_number("SEQBENCH_THREADS", 0)

# The recurrent product of a block of rows, rows x K @ K x N, goes to BLAS (one np.dot per
# step, BLAS held to one thread) when rows * K * N >= this; below it the register-tiled matmul
# of kernels/cpu/_simd.py does it (no call overhead). Measured on one thread (Emerald Rapids,
# float32, AVX-512 OpenBLAS 0.3.30), tiles vs BLAS: 16 x 128 @ 128 x 512, 15-21 vs 33-35 us;
# 64 x 512 @ 512 x 2048, 1.3-2.2 vs 1.4-2.3 ms (even, within this machine's noise). So the
# tiles run every size by default; the threshold stays for CPUs where BLAS is far ahead.
BLAS_MIN_MACS = env_number("SEQBENCH_BLAS_MIN_MACS", 1 << 40)

# An input of at most this many features is projected inside the recurrence, step by step
# (x_t W_ih^T added to the recurrent product), instead of by one GEMM before it: no
# (T, B, G) x_proj to write and read back. Larger inputs keep the hoisted GEMM.
FUSE_INPUT_MAX = env_number("SEQBENCH_FUSE_INPUT_MAX", 32)

# A per-step product of the whole batch, B x K @ K x N, at least this big runs as one block
# with one BLAS call per step on BLAS's own threads instead of one block of rows per thread.
# Off by default: at (128, 100, 64, 512) float32 on 2 threads, LSTM forward took 374 ms that
# way against 278-287 ms in two blocks (which also split the gate math between the threads).
BLAS_THREADED_MACS = env_number("SEQBENCH_BLAS_THREADED_MACS", 1 << 40)

# PAUSEs a thread spins at the reservoir kernels' barrier (kernels/cpu/_sync.py) before it
# gives its core away (sched_yield) at every further check: a partner that the OS has taken
# off its core then gets one back instead of waiting out a spinner's time slice.
BARRIER_SPINS_DEFAULT = 256
BARRIER_SPINS = env_number("SEQBENCH_BARRIER_SPINS", BARRIER_SPINS_DEFAULT)

# numba's disk cache keys on a kernel's own source file, not on the values above: a process
# that changes a compile-time one through the environment compiles afresh, caching nothing.
_COMPILE_TIME_DEFAULTS = {
    "SEQBENCH_EXACT_ACTIVATIONS": "0",
    "SEQBENCH_FAST_FLOAT64": "0",
    "SEQBENCH_BLAS_MIN_MACS": str(1 << 40),
    "SEQBENCH_BARRIER_SPINS": str(BARRIER_SPINS_DEFAULT),
}
CACHE = CACHE and all(os.environ.get(k, v) == v for k, v in _COMPILE_TIME_DEFAULTS.items())

# CUDA launch geometry; tests shrink it so that tiny shapes still span several blocks.
THREADS_PER_BLOCK = env_number("SEQBENCH_THREADS_PER_BLOCK", 128)

# ---- CUDA kernels (kernels/cuda/), read at call time so tests can patch them.
# The recurrence runs as one persistent cooperative kernel (grid-wide barrier per step, each
# block's slice of W_hh in shared memory) when that fits, else as one launch per step.
# "auto" picks the persistent kernel where possible; "persistent" insists on it (an error where
# it cannot run); "per-step" always launches per step.
CUDA_RECURRENCE = os.environ.get("SEQBENCH_CUDA_RECURRENCE", "auto")

# Persistent kernel: blocks per streaming multiprocessor (the grid is at most this times the SM
# count, and never more than the cooperative-launch limit), and the shared memory one block may
# use without the opt-in attribute numba cannot set (48 KiB on every GPU since Kepler).
CUDA_PERSISTENT_BLOCKS_PER_SM = env_number("SEQBENCH_CUDA_BLOCKS_PER_SM", 1)
CUDA_SHARED_BYTES = env_number("SEQBENCH_CUDA_SHARED_BYTES", 48 * 1024)

# Up to this many threads (a warp) split one dot product of the recurrence when the batch is
# too small to fill a block with (batch row, unit) pairs; must be a power of two.
CUDA_MAX_SPLIT = 32

# Lanes that split one CSR row of the persistent reservoir kernel; 0 chooses them per call
# from the batch and the grid (kernels/cuda/esn.py). Tests set it to exercise the split.
CUDA_ESN_LANES = env_number("SEQBENCH_CUDA_ESN_LANES", 0)

# Square output tile of the GEMM kernel (input projection, weight gradients); each thread
# computes a 2x2 micro-tile, so a tile of 32 runs 256 threads. Must be even.
GEMM_TILE = env_number("SEQBENCH_GEMM_TILE", 32)
