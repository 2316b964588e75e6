"""Register-tiled matmul for the recurrent product, written as explicit vector IR.

LLVM's loop vectoriser only vectorises the innermost loop, so a plain loop nest keeps its
accumulators in memory: every multiply-add of the 4-row loop this replaced loaded and stored
its output row (store-bound, ~26-36 GFMA/s on one core here). The tile below keeps an R x V block of
output vectors in registers for a whole run of k, loading V vectors of W and broadcasting R
scalars of ``a`` per k (the BLAS micro-kernel pattern), and emits 512-bit vectors where the
CPU has AVX-512: LLVM's tuning for recent Xeons prefers 256-bit vectors unless a function
asks for 512 (``"prefer-vector-width"``), which ``wide_vectors`` adds to the function being
compiled.

Measured on one core (Emerald Rapids, float32), per-step product of the LSTM goal shape,
16 x 128 @ 128 x 512: 8 x 2 tiles 15-21 us, against 34-40 us for the 4-row loop and 33-35 us
for OpenBLAS. 64 x 512 @ 512 x 2048: 1.26 ms against OpenBLAS's 1.37 ms (k in panels of
``KC`` so that the slab of W a column tile reads stays in L1).
"""

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .. import config

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


def _host_has_avx512() -> bool:
    try:
        return bool(llvm.get_host_cpu_features().get("avx512f"))
    except Exception:  # no feature query on this platform: stay with 256-bit vectors
        return False


# Bytes per vector register: the tile's accumulators must fit in the register file (16 of
# 32 zmm with AVX-512; with 256-bit vectors the same tile counts twice as many, so it halves).
VECTOR_BYTES = 64 if _host_has_avx512() else 32
KC = 128  # k per panel: a column tile of W for one panel is KC x 2 vectors (16 KiB at f32)

_WIDE_ATTRS = ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"')


def _widen(builder):
    # llvmlite's attribute set only accepts flag attributes; these are key-value strings,
    # written into the IR text verbatim (set.add skips its name check).
    if VECTOR_BYTES == 64:
        for attr in _WIDE_ATTRS:
            set.add(builder.function.attributes, attr)


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit vectors (no-op without AVX-512)."""

    def codegen(context, builder, signature, args):
        _widen(builder)
        return context.get_dummy_value()

    return types.void(), codegen


def _lanes(dtype):
    return VECTOR_BYTES // (dtype.bitwidth // 8)


def _accumulating_loop(builder, name, k0, k1, stride, init, step):
    """IR of ``for k in range(k0, k1, stride): accs = step(k, accs)`` with the accumulators
    as SSA values (phis), so that they stay in registers; ``init`` is what they start as,
    and what comes back when the range is empty. ``step`` emits one pass, adding no blocks."""
    i64 = ir.IntType(64)
    pre = builder.basic_block
    loop = builder.append_basic_block(f"{name}.k")
    done = builder.append_basic_block(f"{name}.done")
    builder.cbranch(builder.icmp_signed("<", k0, k1), loop, done)

    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(k0, pre)
    accs = []
    for x in init:
        phi = builder.phi(x.type)
        phi.add_incoming(x, pre)
        accs.append(phi)
    new = step(k, accs)
    k_next = builder.add(k, ir.Constant(i64, stride))
    k.add_incoming(k_next, loop)
    for phi, x in zip(accs, new, strict=True):
        phi.add_incoming(x, loop)
    builder.cbranch(builder.icmp_signed("<", k_next, k1), loop, done)

    builder.position_at_end(done)
    final = []
    for x, y in zip(init, new, strict=True):  # all phis first, as LLVM requires
        phi = builder.phi(x.type)
        phi.add_incoming(x, pre)
        phi.add_incoming(y, loop)
        final.append(phi)
    return final


def _pairwise_sum(builder, values):
    """IR of (v0 + v1) + (v2 + v3) + ...: partial sums of separate accumulator sets."""
    while len(values) > 1:
        values = [
            builder.fadd(values[m], values[m + 1]) if m + 1 < len(values) else values[m]
            for m in range(0, len(values), 2)
        ]
    return values[0]


def _make_tile(R, V, KS=1):
    """An intrinsic tile(a, w, out, r, n, wn, k0, k1, add):

    out[r:r+R, n:n+V*L] (+)= a[r:r+R, k0:k1] @ w[k0:k1, wn:wn+V*L], L lanes per vector.
    a: (B, K) with unit stride along K (rows may be strided); w: (K, N), out: (B, N)
    C-contiguous; same float dtype. The caller keeps every index in range.

    KS > 1 splits k over KS accumulator sets (k, k+1, ... in turn; leftover k go to the
    first), summed at the end: a narrow tile then runs R*V*KS independent FMA chains
    instead of waiting on the latency of R*V.
    """

    @intrinsic
    def tile(typingctx, a, w, out, r, n, wn, k0, k1, add):
        arrays = (a, w, out)
        if not all(isinstance(x, types.Array) and x.ndim == 2 for x in arrays):
            return None
        if a.dtype not in (types.float32, types.float64) or {w.dtype, out.dtype} != {a.dtype}:
            return None
        if w.layout != "C" or out.layout != "C":  # rows of w and out are addressed by shape
            return None
        sig = types.void(a, w, out, *[types.intp] * 5, add)

        def codegen(context, builder, signature, args):
            _widen(builder)
            dt = signature.args[0].dtype
            L = _lanes(dt)
            width = dt.bitwidth // 8
            fty = context.get_value_type(dt)
            vty = ir.VectorType(fty, L)
            i64 = ir.IntType(64)
            arr = [
                context.make_array(ty)(context, builder, v)
                for ty, v in zip(signature.args[:3], args[:3], strict=True)
            ]
            A, W, O = arr
            r0, n0, wn, k0v, k1v, accumulate = args[3:]
            # element strides of a's rows, w's rows and out's rows
            lda = builder.sdiv(builder.extract_value(A.strides, 0), ir.Constant(i64, width))
            ldw = builder.extract_value(W.shape, 1)
            ldo = builder.extract_value(O.shape, 1)

            def const(v):
                return ir.Constant(i64, v)

            def vec_ptr(base, idx):
                return builder.bitcast(builder.gep(base, [idx]), vty.as_pointer())

            fma = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vty, [vty, vty, vty]),
                f"llvm.fma.v{L}f{dt.bitwidth}",
            )
            rows = [builder.add(r0, const(i)) for i in range(R)]
            optrs = [
                vec_ptr(O.data, builder.add(builder.mul(row, ldo), builder.add(n0, const(v * L))))
                for row in rows
                for v in range(V)
            ]
            arows = [builder.gep(A.data, [builder.mul(row, lda)]) for row in rows]
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * L)
            init = [builder.select(accumulate, builder.load(p, align=width), zero) for p in optrs]
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)

            def pass_k(k, accs):  # one k: R broadcasts of a times V vectors of w's row k
                wrow = builder.add(builder.mul(k, ldw), wn)
                wv = [
                    builder.load(vec_ptr(W.data, builder.add(wrow, const(v * L))), align=width)
                    for v in range(V)
                ]
                new = []
                for i in range(R):
                    s = builder.load(builder.gep(arows[i], [k]))
                    s = builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0))
                    s = builder.shuffle_vector(s, undef, splat)
                    new.extend(builder.call(fma, [s, wv[v], accs[i * V + v]]) for v in range(V))
                return new

            def step(k, accs):  # KS consecutive k, each into its own accumulator set
                n = R * V
                return [
                    x
                    for s in range(KS)
                    for x in pass_k(builder.add(k, const(s)), accs[s * n : (s + 1) * n])
                ]

            if KS == 1:
                final = _accumulating_loop(builder, "tile", k0v, k1v, 1, init, pass_k)
            else:
                span = builder.sub(k1v, k0v)
                kk = builder.add(k0v, builder.mul(builder.sdiv(span, const(KS)), const(KS)))
                sets = _accumulating_loop(
                    builder, "tile", k0v, kk, KS, init + [zero] * (R * V * (KS - 1)), step
                )
                n = R * V
                first = _accumulating_loop(builder, "rest", kk, k1v, 1, sets[:n], pass_k)
                final = [_pairwise_sum(builder, [first[v], *sets[n + v :: n]]) for v in range(n)]
            for x, p in zip(final, optrs, strict=True):
                builder.store(x, p, align=width)
            return context.get_dummy_value()

        return sig, codegen

    return tile


# Full tiles: 8 rows x 2 vectors (16 accumulators; the fastest of 4x4, 6x4, 8x2, 2x8, 12x2
# measured at both float32 and float64).
_T82, _T81 = _make_tile(8, 2), _make_tile(8, 1)
# Single rows (B < 8, or leftovers) are a matrix-vector product: up to 16 vectors of a row
# at once read each a[r, k] once and W row by row; narrower tiles split k so that at least 8
# FMA chains run side by side. Float32, one row, 1000 steps, per step against the 1 x 8 /
# 1 x 4 tiles before: 64 x 64 0.12 vs 0.36 us, 64 x 192 0.23 vs 0.60, 64 x 256 0.84 vs 1.12
# (W past L1 there), 128 x 512 3.5 vs 4.2.
_T1_16, _T1_8, _T1_4, _T1_2, _T1_1 = (
    _make_tile(1, 16),
    _make_tile(1, 8),
    _make_tile(1, 4, 2),
    _make_tile(1, 2, 4),
    _make_tile(1, 1, 8),
)


def _lanes_of(a):
    """Lanes of a vector register for a's dtype, a compile-time constant (from a.itemsize
    it would be an integer division, ~40 cycles, on every call of the row path)."""


@overload(_lanes_of, inline="always")
def _lanes_of_impl(a):
    lanes = _lanes(a.dtype)
    return lambda a: lanes


@njit(**_JIT)
def _tail(a, w, out, r0, r1, n0, k0, k1, add):  # the last columns (fewer than a vector)
    for r in range(r0, r1):
        for n in range(n0, out.shape[1]):
            s = out[r, n] if add else out.dtype.type(0.0)
            for k in range(k0, k1):
                s += a[r, k] * w[k, n]
            out[r, n] = s


def _full_tile(a, w, wp, out, r, n, k0, k1, add):
    """The 8 x 2-vector tile at row r, column n: W read from its panel of wp when given
    (``pack_panels``), else from w itself."""


@overload(_full_tile, inline="always")
def _full_tile_impl(a, w, wp, out, r, n, k0, k1, add):
    if isinstance(wp, types.NoneType):
        return lambda a, w, wp, out, r, n, k0, k1, add: _T82(a, w, out, r, n, n, k0, k1, add)

    def from_panel(a, w, wp, out, r, n, k0, k1, add):
        _T82(a, wp[n // (2 * _lanes_of(a))], out, r, n, 0, k0, k1, add)

    return from_panel


@njit(**_JIT)
def _panels8(a, w, wp, out, r0, r1, k0, k1, add):
    """Rows [r0, r1), a multiple of 8 of them: column tiles outside, so that a tile's slab of
    W (k1 - k0 rows x 2 vectors) is read from L1 by every group of 8 rows."""
    L = _lanes_of(a)
    N = out.shape[1]
    n = 0
    while n + 2 * L <= N:
        for r in range(r0, r1, 8):
            _full_tile(a, w, wp, out, r, n, k0, k1, add)
        n += 2 * L
    if n + L <= N:
        for r in range(r0, r1, 8):
            _T81(a, w, out, r, n, n, k0, k1, add)
        n += L
    if n < N:
        _tail(a, w, out, r0, r1, n, k0, k1, add)


@njit(inline="always", **_JIT)
def _row(a, w, out, r, k0, k1, add):
    L = _lanes_of(a)
    N = out.shape[1]
    n = 0
    while n + 16 * L <= N:
        _T1_16(a, w, out, r, n, n, k0, k1, add)
        n += 16 * L
    if n + 8 * L <= N:
        _T1_8(a, w, out, r, n, n, k0, k1, add)
        n += 8 * L
    if n + 4 * L <= N:
        _T1_4(a, w, out, r, n, n, k0, k1, add)
        n += 4 * L
    if n + 2 * L <= N:
        _T1_2(a, w, out, r, n, n, k0, k1, add)
        n += 2 * L
    if n + L <= N:
        _T1_1(a, w, out, r, n, n, k0, k1, add)
        n += L
    if n < N:  # the call alone costs ~45 ns a row even with nothing to do
        _tail(a, w, out, r, r + 1, n, k0, k1, add)


@njit(**_JIT)
def tile_matmul(a, w, wp, out, lo, hi, acc):
    """out[lo:hi] (+)= a[lo:hi] @ w.   a: (B, K), unit stride along K; w: (K, N), out: (B, N)
    C-contiguous; one float dtype. wp: ``pack_panels(w)``, or None to read w as it is.
    acc: add to out instead of overwriting it."""
    K = a.shape[1]
    full = lo + (hi - lo) // 8 * 8
    if full > lo:
        for k0 in range(0, max(K, 1), KC):
            k1 = min(K, k0 + KC)
            _panels8(a, w, wp, out, lo, full, k0, k1, acc or k0 > 0)
    for r in range(full, hi):  # a row reads W once anyway: all of k in one pass
        _row(a, w, out, r, 0, K, acc)


@njit(**_JIT)
def empty_aligned(rows, cols, dtype):
    """np.empty((rows, cols), dtype) starting on a 64-byte boundary (numba aligns arrays to
    32 bytes): rows of whole cache lines then never straddle two in a vector load."""
    buf = np.empty(rows * cols + 64, dtype=dtype)
    skip = (-buf.ctypes.data) % 64 // buf.itemsize
    return buf[skip : skip + rows * cols].reshape((rows, cols))


@njit(**_JIT)
def aligned_copy(w):
    """A copy of the 2-D array w starting on a 64-byte boundary (see empty_aligned)."""
    out = empty_aligned(w.shape[0], w.shape[1], w.dtype)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] = w[i, j]
    return out


@njit(**_JIT)
def pack_panels(w):
    """w (K, N) C-contiguous -> (N // 2L, K, 2L), L lanes a vector: the columns of each full
    8 x 2-vector tile side by side, so that a tile reads its slab of W as one stream of whole
    cache lines. In place, a slab's rows lie N elements apart: at N = 2048 float32 every row
    of a slab falls in the same L1 set, and the slab does not stay in L1 (128 x 512 @
    512 x 2048: 52 -> 68 GFMA/s packed; 16 x 128 @ 128 x 512: 48 -> 62)."""
    K, N = w.shape
    tw = 2 * _lanes_of(w)
    wp = empty_aligned(N // tw * K, tw, w.dtype).reshape((N // tw, K, tw))
    for k in range(K):
        for j in range(N // tw):
            for c in range(tw):
                wp[j, k, c] = w[k, j * tw + c]
    return wp


def _sparse_signature(x, idx, dat, out, ndim):
    """The signature of a sparse intrinsic (x, idx, dat, out, i, k0, k1), or None where the
    arrays are not what it takes: x and out ``ndim``-D (C-contiguous when 2-D) of one float
    dtype that dat shares, idx uint32, idx and dat 1-D."""
    if not all(isinstance(a, types.Array) for a in (x, idx, dat, out)):
        return None
    if (x.ndim, out.ndim, idx.ndim, dat.ndim) != (ndim, ndim, 1, 1):
        return None
    if ndim > 1 and (x.layout != "C" or out.layout != "C"):
        return None
    if x.dtype not in (types.float32, types.float64) or {dat.dtype, out.dtype} != {x.dtype}:
        return None
    if idx.dtype != types.uint32:
        return None
    return types.void(x, idx, dat, out, types.intp, types.intp, types.intp)


def _sparse_ir(context, builder, signature, args, lanes):
    """What the IR of a sparse intrinsic starts with: 512-bit vectors allowed, then
    (bytes an element, element type, vector type, (X, IDX, DAT, OUT) arrays, vector FMA)."""
    _widen(builder)
    dt = signature.args[0].dtype
    fty = context.get_value_type(dt)
    vty = ir.VectorType(fty, lanes)
    arrays = tuple(
        context.make_array(ty)(context, builder, v)
        for ty, v in zip(signature.args[:4], args[:4], strict=True)
    )
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.v{lanes}f{dt.bitwidth}"
    )
    return dt.bitwidth // 8, fty, vty, arrays, fma


def make_sparse_row(width, group):
    """An intrinsic row(x, idx, dat, out, i, k0, k1) for sparse x dense products:

    out[i, :width] += sum over k in [k0, k1) of dat[k] * x[idx[k], :width]

    x, out: (rows, width) C-contiguous, one float dtype; idx: uint32, dat: the float dtype,
    both 1-D; k1 - k0 a multiple of ``group``. The ``group`` nonzeros of a pass feed
    ``group`` separate accumulator sets (summed at the end of the row), so consecutive FMAs
    never wait on each other's latency; all of it stays in registers for the whole row,
    which LLVM's vectorisers do not manage for a loop nest (they keep the row in memory)."""

    @intrinsic
    def row(typingctx, x, idx, dat, out, i, k0, k1):
        sig = _sparse_signature(x, idx, dat, out, 2)

        def codegen(context, builder, signature, args):
            size, fty, vty, (X, IDX, DAT, OUT), fma = _sparse_ir(
                context, builder, signature, args, width
            )
            i64 = ir.IntType(64)
            i, k0, k1 = args[4:]
            optr = builder.bitcast(
                builder.gep(OUT.data, [builder.mul(i, ir.Constant(i64, width))]),
                vty.as_pointer(),
            )
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * width)
            init = [builder.load(optr, align=size)] + [zero] * (group - 1)
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)

            def step(k, accs):
                new = []
                for u in range(group):
                    ku = builder.add(k, ir.Constant(i64, u))
                    j = builder.zext(builder.load(builder.gep(IDX.data, [ku])), i64)
                    xrow = builder.gep(X.data, [builder.mul(j, ir.Constant(i64, width))])
                    xv = builder.load(builder.bitcast(xrow, vty.as_pointer()), align=size)
                    w = builder.load(builder.gep(DAT.data, [ku]))
                    w = builder.insert_element(undef, w, ir.Constant(ir.IntType(32), 0))
                    w = builder.shuffle_vector(w, undef, splat)
                    new.append(builder.call(fma, [w, xv, accs[u]]))
                return new

            final = _accumulating_loop(builder, "row", k0, k1, group, init, step)
            builder.store(_pairwise_sum(builder, final), optr, align=size)
            return context.get_dummy_value()

        return sig, codegen

    return row


def make_slice_rows(lanes, group):
    """An intrinsic slice(x, idx, dat, out, o, k0, k1) for a matrix-vector product over W in
    sliced ELLPACK (SELL): ``lanes`` rows side by side, their j-th nonzeros stored together,

    out[o + l] = sum over k in range(k0, k1, lanes) of dat[k + l] * x[idx[k + l]],  l < lanes

    x, out: 1-D, one float dtype; idx: uint32 below 2^31 (sign-extended, so that the gather
    takes them as they are stored, vgatherdpd with no widening; zero-extended indices cost
    4% more here), dat: x's dtype; (k1 - k0) a multiple of lanes * group. Each nonzero is
    one lane of one gather, so the slice's rows need no horizontal sums and share one loop
    exit, where CSR pays both per row. ``group`` slots a pass feed separate accumulators.
    One core, N = 1000 at 10%, rows sorted by length: 27.1 us a product against 33.9-35 us
    for the CSR row loop (LLVM's vectorised gathers and reductions)."""

    @intrinsic
    def rows(typingctx, x, idx, dat, out, o, k0, k1):
        sig = _sparse_signature(x, idx, dat, out, 1)

        def codegen(context, builder, signature, args):
            size, fty, vty, (X, IDX, DAT, OUT), fma = _sparse_ir(
                context, builder, signature, args, lanes
            )
            i32, i64 = ir.IntType(32), ir.IntType(64)
            o, k0, k1 = args[4:]
            ptrs_t = ir.VectorType(X.data.type, lanes)
            mask_t = ir.VectorType(ir.IntType(1), lanes)
            gather = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vty, [ptrs_t, i32, mask_t, vty]),
                f"llvm.masked.gather.v{lanes}f{8 * size}.v{lanes}p0",
            )
            every = ir.Constant(mask_t, [1] * lanes)
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * lanes)
            idx_t = ir.VectorType(i32, lanes)

            def step(k, accs):
                new = []
                for u in range(group):
                    ku = builder.add(k, ir.Constant(i64, u * lanes))
                    iv = builder.load(
                        builder.bitcast(builder.gep(IDX.data, [ku]), idx_t.as_pointer()), align=4
                    )
                    ptrs = builder.gep(
                        X.data, [builder.sext(iv, ir.VectorType(i64, lanes))], source_etype=fty
                    )
                    ptrs.type = ptrs_t  # llvmlite types a vector GEP as a scalar pointer
                    xv = builder.call(gather, [ptrs, ir.Constant(i32, size), every, zero])
                    w = builder.load(
                        builder.bitcast(builder.gep(DAT.data, [ku]), vty.as_pointer()), align=size
                    )
                    new.append(builder.call(fma, [w, xv, accs[u]]))
                return new

            init = [zero] * group
            final = _accumulating_loop(builder, "slice", k0, k1, lanes * group, init, step)
            optr = builder.bitcast(builder.gep(OUT.data, [o]), vty.as_pointer())
            builder.store(_pairwise_sum(builder, final), optr, align=size)
            return context.get_dummy_value()

        return sig, codegen

    return rows


# 8 x 8 transpose in three rounds of two-source shuffles: pairs of elements, then pairs of
# pairs, then halves (LLVM turns each into one unpack or permute instruction).
_ROUNDS = (
    (1, [0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]),
    (2, [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]),
    (4, [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]),
)


def _transpose8_ir(builder, rows):
    """IR of the 8 x 8 transpose of ``rows`` (8 vectors of 8): out[j][k] = rows[k][j]."""
    mask_t = ir.VectorType(ir.IntType(32), 8)
    v = list(rows)
    for span, lo, hi in _ROUNDS:
        out = [None] * 8
        for a in range(8):
            if not a & span:
                b = a | span  # the partner vector of this round
                out[a] = builder.shuffle_vector(v[a], v[b], ir.Constant(mask_t, lo))
                out[b] = builder.shuffle_vector(v[a], v[b], ir.Constant(mask_t, hi))
        v = out
    return v


def _make_transpose8(stream):
    """An intrinsic transpose8(src, dst, i0, j0): dst[j0 + j, i0 + k] = src[i0 + k, j0 + j]
    for j, k < 8, an 8 x 8 block moved between a unit-major array and a series-major one in
    registers (eight vector loads, 24 shuffles, eight vector stores) instead of 64 strided
    scalar copies. src, dst: 2-D, one float dtype, each row contiguous (dst may be a strided
    view such as states[b0:b1, t]); the caller keeps the block in range.

    ``stream``: the stores are non-temporal (they bypass the cache, so a line written whole
    is not first read from memory), and each row of the block must start on a 64-byte
    boundary."""

    @intrinsic
    def transpose8(typingctx, src, dst, i0, j0):
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (src, dst)):
            return None
        if src.dtype not in (types.float32, types.float64) or dst.dtype != src.dtype:
            return None
        sig = types.void(src, dst, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            sty, dty = signature.args[:2]
            S = context.make_array(sty)(context, builder, args[0])
            D = context.make_array(dty)(context, builder, args[1])
            i0, j0 = args[2], args[3]
            vty = ir.VectorType(context.get_value_type(sty.dtype), 8)
            size = sty.dtype.bitwidth // 8
            nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])

            def at(ary_t, ary, r, c):
                ptr = cgutils.get_item_pointer(context, builder, ary_t, ary, [r, c])
                return builder.bitcast(ptr, vty.as_pointer())

            def plus(a, k):
                return builder.add(a, ir.Constant(a.type, k))

            rows = [builder.load(at(sty, S, plus(i0, k), j0), align=size) for k in range(8)]
            for j, col in enumerate(_transpose8_ir(builder, rows)):
                ptr = at(dty, D, plus(j0, j), i0)
                if stream:
                    store = builder.store(col, ptr, align=8 * size)
                    store.set_metadata("nontemporal", nontemporal)
                else:
                    builder.store(col, ptr, align=size)
            return context.get_dummy_value()

        return sig, codegen

    return transpose8


transpose8 = _make_transpose8(stream=False)
transpose8_stream = _make_transpose8(stream=True)
