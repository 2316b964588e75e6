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
