"""What each cell's kernels take, declared once; numba_cpu.py and cuda_gpu.py adapt it.

A declaration names arrays; the backend's one generic adapter supplies them:

    x_proj        the input projection of all steps, (T, B, G), one GEMM
    weight_hh     a parameter, as the backend holds it (host array, or device copy);
    weight_hh.T   its transpose, C-contiguous
    h0, c0, y0    the initial states of ``states`` ("h", "c", "y"); h_seq, c_seq, y_seq their
                  sequences, (T, B, width); dh_last, dc_last, dy_last: dL/d(final state) in;
                  dh0, dc0, dy0: dL/d(initial state) out (on the CPU the same array carries
                  dL/dh_t back through time: dL/dh_T in, dL/dh0 out)
    dout          dL/d(output): time-major on CUDA; on the CPU batch-first for kernels that
                  take ``batch_first``, time-major otherwise
    dh_norms      (T,) ||dL/dh_t|| (CUDA; the CPU kernels add per-block partial sums)
    anything else the buffers declared below, or the cell's ``options(opts)``

CPU ``*_rows`` kernels take a few more (kernels/cpu/<cell>.py documents them): ``x`` and
``weight_ih.T`` to project a small input inside the kernel (x_proj then None), ``bias`` =
bias_ih + bias_hh for kernels that add both at once (x_proj then leaves bias_ih out), the
scratch buffers, and, appended by cpu_runtime.run_blocks, per-block partial sums and lo, hi,
blas. Backward ``*_rows`` kernels that take ``x_fused`` (the input time-major, (T, B, I),
for a small dense input; else an empty (T, B, 0)) add x^T d of the input_projection term's d
into a per-block partial (I, G), appended after the partial sums: W_ih's gradient without a
second pass over d. Shapes are tuples of dimension names, optionally with a factor ("4H"):
T steps, B batch, G = rows of weight_ih, H = G // gates, O = width of the first state (the
output).

Weight gradients are a list of terms; both backends assemble them the same way:

    input_projection(d)       weight_ih, bias_ih and dL/dx from d = dL/dx_proj
    after_state(w, d, s)      w = sum_t d_t^T s_{t-1}, with s_{-1} = s0 (the recurrence)
    same_step(w, d, seq)      w = sum_t d_t^T seq_t
    column_sums(b, d)         b = sum over t and batch of d

d names a buffer, or the buffers and column ranges that lie side by side in it, bounds in
dimension names: "dx_proj[:2H] dhn" is dx_proj's columns [0, 2H) and then dhn's. Each part's
gradient is computed alone and the rows stacked, so d is never put together in memory.

A new cell is its two kernel modules, one ``Cell`` below (ELMAN is the smallest to copy) and
its line in ``CELLS``; neither backend changes.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple


class Part(NamedTuple):
    """Columns [start, stop) of a (T, B, .) buffer, bounds as dimension names ("": the edge)."""

    buffer: str
    start: str = ""
    stop: str = ""

    def columns(self, dims):  # a slice of the columns, or None for all of them
        if not (self.start or self.stop):
            return None
        start, stop = (dims[b] if b else None for b in (self.start, self.stop))
        return slice(start, stop)


_PART = re.compile(r"(\w+)(?:\[(\w*):(\w*)\])?")


def _parts(d):  # "dx_proj[:2H] dhn" -> (Part("dx_proj", "", "2H"), Part("dhn"))
    parts = [_PART.fullmatch(s) for s in d.split()]
    if not parts or None in parts:
        raise ValueError(f"not buffer names or buffer[start:stop] ranges: {d!r}")
    return tuple(Part(*m.groups(default="")) for m in parts)


class Term(NamedTuple):
    """One gradient term: ``kind`` picks the backend's rule (see the module docstring)."""

    kind: str
    name: str
    d: tuple  # Parts: their rows of the gradient, in order
    seq: str = ""  # the sequence d_t^T multiplies
    first: str = ""  # after_state: the state before the first step


def input_projection(d):
    return Term("input", "weight_ih", _parts(d))


def after_state(name, d, state):
    return Term("after_state", name, _parts(d), f"{state}_seq", f"{state}0")


def same_step(name, d, seq):
    return Term("same_step", name, _parts(d), seq)


def column_sums(name, d):
    return Term("column_sums", name, _parts(d))


def _no_options(opts):
    return {}


def picker(names):
    """names -> a function from a dict to the tuple of its values under those names (C speed,
    as the adapters run per call)."""
    if len(names) == 1:  # itemgetter of one name returns the value, not a tuple
        (name,) = names
        return lambda d: (d[name],)
    return operator.itemgetter(*names)


def _is_parameter(name):
    return name.startswith(("weight_", "bias_"))


class ArgList:
    """A kernel's argument names in order, with what the adapter must fetch for them."""

    def __init__(self, names: str):
        self.names = tuple(names.split())
        self.pick = picker(self.names)  # {name: value} -> the arguments
        # ("weight_hh.T", "weight_hh"): transposes, made only where the kernel takes them
        self.transposed = tuple((n, n[:-2]) for n in self.names if n.endswith(".T"))
        self.parameters = tuple(n for n in self.names if _is_parameter(n) and n[-2:] != ".T")

    def __contains__(self, name):
        return name in self.names


def _shapes(table):  # {"gates": ("T", "B", "4H")} -> {"gates": dims -> (T, B, 4 * H)}
    return {name: picker(shape) for name, shape in table.items()}


@dataclass(frozen=True)
class Pass:
    """One direction of one cell: the kernel's arguments, in order, and what it writes.
    Names are separated by spaces, as namedtuple's fields."""

    args: str  # whole-batch kernel: the CUDA kernel and the CPU test wrapper
    rows_args: str  # CPU *_rows kernel, before its per-block arguments and lo, hi, blas
    buffers: dict = field(default_factory=dict)  # name -> shape: arrays the kernel fills
    scratch: dict = field(default_factory=dict)  # name -> shape: CPU-only working rows
    keep: str = ""  # forward: what backward reads (the tape), besides x
    sums: str = ""  # backward: buffers whose column sums the CPU kernel accumulates per block
    # scratch the CPU kernel touches only when it projects the input itself: name -> the
    # scratch that stands in (no allocation) when x_proj comes projected
    fused_only: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("args", ArgList(self.args))
        set_("rows_args", ArgList(self.rows_args))
        set_("keep", tuple(self.keep.split()))
        set_("pick_keep", picker(self.keep) if self.keep else None)
        set_("sums", tuple(self.sums.split()))
        shapes = (*self.buffers.values(), *self.scratch.values())
        set_("dim_names", {d for shape in shapes for d in shape})
        set_("buffers", _shapes(self.buffers))
        set_("scratch", _shapes(self.scratch))


@dataclass(frozen=True)
class Cell:
    """One cell: its two passes and how its weight gradients are assembled."""

    module: str  # kernels/{cpu,cuda}/<module>.py
    gates: int  # rows of weight_ih per hidden unit
    states: tuple  # "h", "c", "y": the recurrent state(s); the first is also the output
    # the per-step product (B x K) @ (K x N) as (K, N), backward's is (N, K): sizes row blocks
    step_product: tuple
    forward: Pass
    backward: Pass
    gradients: tuple
    options: Callable = _no_options  # opts -> {name: kernel argument}

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("initial", tuple(f"{s}0" for s in self.states))  # h0, c0
        set_("sequences", tuple(f"{s}_seq" for s in self.states))  # h_seq, c_seq
        set_("pick_sequences", picker(self.sequences))
        set_("grads_in", tuple(f"d{s}_last" for s in self.states))  # dh_last, dc_last
        set_("grads_out", tuple(f"d{s}0" for s in self.states))  # dh0, dc0
        set_("pick_grads_out", picker(self.grads_out))
        set_("fused_input", "x" in self.forward.rows_args)  # the CPU kernel may project x
        # ... and sum x^T d, W_ih's gradient, per block of rows (the input_projection term's d)
        set_("fused_input_grad", "x_fused" in self.backward.rows_args)
        set_("product", picker(self.step_product))
        set_("product_back", picker(self.step_product[::-1]))
        # dimensions with a factor ("4H"), computed per call next to the plain ones
        bounds = {b for term in self.gradients for part in term.d for b in part[1:]}
        names = {d for p in (self.forward, self.backward) for d in p.dim_names} | bounds
        scaled = {d for d in names if d[:-1].isdigit()}
        set_("scaled", tuple((d, int(d[:-1]), d[-1]) for d in sorted(scaled)))


def layer_dims(cell, p, B, T, state0):
    """{dimension name: size} of one call (see the module docstring)."""
    G = p["weight_ih"].shape[0]
    dims = {"T": T, "B": B, "G": G, "H": G // cell.gates, "O": state0[0].shape[1]}
    for name, factor, base in cell.scaled:
        dims[name] = factor * dims[base]
    return dims


class GradientOps(NamedTuple):
    """A backend's primitives for the gradient terms, over its own arrays; ``cols`` picks d's
    columns (a slice), None all of them."""

    input_grads: Callable  # (v, p, d) -> (dW_ih, db_ih, dL/dx time-major)
    after_state: Callable  # (d, cols, seq, first) -> sum_t d_t^T seq_{t-1}, seq_{-1} = first
    same_step: Callable  # (d, cols, seq) -> sum_t d_t^T seq_t
    column_sums: Callable  # (v, d, cols) -> column sums of v[d]
    stack: Callable  # [arrays] -> their rows stacked, one array (a single one: itself)


def assemble_gradients(cell, ops, v, p, dims):
    """({weight name: gradient}, dL/dx time-major) of one backward: the cell's terms, each
    computed by the backend's ``ops`` from the call's arrays ``v`` (dims: layer_dims)."""
    g = {}
    for term in cell.gradients:
        _TERMS[term.kind](g, term, ops, v, p, dims)
    return g, g.pop("input")


def _stacked(ops, term, dims, grad):
    """grad(buffer name, columns) of each part of term.d, its rows stacked in order."""
    return ops.stack([grad(part.buffer, part.columns(dims)) for part in term.d])


def _input_term(g, term, ops, v, p, dims):
    (part,) = term.d  # the whole of one buffer
    g["weight_ih"], g["bias_ih"], g["input"] = ops.input_grads(v, p, part.buffer)


def _after_state_term(g, term, ops, v, p, dims):
    seq, first = v[term.seq], v[term.first]
    grad = lambda d, cols: ops.after_state(v[d], cols, seq, first)  # noqa: E731
    g[term.name] = _stacked(ops, term, dims, grad)


def _same_step_term(g, term, ops, v, p, dims):
    seq = v[term.seq]
    g[term.name] = _stacked(ops, term, dims, lambda d, cols: ops.same_step(v[d], cols, seq))


def _column_sums_term(g, term, ops, v, p, dims):
    g[term.name] = _stacked(ops, term, dims, lambda d, cols: ops.column_sums(v, d, cols))


_TERMS = {
    "input": _input_term,
    "after_state": _after_state_term,
    "same_step": _same_step_term,
    "column_sums": _column_sums_term,
}


# ---------------------------------------------------------------- the cells

_PREVIOUS_STATE = (input_projection("dpre"), after_state("weight_hh", "dpre", "h"))

ELMAN = Cell(
    module="elman",
    gates=1,
    states=("h",),
    step_product=("H", "H"),
    options=lambda opts: {"relu": opts["nonlinearity"] == "relu"},
    forward=Pass(
        args="x_proj weight_hh.T bias_hh h0 relu h_seq",
        rows_args="x_proj x weight_ih.T weight_hh.T bias h0 relu h_seq y rec",
        buffers={"h_seq": ("T", "B", "H")},
        scratch={"rec": ("B", "H")},
        keep="h0 h_seq relu",
    ),
    backward=Pass(
        args="dout dh_last h_seq weight_hh relu dpre dh0 dh_norms",
        rows_args="dout batch_first h_seq weight_hh relu dpre dh0 x_fused",
        buffers={"dpre": ("T", "B", "H")},
        sums="dpre",
    ),
    gradients=(*_PREVIOUS_STATE, column_sums("bias_hh", "dpre")),
)

LSTM = Cell(
    module="lstm",
    gates=4,
    states=("h", "c"),
    step_product=("H", "G"),
    forward=Pass(
        args="x_proj weight_hh.T bias_hh h0 c0 gates c_seq h_seq",
        rows_args="x_proj x weight_ih.T weight_hh.T bias h0 c0 gates c_seq h_seq y rec",
        buffers={"gates": ("T", "B", "G"), "c_seq": ("T", "B", "H"), "h_seq": ("T", "B", "H")},
        scratch={"rec": ("B", "G")},
        keep="h0 c0 gates c_seq h_seq",
    ),
    backward=Pass(
        args="dout dh_last dc_last gates c_seq c0 weight_hh dpre dh0 dc0 dh_norms",
        rows_args="dout batch_first gates c_seq c0 weight_hh dpre dh0 dc0 x_fused",
        buffers={"dpre": ("T", "B", "G")},
        sums="dpre",
    ),
    gradients=(*_PREVIOUS_STATE, column_sums("bias_hh", "dpre")),
)

GRU = Cell(
    module="gru",
    gates=3,
    states=("h",),
    step_product=("H", "G"),
    forward=Pass(
        args="x_proj weight_hh.T bias_hh h0 gates h_seq",
        # bias_ih goes with the input: the reset gate multiplies only W_hn h + b_hn
        rows_args="x_proj x weight_ih.T bias_ih weight_hh.T bias_hh h0 gates h_seq y rec xrec",
        buffers={"gates": ("T", "B", "4H"), "h_seq": ("T", "B", "H")},  # r, z, n and hn
        scratch={"rec": ("B", "G"), "xrec": ("B", "G")},
        fused_only={"xrec": "rec"},
        keep="h0 gates h_seq",
    ),
    backward=Pass(
        args="dout dh_last gates h_seq h0 weight_hh dx_proj dhn dh0 dh_norms",
        rows_args="dout batch_first gates h_seq h0 weight_hh dx_proj dhn dh0 drec direct x_fused",
        buffers={"dx_proj": ("T", "B", "G"), "dhn": ("T", "B", "H")},  # dhn = dn * r
        # drec: dL/d(h_{t-1} W_hh^T + b_hh) of one step; direct: the z-gated skip's dL/dh_{t-1}
        scratch={"drec": ("B", "G"), "direct": ("B", "H")},
        sums="dx_proj dhn",
    ),
    # W_hh and b_hh see dL/d(h W_hh^T + b_hh) = [dr, dz, dn * r]: dx_proj's r and z, and dhn
    gradients=(
        input_projection("dx_proj"),
        after_state("weight_hh", "dx_proj[:2H] dhn", "h"),
        column_sums("bias_hh", "dx_proj[:2H] dhn"),
    ),
)

JORDAN = Cell(
    module="jordan",
    gates=1,
    states=("y",),
    step_product=("O", "H"),  # both per-step products have O * H terms per row
    forward=Pass(
        args="x_proj weight_yh.T weight_hy.T bias_hy y0 h_seq y_seq",
        rows_args="x_proj weight_yh.T weight_hy.T bias_hy y0 h_seq y_seq rec",
        buffers={"h_seq": ("T", "B", "H"), "y_seq": ("T", "B", "O")},
        scratch={"rec": ("B", "H")},
        keep="y0 h_seq y_seq",
    ),
    backward=Pass(
        args="dout dy_last h_seq weight_yh weight_hy dy_tot dpre dy0 dh_norms",
        rows_args="dout h_seq weight_yh weight_hy dy_tot dpre dy0 dh",
        buffers={"dy_tot": ("T", "B", "O"), "dpre": ("T", "B", "H")},  # dy_tot: dL/dy_t in all
        scratch={"dh": ("B", "H")},
    ),
    gradients=(
        input_projection("dpre"),
        after_state("weight_yh", "dpre", "y"),
        same_step("weight_hy", "dy_tot", "h_seq"),
        column_sums("bias_hy", "dy_tot"),
    ),
)

CELLS = {"elman": ELMAN, "jordan": JORDAN, "lstm": LSTM, "gru": GRU}
