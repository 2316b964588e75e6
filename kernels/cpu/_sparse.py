"""Vector IR for the reservoir kernels (kernels/cpu/esn.py): sparse x dense rows
(``make_sparse_row``), sliced-ELLPACK matrix-vector slices (``make_slice_rows``) and 8 x 8
register transposes (``transpose8``, ``transpose8_stream``). Built on the IR helpers of
_simd.py (wide vectors, the accumulating loop, the pairwise sum).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._simd import _accumulating_loop, _pairwise_sum, _widen


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


def _sparse_intrinsic(ndim, lanes, emit):
    """An intrinsic f(x, idx, dat, out, i, k0, k1) (the arrays as ``_sparse_signature`` takes
    them): the shared start of its IR (``_sparse_ir``), then emit(builder, size, fty, vty,
    (X, IDX, DAT, OUT), fma, i, k0, k1) writes the rest."""

    @intrinsic
    def sparse(typingctx, x, idx, dat, out, i, k0, k1):
        sig = _sparse_signature(x, idx, dat, out, ndim)

        def codegen(context, builder, signature, args):
            start = _sparse_ir(context, builder, signature, args, lanes)
            emit(builder, *start, *args[4:])
            return context.get_dummy_value()

        return sig, codegen

    return sparse


def make_sparse_row(width, group):
    """An intrinsic row(x, idx, dat, out, i, k0, k1) for sparse x dense products:

    out[i, :width] += sum over k in [k0, k1) of dat[k] * x[idx[k], :width]

    x, out: (rows, width) C-contiguous, one float dtype; idx: uint32, dat: the float dtype,
    both 1-D; k1 - k0 a multiple of ``group``. The ``group`` nonzeros of a pass feed
    ``group`` separate accumulator sets (summed at the end of the row), so consecutive FMAs
    never wait on each other's latency; all of it stays in registers for the whole row,
    which LLVM's vectorisers do not manage for a loop nest (they keep the row in memory)."""

    def emit(builder, size, fty, vty, arrays, fma, i, k0, k1):
        X, IDX, DAT, OUT = arrays
        i64 = ir.IntType(64)
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

    return _sparse_intrinsic(2, width, emit)


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

    def emit(builder, size, fty, vty, arrays, fma, o, k0, k1):
        X, IDX, DAT, OUT = arrays
        i32, i64 = ir.IntType(32), ir.IntType(64)
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

    return _sparse_intrinsic(1, lanes, emit)


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
