"""Optimizers over a model's parameter dict: SGD (momentum), Adam, RMSprop, as torch.optim.

    opt = make_optimizer("adam", model.params, lr=1e-3)
    opt.step(model.params, grads)     # in place; grads keys outside params ("input") ignored

State buffers are allocated once, zeros in each parameter's shape and dtype, and named as
torch's ``optimizer.state`` (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``,
``square_avg``). Hyperparameters are validated here, at the edge; the kernels never see a
bad value. ``step`` reads the arrays from the dict it is given each time, so a
``load_state_dict`` that replaced them between steps is honoured.

Over one flat buffer (the training loop's form): ``FlatParams(params, ...)`` moves arrays
into one contiguous array and leaves views of it in their dicts; an optimizer built over
those views keeps its state flat too, and ``step_flat(p, g)`` updates everything in one
kernel call, with arithmetic element for element the same as ``step``'s.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, check_number, check_positive

_FLOAT_DTYPES = (np.float32, np.float64)


def _kernels():
    from .kernels.cpu import optim  # numba is imported on first use only

    return optim


def _unit(name: str, value) -> float:
    """A value in [0, 1): a decay rate or momentum."""
    value = check_number(name, value)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return value


class Optimizer:
    """Base: per-parameter state buffers and the shared checks of ``step``."""

    name = ""
    buffers: tuple = ()  # state names, one zero array per parameter each
    defaults: dict = {}

    def __init__(self, params: dict, lr, **hyper):
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(
                f"{self.name} has no hyperparameter {unknown[0]!r}; allowed: {allowed}"
            )
        self.lr = check_positive("lr", lr)
        self._configure(**{**self.defaults, **hyper})
        if not hasattr(params, "items") or not params:
            raise ConfigError("params must be a non-empty dict of name -> array")
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.type not in _FLOAT_DTYPES:
                raise ConfigError(f"params[{k!r}] must be a float32 or float64 array")
        # State of every parameter in one flat buffer per name where they share a dtype
        # (step_flat); state[k][name] are views of it, in the order of params.
        self.size = sum(p.size for p in params.values())
        dtypes = {p.dtype for p in params.values()}
        self._flat = None
        if len(dtypes) == 1:
            (dt,) = dtypes
            self._flat = {b: np.zeros(self.size, dtype=dt) for b in self.buffers}
        self.state, start = {}, 0
        for k, p in params.items():
            end = start + p.size
            self.state[k] = {
                b: np.zeros(p.shape, p.dtype) if self._flat is None
                else self._flat[b][start:end].reshape(p.shape)
                for b in self.buffers
            }  # fmt: skip
            start = end
        self.steps = 0

    def _configure(self, **hyper) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def step(self, params: dict, grads: dict) -> None:
        """One update of every parameter given at construction, in place.

        Everything is checked before anything changes, so a bad call leaves the model and
        the state as they were.
        """
        flats = [self._views(k, bufs, params, grads) for k, bufs in self.state.items()]
        self.steps += 1
        for arrays in flats:
            self._update(*arrays)

    def step_flat(self, p: np.ndarray, g: np.ndarray) -> None:
        """``step`` over one flat buffer: p holds every parameter given at construction, in
        their order (their arrays were views of it: ``one_buffer``), g their gradients."""
        if self._flat is None:
            raise ValueError("step_flat needs parameters of one dtype")
        dt = self._flat[self.buffers[0]].dtype
        for name, a in (("p", p), ("g", g)):
            if a.shape != (self.size,) or a.dtype != dt or not a.flags.c_contiguous:
                raise ValueError(
                    f"{name} is {a.dtype}{a.shape}; step_flat needs C-contiguous {dt}({self.size},)"
                )
        self.steps += 1
        self._update(p, g, *(self._flat[b] for b in self.buffers))

    def _views(self, k: str, bufs: dict, params: dict, grads: dict) -> list:
        """1-D views of (p, g, *state) for the kernel: one compilation per dtype, any shape."""
        if k not in params or k not in grads:
            raise KeyError(
                f"parameter {k!r} is missing from {'params' if k not in params else 'grads'}"
            )
        p, first = params[k], bufs[self.buffers[0]]
        if p.shape != first.shape or p.dtype != first.dtype or not p.flags.c_contiguous:
            raise ValueError(
                f"params[{k!r}] is {p.dtype}{p.shape} (C-contiguous {p.flags.c_contiguous}); "
                f"the optimizer was built for {first.dtype}{first.shape}"
            )
        g = np.ascontiguousarray(grads[k], dtype=p.dtype)
        if g.shape != p.shape:
            raise ValueError(f"grads[{k!r}] has shape {g.shape}, params[{k!r}] {p.shape}")
        return [a.reshape(-1) for a in (p, g, *(bufs[b] for b in self.buffers))]

    def _update(self, p, g, *bufs) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """torch.optim.SGD with dampening 0 and no weight decay."""

    name = "sgd"
    buffers = ("momentum_buffer",)
    defaults = {"momentum": 0.9, "nesterov": False}

    def _configure(self, momentum, nesterov):
        self.momentum = _unit("momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ConfigError(f"nesterov must be true or false, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ConfigError("nesterov needs momentum > 0")
        self.nesterov = bool(nesterov)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, p, g, buf):
        _kernels().sgd_update(p, g, buf, self.lr, self.momentum, self.nesterov)


class Adam(Optimizer):
    """torch.optim.Adam with bias correction, no weight decay, no amsgrad."""

    name = "adam"
    buffers = ("exp_avg", "exp_avg_sq")
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8}

    def _configure(self, betas, eps):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_unit("beta1", betas[0]), _unit("beta2", betas[1]))
        self.eps = check_positive("eps", eps)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps}

    def _update(self, p, g, m, v):
        b1, b2 = self.betas
        _kernels().adam_update(p, g, m, v, self.lr, b1, b2, self.eps, self.steps)


class RMSprop(Optimizer):
    """torch.optim.RMSprop's default form: no momentum, not centred, no weight decay."""

    name = "rmsprop"
    buffers = ("square_avg",)
    defaults = {"alpha": 0.99, "eps": 1e-8}

    def _configure(self, alpha, eps):
        self.alpha = _unit("alpha", alpha)
        self.eps = check_positive("eps", eps)

    def hyperparameters(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps}

    def _update(self, p, g, sq):
        _kernels().rmsprop_update(p, g, sq, self.lr, self.alpha, self.eps)


OPTIMIZERS = {c.name: c for c in (SGD, Adam, RMSprop)}


def one_buffer(*dicts: dict) -> np.ndarray:
    """Move the arrays of ``dicts`` (name -> array, one dtype) into one contiguous buffer,
    in order: each entry becomes a C-contiguous view of it, same shape and values. Returns
    the buffer; whoever reads the dicts afterwards reads (and writes) the buffer."""
    arrays = [a for d in dicts for a in d.values()]
    flat = np.empty(sum(a.size for a in arrays), dtype=np.result_type(*arrays))
    for d, views in zip(dicts, _split(flat, dicts), strict=True):
        for k, view in views.items():
            view[...] = d[k]
            d[k] = view
    return flat


def _split(flat: np.ndarray, dicts) -> list:
    """Per dict, {name: view of flat shaped as its array}, one after another."""
    out, start = [], 0
    for d in dicts:
        views = {}
        for k, a in d.items():
            views[k] = flat[start : start + a.size].reshape(a.shape)
            start += a.size
        out.append(views)
    return out


class FlatParams:
    """Parameter dicts moved into one buffer ``p`` (``one_buffer``) and a gradient buffer
    ``g`` of the same layout, so that the norm, clipping and the optimizer are one pass."""

    def __init__(self, *dicts: dict):
        self.dicts = dicts
        self.p = one_buffer(*dicts)
        self.views = {k: v for d in dicts for k, v in d.items()}
        self.g = np.zeros_like(self.p)
        self.grads = {k: v for d in _split(self.g, dicts) for k, v in d.items()}

    def gather(self, grads: dict) -> np.ndarray:
        """``g`` holding grads[k] for every parameter."""
        for k, view in self.grads.items():
            view[...] = grads[k]
        return self.g

    def adopt(self, *also: dict) -> None:
        """An array that replaced a view (a load_state_dict) is copied into the view, which
        takes its place again, in the dicts given at construction and in ``also``."""
        for d in (*self.dicts, *also):
            for k, a in d.items():
                if a is not self.views[k]:
                    self.views[k][...] = a
                    d[k] = self.views[k]


def make_optimizer(name: str, params: dict, lr, **hyper) -> Optimizer:
    """The optimizer ``name`` over ``params`` (name -> array).

    ``hyper`` overrides ``OPTIMIZERS[name].defaults``: sgd momentum=0.9, nesterov=False;
    adam betas=(0.9, 0.999), eps=1e-8; rmsprop alpha=0.99, eps=1e-8.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ConfigError(f"optimizer {name!r} is not known; use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr, **hyper)
