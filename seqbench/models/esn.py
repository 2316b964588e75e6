"""Echo-state network: a fixed random reservoir of leaky units; only a linear readout learns
(in closed form, seqbench.readout), so there is no backward pass.

    x_t = (1 - a) x_{t-1} + a f(W x_{t-1} + W_in u_t + b [+ W_fb y_{t-1}]),  f = tanh | identity

Parameter names follow the model contract: ``weight_ih_l0`` = W_in (N, I), ``weight_hh_l0`` =
W (N, N; a dense ndarray or a scipy.sparse matrix), ``bias_hh_l0`` = b (N,), and with output
feedback ``weight_fb_l0`` = W_fb (N, F). ReservoirPy's ``Reservoir(W=W, Win=Win, bias=bias,
lr=a)`` runs the same equation: its W, Win and bias load with ``load_state_dict`` as they are.

The activation ``linear`` is another name of ``identity`` (resolved by the build).

Construction (reproducible from ``seed``; each matrix has its own child seed, so changing the
input size leaves W unchanged): W has round(connectivity N^2) nonzeros at uniformly random
positions, values N(0, 1) or U(-1, 1), rescaled to ``spectral_radius`` with an ARPACK estimate
at a loose tolerance (a few seconds at N = 5000, 2.5M nonzeros; exact eigenvalues for
N <= 256); ``orthogonal``: instead a random orthogonal matrix (QR of an N(0, 1) matrix, dense)
times ``spectral_radius``, the well-conditioned W of linear memory-capacity studies. W_in:
+-input_scaling with equal odds (ReservoirPy's default) at ``input_connectivity``; b:
U(-1, 1) * bias_scaling; W_fb: U(-1, 1) * feedback_scaling (``output_feedback``: F = I, the
generated series fed back; seqbench.esn_fit then fits with teacher forcing).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse_mod
from scipy.sparse.linalg import ArpackNoConvergence, eigs

from ..backends import BACKENDS, reservoir_functions
from ..errors import ConfigError, check_number, check_positive
from .cells import check_size
from .esn_options import (  # noqa: F401  (FIT_OPTIONS: re-exported, as before)
    ACTIVATION_NAMES,
    ACTIVATIONS,
    BUILD_ONLY,
    DISTRIBUTIONS,
    FIT_OPTIONS,
    OPTIONS,
)
from .recurrent import DTYPES, Tape, check_dtype

_EXACT_EIG_MAX = 256  # below this, np.linalg.eigvals is cheap and exact
_MAX_NNZ = 2**32 - 1  # uint32 CSR indices in the kernel


# ------------------------------------------------------------------ validation


def _check_unit_interval(name, value, *, closed_low=False) -> float:
    """A float in (0, 1] (or [0, 1] with closed_low); ConfigError naming the argument."""
    v = check_number(name, value)
    low_ok = v >= 0.0 if closed_low else v > 0.0
    if not (low_ok and v <= 1.0):
        interval = "[0, 1]" if closed_low else "(0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return v


def _check_nonnegative(name, value) -> float:
    v = check_number(name, value)
    if v < 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return v


def _check_choice(name, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not known; use one of {', '.join(choices)}")
    return value


# ------------------------------------------------------------------ construction


def _sample_positions(rng, total: int, count: int) -> np.ndarray:
    """``count`` distinct sorted integers drawn uniformly from [0, total).

    Draw with replacement, drop repeats, then keep a uniform subset: exact count, O(count)
    memory (Generator.choice without replacement is ~10x slower at 2.5M of 25M).
    """
    if count >= total:
        return np.arange(total, dtype=np.int64)
    pos = np.empty(0, dtype=np.int64)
    while pos.size < count:
        need = count - pos.size
        extra = rng.integers(0, total, size=need + need // 8 + 16, dtype=np.int64)
        pos = np.concatenate([pos, extra])
        pos.sort()
        pos = pos[np.concatenate(([True], pos[1:] != pos[:-1]))]
    if pos.size > count:
        pos = np.sort(rng.choice(pos, size=count, replace=False))
    return pos


def _values(rng, n: int, distribution: str) -> np.ndarray:
    if distribution == "normal":
        return rng.standard_normal(n)
    if distribution == "sign":
        return rng.choice(np.array([-1.0, 1.0]), size=n)
    return rng.uniform(-1.0, 1.0, n)


def random_matrix(rng, shape, density, distribution, *, as_sparse) -> object:
    """(rows, cols) matrix with round(density * size) nonzeros at uniform random positions."""
    rows, cols = shape
    count = int(round(density * rows * cols))
    pos = _sample_positions(rng, rows * cols, count)
    vals = _values(rng, pos.size, distribution)
    r, c = np.divmod(pos, cols)
    if as_sparse:
        indptr = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
        return sparse_mod.csr_array((vals, c, indptr), shape=shape)
    out = np.zeros(shape)
    out[r, c] = vals
    return out


def estimate_spectral_radius(w) -> float:
    """max |eigenvalue| of a dense or sparse square matrix.

    Exact for N <= 256; above, ARPACK with k = 10 Ritz values, ncv = 60 and tol = 1e-3: the
    largest moduli of a random matrix crowd the edge of its spectrum, and asking for several
    finds the largest reliably (relative error ~1e-7 at N = 5000) at a fraction of the cost
    of ReservoirPy's k = 1, tol = 0 call.
    """
    n = w.shape[0]
    if n <= _EXACT_EIG_MAX:
        dense = w.toarray() if sparse_mod.issparse(w) else np.asarray(w)
        return float(np.max(np.abs(np.linalg.eigvals(dense)))) if n else 0.0
    op = sparse_mod.csr_array(w) if sparse_mod.issparse(w) else np.asarray(w)
    k = min(10, n - 2)
    ncv = min(n - 1, max(60, 2 * k + 1))
    v0 = np.ones(n)
    try:
        vals = eigs(op, k=k, which="LM", ncv=ncv, tol=1e-3, v0=v0, return_eigenvectors=False)
    except ArpackNoConvergence as err:  # keep the Ritz values that did converge, if any
        vals = err.eigenvalues
        if vals.size == 0:
            vals = eigs(op, k=k, which="LM", ncv=ncv, v0=v0, return_eigenvectors=False)
    return float(np.max(np.abs(vals)))


# ------------------------------------------------------------------ the model


class EchoStateNetwork:
    """Reservoir with the model contract: forward(x, h0) -> (states (B, T, N), tape)."""

    cell = "esn"
    num_layers = 1
    bidirectional = False
    num_directions = 1

    def __init__(self, input_size, hidden_size, *, dtype, backend, seed, options, params):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.dtype = dtype
        self.backend = backend
        self.seed = seed
        self.options = options
        self.feedback_size = options["feedback_size"]
        self.np_dtype = DTYPES[dtype]
        self._reservoir = reservoir_functions(backend)
        self.params = {}
        self._set_params(params)

    # ------------------------------------------------------------- structure

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def output_size(self) -> int:
        """Features of forward's output: the N reservoir states."""
        return self.hidden_size

    @property
    def sparse(self) -> bool:
        return sparse_mod.issparse(self.params["weight_hh_l0"])

    @property
    def parameters(self) -> int:
        """Number of stored (fixed) weights: nonzeros of W, all of W_in, b and W_fb."""
        w = self.params["weight_hh_l0"]
        n_w = w.nnz if sparse_mod.issparse(w) else w.size
        return int(n_w + sum(v.size for k, v in self.params.items() if k != "weight_hh_l0"))

    def recurrent_matrices(self) -> dict:
        return {"weight_hh_l0": self.params["weight_hh_l0"]}

    def _shapes(self) -> dict:
        N, I, F = self.hidden_size, self.input_size, self.feedback_size
        shapes = {"weight_ih_l0": (N, I), "weight_hh_l0": (N, N), "bias_hh_l0": (N,)}
        if F:
            shapes["weight_fb_l0"] = (N, F)
        return shapes

    # ------------------------------------------------------------- state_dict

    def state_dict(self) -> dict:
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, sd) -> None:
        """Load arrays named as state_dict(); weight_hh_l0 may be dense or scipy.sparse (its
        format then decides the kernel). ReservoirPy's bias of shape (N, 1) is accepted.
        Validates everything before changing anything."""
        if not hasattr(sd, "keys"):
            raise ConfigError("state_dict must be a mapping of parameter name -> array")
        shapes = self._shapes()
        missing = sorted(set(shapes) - set(sd))
        unexpected = sorted(set(sd) - set(shapes))
        if missing:
            raise ConfigError(f"state_dict is missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            raise ConfigError(f"state_dict has unexpected key {unexpected[0]!r}")
        new = {}
        for k, shape in shapes.items():
            v = sd[k]
            if sparse_mod.issparse(v) and k != "weight_hh_l0":
                v = v.toarray()
            if not sparse_mod.issparse(v):
                v = np.asarray(v)
                if k == "bias_hh_l0" and v.shape == (shape[0], 1):
                    v = v[:, 0]
            if v.shape != shape:
                raise ConfigError(f"state_dict[{k!r}] has shape {v.shape}, expected {shape}")
            data = v.data if sparse_mod.issparse(v) else v
            if not np.issubdtype(data.dtype, np.number) or np.issubdtype(
                data.dtype, np.complexfloating
            ):
                raise ConfigError(f"state_dict[{k!r}] is not real-valued (dtype {data.dtype})")
            if not np.all(np.isfinite(data)):
                raise ConfigError(f"state_dict[{k!r}] contains NaN or Inf")
            new[k] = v
        self._set_params(new)

    def _set_params(self, params: dict) -> None:
        dt = self.np_dtype
        out = {}
        for k, v in params.items():
            if sparse_mod.issparse(v):
                w = sparse_mod.csr_array(v, dtype=dt, copy=True)
                w.sum_duplicates()  # canonical: sorted indices, no repeats
                if w.nnz > _MAX_NNZ:
                    raise ConfigError(f"state_dict[{k!r}] has {w.nnz} nonzeros; at most 2^32 - 1")
                out[k] = w
            else:
                out[k] = np.ascontiguousarray(v, dtype=dt)
        self.params = out
        # the backend's layouts and copies of these weights, built once per set of weights
        self.backend_state = self._reservoir.prepare(self)

    # ------------------------------------------------------------- checks

    def _check_series(self, name, a, features, B=None, T=None) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 3:
            raise ConfigError(
                f"{name} must have 3 dimensions (batch, time, features), got shape {a.shape}"
            )
        if a.shape[2] != features:
            raise ConfigError(f"{name} has {a.shape[2]} features, expected {features}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ConfigError(f"{name} must have at least one sequence and one step: {a.shape}")
        if (B is not None and a.shape[0] != B) or (T is not None and a.shape[1] != T):
            raise ConfigError(f"{name} has shape {a.shape}, expected ({B}, {T}, {features})")
        if not np.issubdtype(a.dtype, np.number):
            raise ConfigError(f"{name} must be numeric, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=self.np_dtype)
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{name} contains NaN or Inf")
        return a

    def _check_vectors(self, name, a, B, size) -> np.ndarray:
        """A (B, size) array; h0 is also accepted in torch's (1, B, N) layout."""
        a = np.asarray(a)
        if a.ndim == 3 and a.shape[0] == 1:
            a = a[0]
        if a.shape != (B, size):
            raise ConfigError(
                f"{name} has shape {a.shape}, expected (1, {B}, {size}) or ({B}, {size})"
            )
        a = np.ascontiguousarray(a, dtype=self.np_dtype)
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{name} contains NaN or Inf")
        return a

    def _state0(self, h0, B) -> np.ndarray:
        if h0 is None:
            return np.zeros((B, self.hidden_size), dtype=self.np_dtype)
        return self._check_vectors("h0", h0, B, self.hidden_size)

    # ------------------------------------------------------------- compute

    def forward(self, x, h0=None, *, teacher=None, y0=None, state_noise=0.0, noise_rng=None):
        """x: (B, T, I) -> states (B, T, N), tape (tape.h_n: (1, B, N)).

        With output feedback, ``teacher`` (B, T, F) holds the desired outputs y_1..y_T (teacher
        forcing): step t receives W_fb y_{t-1}, with y_0 = ``y0`` (zeros by default).
        ``state_noise`` a > 0: v_t ~ U(-a, a) drawn from ``noise_rng`` (B, T, N) joins each
        unit's pre-activation, f(W x_{t-1} + W_in u_t + b + v_t) (a readout fit's regulariser).
        """
        x = self._check_series("x", x, self.input_size)
        B, T, _ = x.shape
        s0 = self._state0(h0, B)
        w_in_t = self.params["weight_ih_l0"].T
        if self.feedback_size:
            if teacher is None:
                raise ConfigError(
                    "this reservoir has output feedback: pass teacher= (teacher forcing) "
                    "or use generate() (free run)"
                )
            F = self.feedback_size
            teacher = self._check_series("teacher", teacher, F, B, T)
            first = np.zeros((B, F)) if y0 is None else self._check_vectors("y0", y0, B, F)
            prev = np.concatenate([first[:, None].astype(self.np_dtype), teacher[:, :-1]], axis=1)
            x = np.concatenate([x, prev], axis=2)  # W_fb y_{t-1} is one more input
            w_in_t = np.concatenate([w_in_t, self.params["weight_fb_l0"].T])
        elif teacher is not None:
            raise ConfigError("teacher= is only for reservoirs built with feedback_size > 0")
        noise = None
        if _check_nonnegative("state_noise", state_noise) > 0:
            if not isinstance(noise_rng, np.random.Generator):
                raise ConfigError("state_noise > 0 needs noise_rng= (a numpy Generator)")
            a = float(state_noise)
            noise = noise_rng.uniform(-a, a, (B, T, self.hidden_size)).astype(self.np_dtype)
        states, _ = self._run(x, w_in_t, s0, None, noise)
        return states, Tape((B, T), [], states[:, -1][None].copy())

    def generate(self, steps, readout_weight, readout_bias, *, x=None, h0=None, y0=None):
        """Free run: y_t = readout_weight x_t + readout_bias is fed back at the next step.

        With feedback_size F > 0 it enters through W_fb (readout of F outputs) and ``x``
        (B, steps, I) is an optional driving input (zeros if None). Without feedback the
        prediction is fed back as the next input (autoregressive: outputs = input_size).
        Returns (states (B, steps, N), outputs (B, steps, O), tape).
        """
        steps = check_size("steps", steps)
        N, I, F = self.hidden_size, self.input_size, self.feedback_size
        O = F if F else I
        w_out = np.ascontiguousarray(readout_weight, dtype=self.np_dtype)
        b_out = np.ascontiguousarray(readout_bias, dtype=self.np_dtype)
        if w_out.shape != (O, N) or b_out.shape != (O,):
            raise ConfigError(
                f"readout weight/bias have shapes {w_out.shape}/{b_out.shape}, expected "
                f"({O}, {N})/({O},): the fed-back output must have "
                + ("feedback_size" if F else "input_size (autoregressive free run)")
                + " features"
            )
        if not (np.all(np.isfinite(w_out)) and np.all(np.isfinite(b_out))):
            raise ConfigError("readout weight/bias contain NaN or Inf")
        sizes = [np.asarray(a).shape[-2] for a in (h0, y0) if a is not None]
        if x is not None:
            if not F:
                raise ConfigError("x= drives a free run only with output feedback (feedback_size)")
            x = self._check_series("x", x, I, T=steps)
            sizes.append(x.shape[0])
        B = sizes[0] if sizes else 1
        s0 = self._state0(h0, B)
        first = (
            np.zeros((B, O), self.np_dtype) if y0 is None else self._check_vectors("y0", y0, B, O)
        )
        if F:
            x = np.zeros((B, steps, I), self.np_dtype) if x is None else x
            w_in_t, w_fb = self.params["weight_ih_l0"].T, self.params["weight_fb_l0"]
        else:  # the input is the fed-back prediction alone
            x, w_in_t = np.zeros((B, steps, 0), self.np_dtype), np.zeros((0, N), self.np_dtype)
            w_fb = self.params["weight_ih_l0"]
        states, outputs = self._run(x, w_in_t, s0, (w_fb, w_out, b_out, first))
        return states, outputs, Tape((B, steps), [], states[:, -1][None].copy())

    def _run(self, x, w_in_t, s0, free, noise=None):
        """States (and free-run outputs) for the input x (B, T, K) through w_in_t (K, N).
        ``noise`` (B, T, N) joins the projected input: W_in u_t + v_t enters through the
        identity (the backends' contract, on every backend; costs a (B T, N) x (N, N) GEMM)."""
        if noise is not None:
            B, T, K = x.shape
            u = np.matmul(x.reshape(B * T, K), w_in_t).reshape(B, T, -1)
            x, w_in_t = u + noise, np.eye(self.hidden_size, dtype=self.np_dtype)
        return self._reservoir.run(self.backend_state, x, w_in_t, s0, free)


# ------------------------------------------------------------------ the builder


def build_esn(
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dtype: str = "float64",
    backend: str = "numba",
    seed: int = 0,
    leak: float = 1.0,
    spectral_radius: float = 0.9,
    connectivity: float = 0.1,
    input_scaling: float = 1.0,
    input_connectivity: float = 1.0,
    bias_scaling: float = 0.0,
    weight_distribution: str = "normal",
    sparse: bool = True,
    feedback_size: int = 0,
    feedback_scaling: float = 1.0,
    activation: str = "tanh",
    orthogonal: bool = False,
    output_feedback: bool = False,
    **unknown,
) -> EchoStateNetwork:
    """Build a reservoir; every argument is validated here, so kernels never see a bad value."""
    if unknown:
        name = sorted(unknown)[0]
        allowed = ", ".join([o.name for o in OPTIONS] + list(BUILD_ONLY))
        raise ConfigError(f"option {name!r} is not known for the esn model; allowed: {allowed}")
    input_size = check_size("input_size", input_size)
    hidden_size = check_size("hidden_size", hidden_size)
    if num_layers != 1 or bidirectional not in (False,):
        raise ConfigError("esn is a single reservoir: use num_layers=1 and bidirectional=False")
    dtype = check_dtype(dtype)
    _check_choice("backend", backend, tuple(BACKENDS))
    reservoir_functions(backend).check()  # e.g. cuda without a GPU: fail before building W
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    options = {
        "leak": _check_unit_interval("leak", leak),
        "spectral_radius": check_positive("spectral_radius", spectral_radius),
        "connectivity": _check_unit_interval("connectivity", connectivity),
        "input_scaling": check_positive("input_scaling", input_scaling),
        "input_connectivity": _check_unit_interval("input_connectivity", input_connectivity),
        "bias_scaling": _check_nonnegative("bias_scaling", bias_scaling),
        "weight_distribution": _check_choice(
            "weight_distribution", weight_distribution, DISTRIBUTIONS
        ),
        "sparse": sparse,
        "orthogonal": orthogonal,
        "feedback_size": 0 if feedback_size == 0 else check_size("feedback_size", feedback_size),
        "feedback_scaling": check_positive("feedback_scaling", feedback_scaling),
        "activation": ACTIVATION_NAMES[_check_choice("activation", activation, ACTIVATIONS)],
    }
    for name, flag in (("sparse", sparse), ("orthogonal", orthogonal), ("output_feedback", output_feedback)):  # fmt: skip  # noqa: E501
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False, got {flag!r}")
    if output_feedback and not options["feedback_size"]:
        options["feedback_size"] = input_size  # F = I: the generated series is fed back
    N, I, F = hidden_size, input_size, options["feedback_size"]
    if round(options["connectivity"] * N * N) < 1:
        raise ConfigError(
            f"connectivity={connectivity} leaves no recurrent weight at hidden_size={N}; raise it"
        )
    if round(options["input_connectivity"] * N * I) < 1:
        raise ConfigError(f"input_connectivity={input_connectivity} leaves no input weight")
    seq = np.random.SeedSequence(int(seed))
    rng_w, rng_in, rng_b, rng_fb = (np.random.default_rng(s) for s in seq.spawn(4))
    if orthogonal:  # Haar-random (QR's sign convention fixed): every |eigenvalue| is 1
        q, r = np.linalg.qr(rng_w.standard_normal((N, N)))
        w = (sparse_mod.csr_array if sparse else np.asarray)(q * np.sign(np.diag(r)))
    else:
        w = random_matrix(
            rng_w, (N, N), options["connectivity"], options["weight_distribution"], as_sparse=sparse
        )
    rho = 1.0 if orthogonal else estimate_spectral_radius(w)
    if rho < 1e-12:
        raise ConfigError(
            f"the random reservoir has spectral radius 0 (connectivity={connectivity} is too "
            f"sparse for hidden_size={N}); raise connectivity or change seed"
        )
    w = w * (options["spectral_radius"] / rho)
    w_in = options["input_scaling"] * random_matrix(
        rng_in, (N, I), options["input_connectivity"], "sign", as_sparse=False
    )
    params = {
        "weight_ih_l0": w_in,
        "weight_hh_l0": w,
        "bias_hh_l0": options["bias_scaling"] * rng_b.uniform(-1.0, 1.0, N),
    }
    if F:
        params["weight_fb_l0"] = options["feedback_scaling"] * rng_fb.uniform(-1.0, 1.0, (N, F))
    return EchoStateNetwork(
        input_size,
        hidden_size,
        dtype=dtype,
        backend=backend,
        seed=int(seed),
        options=options,
        params=params,
    )
