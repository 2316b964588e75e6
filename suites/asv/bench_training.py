"""Numerical regressions: the outcome of a fixed short copy-task run per cell and dtype.

``track_`` benchmarks record values, not times: the evaluation loss at the end and the
gradient ratio log10(||dL/dh_1|| / ||dL/dh_T||) of the last profile. A kernel change that
alters numerics (an approximation, a reordering gone wrong) shows as a step in these series.
The runs are seeded; the same build gives the same numbers.
"""

from __future__ import annotations

from .common import CELLS, DTYPES, set_threads

RUN = {  # small enough for seconds per run once the kernels are compiled
    "task": "copy-task",
    "seq_len": 10,
    "hidden_size": 32,
    "batch_size": 16,
    "steps": 60,
    "lr": 3e-3,
    "optimizer": "adam",
    "clip": "norm:1",
    "seed": 0,
    "eval_every": 60,
    "eval_batches": 2,
    "profile_every": 20,
    "stop_when_solved": False,
}


def _records():
    try:
        from seqbench.config import RunConfig
        from seqbench.train import run
    except ImportError:  # the training loop is not in this version of seqbench
        return None
    set_threads()
    return {
        (cell, dtype): run(RunConfig(model=cell, dtype=dtype, **RUN)).record
        for cell in CELLS
        for dtype in DTYPES
    }


class CopyTaskShortRun:
    params = [CELLS, DTYPES]
    param_names = ["cell", "dtype"]
    timeout = 1200

    def setup_cache(self):
        return _records()

    def setup(self, records, cell, dtype):
        if records is None:
            raise NotImplementedError("seqbench.train is not available")

    def track_final_loss(self, records, cell, dtype):
        return records[cell, dtype]["final_loss"]

    track_final_loss.unit = "nats"

    def track_final_loss_over_baseline(self, records, cell, dtype):
        r = records[cell, dtype]
        return r["final_loss"] / r["baseline_loss"]

    track_final_loss_over_baseline.unit = "ratio"

    def track_grad_ratio_log10(self, records, cell, dtype):
        return records[cell, dtype]["grad_ratio_log10"]

    track_grad_ratio_log10.unit = "log10"
