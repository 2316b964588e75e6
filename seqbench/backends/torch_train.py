"""The torch backend: the whole training step in torch, over the Trainer's own arrays.

``seqbench run TASK --backend torch`` goes through the one training loop (seqbench.train), with
the same batches, seeds and initial weights as the numba backend; only ``Trainer.step`` runs
here: torch.nn.RNN / LSTM / GRU (batch_first, stacked, bidirectional as the config asks),
torch's linear head, torch's loss, torch's clipping and torch's optimizer: the plain torch loop
a user would write, so the runs table compares implementations on one task.

Shared memory, not copies: every torch parameter is ``torch.from_numpy`` of the seqbench
model's (or head's) array, whose names already follow torch's state_dict. Torch's optimizer
updates them in place, so what reads the arrays between steps (evaluation, the float64
gradient probe, the W_hh spectra, the saved weights) sees torch's current weights with nothing
copied back. Those readers compute with the numba kernels (``LAYERS`` here are numba's), so
the evaluation and the probe mean exactly what they mean on the numba backend.

Matched to seqbench's side (seqbench.tasks.base, seqbench.optim, seqbench.clipping):
    loss       classification: cross-entropy, mean over every labelled position (per step or
               per sequence); regression: MSE, mean over every element
    head       per step on y, or on y[:, -1] (readout "last") / y.mean(1) (readout "mean")
    optimizer  torch.optim.SGD / Adam / RMSprop with seqbench's hyperparameters (momentum 0.9,
               betas (0.9, 0.999), alpha 0.99, eps 1e-8 unless the run set others)
    clipping   norm:C  torch.nn.utils.clip_grads_with_norm_ on the pre-clip norm (accumulated
               in float64, as seqbench's); torch scales by C / (norm + 1e-6), seqbench by
               C / norm: a 1e-6 relative difference on clipped steps
               value:C torch.nn.utils.clip_grad_value_
    tbptt      chunks of ``tbptt`` steps, the state carried detached: no gradient crosses
The training gradient's ||dL/dh_t|| per layer is not available from torch's fused modules:
``step`` returns None for it and a torch run writes no profile rows (like the reservoir's);
the probe's summaries (grad_ratio_log10 in the history and the record) are there as on numba.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .numba_cpu import LAYERS as _NUMBA_LAYERS

MODULES = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}  # torch.nn class per cell
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}  # torch.optim class

# Cells torch has; a model outside a run's step (evaluation, probe) computes with numba's.
LAYERS = {cell: _NUMBA_LAYERS[cell] for cell in MODULES}


def _torch():
    import torch

    return torch


class TorchStep:
    """The whole training step of a Trainer (model, head, task, optimizer, clip) in torch.

    ``step(batch) -> (loss, pre-clip norm, clipped, dh_norms (None), diverged)``."""

    def __init__(self, trainer):
        torch = self.torch = _torch()
        from .cpu_runtime import get_num_threads

        torch.set_num_threads(get_num_threads())  # the threads the numba backend would use
        model, head, task, cfg = trainer.model, trainer.head, trainer.task, trainer.cfg
        if type(task).loss.__qualname__ != "Task.loss":
            raise ConfigError(f"task {task.name!r} has its own loss; backend 'torch' has no twin")
        self.dtype = np.dtype(trainer.dtype)
        kw = {"nonlinearity": model.options["nonlinearity"]} if model.cell == "elman" else {}
        self.rnn = getattr(torch.nn, MODULES[model.cell])(
            model.input_size, model.hidden_size, num_layers=model.num_layers,
            bidirectional=model.bidirectional, batch_first=True,
            dtype=getattr(torch, self.dtype.name), **kw,
        )  # fmt: skip
        _share(self.rnn, model.params)
        w = head.params["head.weight"]
        self.head = torch.nn.Linear(w.shape[1], w.shape[0], dtype=self.rnn.weight_ih_l0.dtype)
        _share(self.head, {k.removeprefix("head."): v for k, v in head.params.items()})
        self.per_step, self.readout = head.per_step, head.readout
        self.classify = task.kind == "classification"
        self.params = [*self.rnn.parameters(), *self.head.parameters()]
        opt = trainer.optimizer
        self.opt = getattr(torch.optim, OPTIMIZERS[opt.name])(self.params, **opt.hyperparameters())
        self.clip, self.tbptt = trainer.clip, cfg.tbptt
        self._state = None  # final state of the last batch, for a batch that continues it

    def _forward(self, x, state):
        """(B, T, F) outputs; full BPTT, or chunks with the state carried but not its grad."""
        if self.tbptt is None:
            return self.rnn(x, state)
        outs = []
        for start in range(0, x.shape[1], self.tbptt):
            y, state = self.rnn(x[:, start : start + self.tbptt], state)
            outs.append(y)
            state = _detached(state)
        return self.torch.cat(outs, dim=1), state

    def _loss(self, y, target):
        F = self.torch.nn.functional
        if not self.per_step:
            y = y[:, -1] if self.readout == "last" else y.mean(dim=1)
        out = self.head(y)
        t = self.torch.from_numpy(np.asarray(target))
        if self.classify:
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), t.reshape(-1).long())
        return F.mse_loss(out, t.to(out.dtype))

    def step(self, batch):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch.x, dtype=self.dtype))
        state = self._state if getattr(batch, "continues", False) else None
        for p in self.params:
            p.grad = None
        y, state_n = self._forward(x, state)
        loss = self._loss(y, batch.y)
        loss.backward()
        self._state = _detached(state_n)
        value = float(loss.item())
        grads = [p.grad for p in self.params]
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
        )
        if not (math.isfinite(value) and math.isfinite(float(norm))):
            return value, math.nan, False, None, True
        clipped = False
        if self.clip.kind == "norm":
            clipped = float(norm) > self.clip.threshold
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip.threshold, norm)
        elif self.clip.kind == "value":
            clipped = max(float(g.abs().max()) for g in grads) > self.clip.threshold
            torch.nn.utils.clip_grad_value_(self.params, self.clip.threshold)
        self.opt.step()
        return value, float(norm), clipped, None, False


def _share(module, arrays: dict) -> None:
    """Replace ``module``'s parameters by tensors over ``arrays`` (same names, same memory)."""
    torch = _torch()
    names = {n for n, _ in module.named_parameters()}
    if names != set(arrays):
        raise ConfigError(f"torch's {type(module).__name__} has no twin of {sorted(arrays)}")
    for name, a in arrays.items():
        setattr(module, name, torch.nn.Parameter(torch.from_numpy(a)))


def _detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


STEP = TorchStep
