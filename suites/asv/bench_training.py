"""Numerical regressions: the outcome of a fixed short copy-task run per cell and dtype.

``track_`` benchmarks record values, not times: the evaluation loss at the end and the
gradient ratio log10(||dL/dh_1|| / ||dL/dh_T||) of the last profile. A kernel change that
alters numerics (an approximation, a reordering gone wrong) shows as a step in these series.
The runs are seeded; the same build gives the same numbers.

``WholeTrainStep`` (copy-task) and ``CharLMTrainStep`` (char-lm) time what a run spends its
steps on: the whole training step, numba against the torch backend, each in asv's own process
per parameter set.
"""

from __future__ import annotations

from .common import CELLS, DTYPES, SMOKE, set_threads

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
    set_threads("numba")
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


def _warm_step(task, cell, backend, run, smoke_run):
    """One ``Trainer.step`` on a fresh batch of ``task`` (``run``'s shape, ``smoke_run``'s
    under SMOKE), as ``seqbench run`` takes it, called twice: compiled or loaded, allocated."""
    try:
        from seqbench.config import RunConfig
        from seqbench.errors import ConfigError
        from seqbench.train import Trainer
    except ImportError:
        raise NotImplementedError("seqbench.train is not available") from None
    if not hasattr(Trainer, "step"):
        raise NotImplementedError("this version's Trainer has no step()")
    set_threads(backend)
    try:
        cfg = RunConfig(task=task, model=cell, backend=backend, **(smoke_run if SMOKE else run))
        cfg = cfg.validated()
    except ConfigError as err:  # torch not installed, or no torch backend in this version
        raise NotImplementedError(str(err)) from None
    tr = Trainer(cfg)

    def step():
        return tr.step(tr.task.generate(tr.data_rng, cfg.batch_size))

    step()  # compiles (or loads) the kernels; torch's first allocation
    step()
    return step


class WholeTrainStep:
    """One training step as ``seqbench run`` takes it (``Trainer.step`` on a fresh batch:
    batch, forward, head, loss, BPTT, clip norm:1, Adam lr 0.01) on copy-task T=20, B=64,
    H=128, float32, on the numba backend and on the torch backend (the plain torch loop a user
    would write). The backend is a parameter, so asv times each in its own process: the two
    libraries' thread pools never run beside each other (``seqbench bench --train-step``)."""

    params = [CELLS, ["numba", "torch"]]
    param_names = ["cell", "backend"]
    timeout = 600
    task = "copy-task"
    run = {"seq_len": 20, "batch_size": 64, "hidden_size": 128}
    smoke = {"seq_len": 5, "batch_size": 4, "hidden_size": 16}

    def setup(self, cell, backend):
        self.step = _warm_step(self.task, cell, backend, self.run, self.smoke)

    def time_train_step(self, cell, backend):
        self.step()

    def peakmem_train_step(self, cell, backend):
        self.step()


class CharLMTrainStep(WholeTrainStep):
    """``WholeTrainStep`` on char-lm (issue 22): the shipped corpus (a vocabulary of 96
    characters, one-hot in, 96-way softmax head out, cross-entropy at every step), chunks of
    100 characters, B=32 streams, H=256, float32; each batch continues the streams of the
    last, so its state is carried in (no gradient crosses over), as char-rnn trains. Against
    the torch backend: torch.nn.LSTM/GRU/RNN, nn.Linear, cross_entropy, clip, Adam."""

    task = "char-lm"
    run = {"seq_len": 100, "batch_size": 32, "hidden_size": 256}
