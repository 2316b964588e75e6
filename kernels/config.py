"""Compilation and launch settings of every kernel, in one place."""

import os

# fastmath lets LLVM reassociate and vectorise the gate loops; NaN/Inf checks stay in the
# harness (the divergence guard), so the 'nnan'/'ninf' flags are left off on purpose.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# On-disk cache of compiled kernels: a cold start compiles once per dtype, later processes
# load in milliseconds. SEQBENCH_NO_CACHE=1 disables it (e.g. read-only installs).
CACHE = os.environ.get("SEQBENCH_NO_CACHE", "0") != "1"

# CUDA launch geometry; tests shrink it so that tiny shapes still span several blocks.
THREADS_PER_BLOCK = int(os.environ.get("SEQBENCH_THREADS_PER_BLOCK", "128"))
