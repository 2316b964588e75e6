"""Echo-state network: a fixed random reservoir of leaky units; only a linear readout learns
(in closed form, seqbench.readout), so there is no backward pass.

    x_t = (1 - a) x_{t-1} + a f(W x_{t-1} + W_in u_t + b [+ W_fb y_{t-1}]),  f = tanh | identity

Parameter names follow the model contract: ``weight_ih_l0`` = W_in (N, I), ``weight_hh_l0`` =
W (N, N; a dense ndarray or a scipy.sparse matrix), ``bias_hh_l0`` = b (N,), and with output
feedback ``weight_fb_l0`` = W_fb (N, F). ReservoirPy's ``Reservoir(W=W, Win=Win, bias=bias,
lr=a)`` runs the same equation: its W, Win and bias load with ``load_state_dict`` and give the
same states.

Construction (reproducible from ``seed``; each matrix has its own child seed, so changing the
input size leaves W unchanged): W has round(connectivity N^2) nonzeros at uniformly random
positions, values N(0, 1) or U(-1, 1), rescaled to ``spectral_radius`` with an ARPACK estimate
at a loose tolerance (a few seconds at N = 5000, 2.5M nonzeros; exact eigenvalues for
N <= 256). W_in: +-input_scaling with equal odds (ReservoirPy's default; U(-1, 1) would
halve the input's RMS gain) at ``input_connectivity``; b: U(-1, 1) *
bias_scaling; W_fb: U(-1, 1) * feedback_scaling.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import scipy.sparse as sparse_mod
from scipy.sparse.linalg import ArpackNoConvergence, eigs

from ..backends import buffers
from ..errors import ConfigError
from .cells import check_size
from .recurrent import DTYPES, Tape

BACKENDS = ("numba", "numpy", "cuda")
DISTRIBUTIONS = ("normal", "uniform")
ACTIVATIONS = ("tanh", "identity")
_EXACT_EIG_MAX = 256  # below this, np.linalg.eigvals is cheap and exact
_MAX_NNZ = 2**32 - 1  # uint32 CSR indices in the kernel


# ------------------------------------------------------------------ validation


def _check_unit_interval(name, value, *, closed_low=False) -> float:
    """A float in (0, 1] (or [0, 1] with closed_low); ConfigError naming the argument."""
    v = _check_float(name, value)
    low_ok = v >= 0.0 if closed_low else v > 0.0
    if not (low_ok and v <= 1.0):
        interval = "[0, 1]" if closed_low else "(0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return v


def _check_float(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


def _check_positive(name, value) -> float:
    v = _check_float(name, value)
    if v <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return v


def _check_nonnegative(name, value) -> float:
    v = _check_float(name, value)
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
        self._np_dtype = DTYPES[dtype]
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
        dt = self._np_dtype
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
        w = out["weight_hh_l0"]
        if sparse_mod.issparse(w):  # kernel-ready CSR: uint32 indices, contiguous
            self._csr = (w.indptr.astype(np.uint32), w.indices.astype(np.uint32), w.data)
            self._blocked = []  # blocked CSR of the batched kernel, one per thread, on first use
            self._sliced = None  # sliced ELLPACK of the one-series kernel, on first use
            self._w_hh_t = None
        else:
            self._csr = None
            self._w_hh_t = np.ascontiguousarray(w.T)

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
        a = np.ascontiguousarray(a, dtype=self._np_dtype)
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
        a = np.ascontiguousarray(a, dtype=self._np_dtype)
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{name} contains NaN or Inf")
        return a

    def _state0(self, h0, B) -> np.ndarray:
        if h0 is None:
            return np.zeros((B, self.hidden_size), dtype=self._np_dtype)
        return self._check_vectors("h0", h0, B, self.hidden_size)

    # ------------------------------------------------------------- compute

    def forward(self, x, h0=None, *, teacher=None, y0=None):
        """x: (B, T, I) -> states (B, T, N), tape (tape.h_n: (1, B, N)).

        With output feedback, ``teacher`` (B, T, F) holds the desired outputs y_1..y_T (teacher
        forcing): step t receives W_fb y_{t-1}, with y_0 = ``y0`` (zeros by default).
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
            prev = np.concatenate([first[:, None].astype(self._np_dtype), teacher[:, :-1]], axis=1)
            x = np.concatenate([x, prev], axis=2)  # W_fb y_{t-1} is one more input
            w_in_t = np.concatenate([w_in_t, self.params["weight_fb_l0"].T])
        elif teacher is not None:
            raise ConfigError("teacher= is only for reservoirs built with feedback_size > 0")
        states, _ = self._run(x, w_in_t, s0, None)
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
        w_out = np.ascontiguousarray(readout_weight, dtype=self._np_dtype)
        b_out = np.ascontiguousarray(readout_bias, dtype=self._np_dtype)
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
            np.zeros((B, O), self._np_dtype) if y0 is None else self._check_vectors("y0", y0, B, O)
        )
        if F:
            x = np.zeros((B, steps, I), self._np_dtype) if x is None else x
            w_in_t, w_fb = self.params["weight_ih_l0"].T, self.params["weight_fb_l0"]
        else:  # the input is the fed-back prediction alone
            x, w_in_t = np.zeros((B, steps, 0), self._np_dtype), np.zeros((0, N), self._np_dtype)
            w_fb = self.params["weight_ih_l0"]
        states, outputs = self._run(x, w_in_t, s0, (w_fb, w_out, b_out, first))
        return states, outputs, Tape((B, steps), [], states[:, -1][None].copy())

    def _project(self, x, w_in_t) -> np.ndarray:
        """x @ w_in_t + b for every step: one GEMM, batch-first (B, T, N)."""
        B, T, K = x.shape
        out = buffers.empty((B * T, self.hidden_size), self._np_dtype)  # the only (B, T, N)
        np.matmul(x.reshape(B * T, K), w_in_t, out=out)  # array of a forward
        out += self.params["bias_hh_l0"]
        return out.reshape(B, T, -1)

    def _run(self, x, w_in_t, s0, free):
        """States (and free-run outputs) for the input x (B, T, K) through w_in_t (K, N)."""
        from ..kernels.config import FUSE_INPUT_MAX

        if self.backend == "numba" and self._csr is not None and x.shape[2] <= FUSE_INPUT_MAX:
            states = buffers.empty((x.shape[0], x.shape[1], self.hidden_size), self._np_dtype)
            inputs = (x, np.ascontiguousarray(w_in_t), self.params["bias_hh_l0"])
            return self._run_numba(inputs, states, s0, free)
        if self.backend == "cuda":
            return self._run_cuda(x, w_in_t, s0, free)
        u_proj = self._project(x, w_in_t)
        if self.backend == "numpy":
            return reference_run(
                self.params["weight_hh_l0"], u_proj, s0, self._leak, self._linear, free
            )
        # states written in place: the kernels read each u_proj[b, t] before writing it
        return self._run_numba((u_proj, None, None), u_proj, s0, free)

    def _run_cuda(self, x, w_in_t, s0, free):
        """Only x (B, T, K) crosses to the GPU: the input is projected there, one GEMM into the
        states buffer that the kernel then overwrites in place, and the states come back once
        (a host projection would send the (B, T, N) array over the bus as well)."""
        from ..backends.cuda_gpu import require_gpu

        require_gpu()  # one-line ConfigError without a GPU
        from ..kernels.cuda import _common as cc

        B, T, K = x.shape
        N, dt = self.hidden_size, self._np_dtype
        u = cc.cuda.device_array((B * T, N), dt)
        x_d = cc.to_device(np.ascontiguousarray(x.reshape(B * T, K), dt))
        bias = cc.to_device(self.params["bias_hh_l0"])
        cc.gemm(x_d, cc.to_device(np.ascontiguousarray(w_in_t, dt)), u, bias=bias)
        u = u.reshape(B, T, N)
        _, outputs = self._run_numba((u, None, None), u, s0, free)
        states = buffers.empty((B, T, N), dt)
        u.copy_to_host(states)
        return states, outputs

    @property
    def _leak(self) -> float:
        return self.options["leak"]

    @property
    def _linear(self) -> bool:
        return self.options["activation"] == "identity"

    def _run_numba(self, inputs, states, s0, free):
        """inputs: (x, w_in_t, bias) as kernels.cpu.esn.input_at takes them; w_in_t None
        (x = u_proj, projected) except on the CPU sparse kernels."""
        if self.backend == "cuda":
            from ..backends.cuda_gpu import require_gpu

            require_gpu()  # one-line ConfigError without a GPU
            from ..kernels.cuda import esn as kernels
        else:
            from ..kernels.cpu import esn as kernels  # numba is imported on first use

        B, T, N = states.shape
        dt = self._np_dtype
        if free is None:
            w_fb, w_out = np.zeros((N, 0), dt), np.zeros((0, N), dt)
            b_out, y0 = np.zeros(0, dt), np.zeros((B, 0), dt)
        else:
            w_fb, w_out, b_out, y0 = (np.ascontiguousarray(a, dtype=dt) for a in free)
        outputs = np.empty((B, T, w_out.shape[0]), dtype=dt)
        common = (self._leak, self._linear, s0, states, w_fb, w_out, b_out, y0, outputs)
        if self.backend == "cuda" and self._csr is None:
            kernels.esn_forward(inputs[0], self._w_hh_t, *common)
        elif self.backend == "cuda":
            kernels.esn_forward_csr(inputs[0], *self._csr, *common)
        elif self._csr is None:  # CPU kernels run with subnormals flushed, as numba_cpu's
            from ..backends.cpu_runtime import flushed

            flushed(lambda: kernels.esn_forward(inputs[0], self._w_hh_t, *common))
        else:
            self._run_cpu_sparse(kernels, inputs, common)
        return states, outputs

    def _run_cpu_sparse(self, kernels, inputs, common):
        """At least CHUNK_MIN_SERIES series: chunks of CHUNK series (sparse x dense), one team
        of threads a chunk at a time (see _chunk_teams); fewer: one series at a time, its
        rows split over the threads."""
        from ..backends import cpu_runtime

        states = common[3]
        if common[5].shape[0] == 0:  # no output feedback: compiled out of the kernels
            common = (*common[:4], *kernels._NO_FEEDBACK)
        B, _, N = states.shape
        threads = cpu_runtime.get_num_threads()
        if B >= CHUNK_MIN_SERIES:
            self._run_chunks(kernels, inputs, common, threads)
            return
        from ..kernels.cpu._sync import STRIDE

        # a barrier per step costs ~1 us: worth it only for steps of a few thousand nonzeros
        threads = _barrier_threads(threads, self._csr[1].size)
        if states is not inputs[0]:  # a fresh array: fault its pages in on this thread, as
            states.fill(0.0)  # a page fault in the loop stalls every thread at the barrier
            # (one series, N = 1000, T = 10^4: 61 -> 42 us a step, the fill included)
        if self._sliced is None or self._sliced[-1].shape[1] != threads + 1:
            w = self.params["weight_hh_l0"]
            self._sliced = sliced_ell(w, kernels.SLICE, kernels.SLICE_GROUP, threads)
        x_buf = np.zeros((2, self._sliced[3].size + 1), dtype=self._np_dtype)  # + zero position
        counters = np.zeros(threads * STRIDE, dtype=np.int64)
        cpu_runtime.run_group(
            kernels.esn_forward_rows, threads, *inputs, *self._sliced, *common, x_buf, counters
        )

    def _run_chunks(self, kernels, inputs, common, threads):
        """Teams of threads, each its own contiguous chunks (_chunk_teams); a team's members
        split every step's units at nonzero-balanced, 8-aligned edges."""
        from ..backends import cpu_runtime
        from ..kernels.cpu._simd import empty_aligned
        from ..kernels.cpu._sync import STRIDE

        states = common[3]
        B, _, N = states.shape
        teams, size = _chunk_teams(B, kernels.CHUNK, threads, self._csr[1].size)
        chunks = -(-B // kernels.CHUNK)
        edges = [min(B, i * chunks // teams * kernels.CHUNK) for i in range(teams + 1)]
        rows = _unit_ranges(self._csr[0], size)
        calls = []
        blocked = self._blocked_csr(kernels.GROUP, teams)
        for w, lo, hi in zip(blocked, edges[:-1], edges[1:], strict=True):
            x_pair = empty_aligned(2 * (N + 1), kernels.CHUNK, self._np_dtype)
            x_pair[:] = 0.0
            counters = np.zeros(size * STRIDE, dtype=np.int64)
            team = (*inputs, *w, *common, lo, hi, x_pair, rows, counters)
            calls += [partial(kernels.esn_forward_chunks, *team, me, size) for me in range(size)]
        if size == 1:  # no barriers: the teams need not all start at once
            cpu_runtime.run_parallel(calls)
        else:
            cpu_runtime.run_group(lambda me, _: calls[me](), len(calls))

    def _blocked_csr(self, group, threads):
        """The blocked W for each of ``threads`` threads: a copy of its own for each while W
        is small enough to sit in a core's L2, where every step reads all of it. Two threads
        on one shared W ran 5-11% slower than on their own copies on this 2-vCPU VM (median
        of 20 interleaved runs, B = 32, N = 1000: 4.90-5.31 against 4.72-4.74 us per
        series-step, 14 and 18 of 20 pairs faster); a larger W streams from L3 anyway and is
        shared."""
        if not self._blocked:
            self._blocked.append(blocked_csr(self.params["weight_hh_l0"], group))
        first = self._blocked[0]
        if sum(a.nbytes for a in first) > _OWN_COPY_BYTES:
            return [first] * threads
        while len(self._blocked) < threads:
            self._blocked.append(tuple(a.copy() for a in first))
        return self._blocked[:threads]


# Fewest series that run as a chunk (sparse x dense) rather than one by one: a chunk step costs
# about as much for 1 as for 16 series, ~3.4x one series' step on one thread (N = 1000, 10%:
# 134 against 37-41 us), so from 4 series on the chunk is cheaper per series.
CHUNK_MIN_SERIES = 4


def _barrier_threads(threads, nnz):
    """Threads that may split one step of W's ``nnz`` nonzeros and meet at a barrier once a
    step (~1 us): each keeps at least 4096 nonzeros."""
    return max(1, min(threads, nnz // 4096))


def _chunk_teams(batch, chunk, threads, nnz):
    """(teams, members a team) for ``batch`` series in chunks of ``chunk`` on ``threads``
    threads: a team a chunk while there are fewer chunks than threads, the spare threads
    splitting each chunk's units (_barrier_threads)."""
    chunks = -(-batch // chunk)
    teams = min(threads, chunks)
    return teams, _barrier_threads(threads // teams, nnz)


def _unit_ranges(indptr, parts):
    """int64 [parts + 1] unit edges with about equal nonzeros each, on multiples of 8 (a range
    then writes whole 64-byte lines of a float64 ``states`` row wherever the row starts on one)."""
    N = indptr.size - 1
    want = np.arange(1, parts) * (int(indptr[-1]) / parts)
    inner = (np.searchsorted(indptr, want) + 4) // 8 * 8
    return np.concatenate([[0], np.clip(inner, 0, N), [N]]).astype(np.int64)


# Columns of W per block of the batched kernel: the x rows a block reads, 256 x 16 float64
# = 32 KB, stay in L1 while every row of W takes its nonzeros from that block.
COLUMN_BLOCK = 256
# Largest blocked W copied once per thread (see EchoStateNetwork._blocked_csr): about a core's L2.
_OWN_COPY_BYTES = 2 << 20


def blocked_csr(w, group, block=COLUMN_BLOCK):
    """W (CSR, N x N, sorted indices) as (bptr [n_blocks, N + 1], bidx, bdat): for each block
    of ``block`` columns, each row's nonzeros in it, padded with zeros at column N (a state row
    that stays 0) to a multiple of ``group``."""
    N = w.shape[0]
    n_blocks = max(1, -(-N // block))
    rows = np.repeat(np.arange(N), np.diff(w.indptr))
    segment = (w.indices // block).astype(np.int64) * N + rows  # block-major, then row
    order = np.argsort(segment, kind="stable")  # keeps each row's columns sorted
    counts = np.bincount(segment, minlength=n_blocks * N)
    starts = np.concatenate(([0], np.cumsum(counts)))
    offsets = np.concatenate(([0], np.cumsum(-(-counts // group) * group)))
    seg = segment[order]
    pos = offsets[seg] + np.arange(seg.size) - starts[seg]
    bidx = np.full(offsets[-1], N, dtype=np.uint32)
    bdat = np.zeros(offsets[-1], dtype=w.data.dtype)
    bidx[pos] = w.indices[order]
    bdat[pos] = w.data[order]
    bptr = np.stack([offsets[c * N : c * N + N + 1] for c in range(n_blocks)]).astype(np.uint32)
    return bptr, bidx, bdat


def sliced_ell(w, lanes, group, parts):
    """W (CSR, N x N, sorted indices) in sliced ELLPACK for esn_forward_rows run on ``parts``
    threads: (sptr, sidx, sdat, order, split).

    The units are cut into ``parts`` contiguous ranges of about equal nonzeros, one a thread,
    so that each thread writes its own stretch of every row of ``states`` (with the ranges
    interleaved, both threads wrote every cache line of a row). Within a range the units
    are sorted by their number of nonzeros, longest first, and cut into slices of ``lanes``,
    so that a slice's rows have nearly the same length: 0.7% padding at N = 1000, 10% (13%
    for units in their own order). Each slice is padded to a multiple of ``group`` slots
    with weight 0 at the zero position ``n_slices * lanes``. Range k holds slices
    split[0, k] .. split[0, k + 1] - 1 and units split[1, k] .. split[1, k + 1] - 1, at the
    first positions of its slices; order[p] is the unit at position p (N at the positions
    past a range's units, which nothing reads)."""
    N = w.shape[0]
    lengths = np.diff(w.indptr).astype(np.int64)
    cum = np.concatenate(([0], np.cumsum(lengths)))
    units = np.searchsorted(cum, np.arange(parts + 1) * cum[-1] // parts)
    units[0], units[-1] = 0, N
    slices = np.concatenate(([0], np.cumsum(-(-np.diff(units) // lanes))))
    n_slices = slices[-1]
    order = np.full(n_slices * lanes, N, dtype=np.int64)
    for k in range(parts):
        own = np.arange(units[k], units[k + 1])
        own = own[np.argsort(-lengths[own], kind="stable")]
        order[slices[k] * lanes : slices[k] * lanes + own.size] = own
    real = order < N
    position = np.empty(N, dtype=np.int64)
    position[order[real]] = np.flatnonzero(real)
    by_position = np.zeros(order.size, dtype=np.int64)
    by_position[real] = lengths[order[real]]
    slots = -(-by_position.reshape(n_slices, lanes).max(axis=1) // group) * group
    sptr = np.concatenate(([0], np.cumsum(slots * lanes)))
    sidx = np.full(sptr[-1], n_slices * lanes, dtype=np.uint32)
    sdat = np.zeros(sptr[-1], dtype=w.data.dtype)
    p = np.repeat(position, lengths)  # position of each nonzero's row, in CSR order
    j = np.arange(w.nnz) - np.repeat(cum[:-1], lengths)
    slot = sptr[p // lanes] + j * lanes + p % lanes
    sidx[slot] = position[w.indices]
    sdat[slot] = w.data
    return sptr, sidx, sdat, order.astype(np.uint32), np.stack([slices, units])


def reference_run(w, u_proj, s0, leak, linear, free):
    """NumPy oracle of the reservoir, step by step as the equations read.

    u_proj (B, T, N) = W_in u_t + b (+ teacher feedback); free = (W_fb, W_out, b_out, y0) for
    a free run or None. Returns (states (B, T, N), outputs (B, T, O) or None).
    """
    B, T, N = u_proj.shape
    f = (lambda z: z) if linear else np.tanh
    x = np.array(s0, dtype=u_proj.dtype)
    states = np.empty_like(u_proj)
    outputs = None
    if free is not None:
        w_fb, w_out, b_out, y = free
        outputs = np.empty((B, T, w_out.shape[0]), dtype=u_proj.dtype)
    for t in range(T):
        rec = (w @ x.T).T  # W x_{t-1}, dense or sparse
        pre = rec + u_proj[:, t]
        if free is not None:
            pre = pre + y @ w_fb.T
        x = (1.0 - leak) * x + leak * f(pre)
        states[:, t] = x
        if free is not None:
            y = x @ w_out.T + b_out
            outputs[:, t] = y
    return states, outputs


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
    **unknown,
) -> EchoStateNetwork:
    """Build a reservoir; every argument is validated here, so kernels never see a bad value."""
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"option {name!r} is not known for the esn model; allowed: leak, spectral_radius, "
            "connectivity, input_scaling, input_connectivity, bias_scaling, "
            "weight_distribution, sparse, feedback_size, feedback_scaling, activation"
        )
    input_size = check_size("input_size", input_size)
    hidden_size = check_size("hidden_size", hidden_size)
    if num_layers != 1 or bidirectional not in (False,):
        raise ConfigError("the esn model has one reservoir: num_layers=1, bidirectional=False")
    dtype = getattr(dtype, "__name__", str(dtype))
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use float32 or float64")
    _check_choice("backend", backend, BACKENDS)
    if backend == "cuda":
        from ..backends.cuda_gpu import require_gpu

        require_gpu()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    options = {
        "leak": _check_unit_interval("leak", leak),
        "spectral_radius": _check_positive("spectral_radius", spectral_radius),
        "connectivity": _check_unit_interval("connectivity", connectivity),
        "input_scaling": _check_positive("input_scaling", input_scaling),
        "input_connectivity": _check_unit_interval("input_connectivity", input_connectivity),
        "bias_scaling": _check_nonnegative("bias_scaling", bias_scaling),
        "weight_distribution": _check_choice(
            "weight_distribution", weight_distribution, DISTRIBUTIONS
        ),
        "sparse": sparse,
        "feedback_size": 0 if feedback_size == 0 else check_size("feedback_size", feedback_size),
        "feedback_scaling": _check_positive("feedback_scaling", feedback_scaling),
        "activation": _check_choice("activation", activation, ACTIVATIONS),
    }
    if not isinstance(sparse, bool):
        raise ConfigError(f"sparse must be True or False, got {sparse!r}")
    N, I, F = hidden_size, input_size, options["feedback_size"]
    if round(options["connectivity"] * N * N) < 1:
        raise ConfigError(
            f"connectivity={connectivity} leaves no recurrent weight at hidden_size={N}; raise it"
        )
    if round(options["input_connectivity"] * N * I) < 1:
        raise ConfigError(f"input_connectivity={input_connectivity} leaves no input weight")
    seq = np.random.SeedSequence(int(seed))
    rng_w, rng_in, rng_b, rng_fb = (np.random.default_rng(s) for s in seq.spawn(4))
    w = random_matrix(
        rng_w, (N, N), options["connectivity"], options["weight_distribution"], as_sparse=sparse
    )
    rho = estimate_spectral_radius(w)
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
