"""Scalar activations and their derivatives from the saved output, shared by all kernels.

Each derivative is written in terms of the activation's output ``s = f(z)``, which is what
the forward pass saves, so backward never re-evaluates a transcendental for a gate.

Two families:

- ``sigmoid``, ``tanh_``, ``relu`` and their derivatives: the exact functions (libm), plain
  Python. Used for float64 on the CPU. (The CUDA kernels have their own device twins in
  kernels/cuda/_common.py, with constants in the argument's type, so that float32 kernels
  compile to no float64 instruction; tests/test_ptx.py checks it.)
- ``*_kernel``: what the CPU kernels call. They keep the argument's dtype (no float64
  promotion from Python literals) and, for float32, use the approximations below, which LLVM
  can vectorise (numba has no SVML here, so a libm call per element would stay scalar).

float32 approximations (Cephes' expf/tanhf designs, rewritten without branches). Error
bounds measured exhaustively over all 2^32 float32 inputs against float64 libm (the
figures below are those maxima, rounded up); tests/test_fastmath.py re-checks them on a
strided sweep of every binade:

- ``exp_fast(x)``: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial
  for e^r and 2^n placed in the exponent bits. Relative error <= 3.1e-7 for x in
  [-87.3, 88.3]; outside, x is clamped to that range. Not monotone by 1 ulp in places.
- ``sigmoid_fast(x) = 1 / (1 + exp_fast(-x))``: absolute error <= 9e-8 everywhere, relative
  error <= 3.3e-7 for x >= -87.3 (sigmoid >= 1.2e-38); exactly 0 below -87.3 and at -inf,
  exactly 1 from x = 17 up and at +inf, 0.5 at 0. Monotone up to dips of 2 ulp, all in
  -0.5 < x < 0.35 (exp's steps between reduction intervals).
- ``tanh_fast(x)``: an odd polynomial for |x| < 0.625, ``1 - 2 / (e^{2|x|} + 1)`` above;
  absolute error <= 8.1e-8, relative error <= 1.5e-7, monotone (no dip at all), exactly
  +-1 from |x| = 9.1 up and at +-inf, +-0 at +-0, and ``tanh_fast(x) == x`` for |x| < 2^-12
  (subnormals included).
- NaN in, NaN out, for all three.

float64 approximations (opt-in, ``SEQBENCH_FAST_FLOAT64=1``; float64 gates are exact by
default): branch-free, so that float64 gate loops vectorise too, with errors at the level of
libm's own (glibc documents up to 1-2 ulp for exp and tanh). Measured against long double
(80-bit) references in tests/test_fastmath.py:

- ``exp_f64(x)``: Cody-Waite reduction, Taylor polynomial of degree 13 on |r| <= ln2/2
  (truncation < 5e-18 relative), 2^k put in the exponent bits. At most 1 ulp for x in
  [-708, 709]; clamped outside (e^-708 and e^709: a sigmoid of that is 0 or 1 anyway).
- ``sigmoid_f64(x) = 1 / (1 + exp_f64(-x))``: at most 2.5 ulp (the exact functions' own
  1 / (1 + exp(-x)) reaches 2.25 on the same points: two roundings after exp's); exactly 0
  below -709 (where
  libm's exp overflows and 1 / (1 + inf) is 0 too), exactly 1 from 37 up.
- ``tanh_f64(x)``: -m / (2 + m) with m = expm1(-2|x|) (Cody-Waite reduction, Taylor
  polynomial in Estrin's scheme), one path for all x; at most 4 ulp (2.5 seen) and 5e-16
  absolute. 1.2-1.3 ns an element with 512-bit vectors here, against 2.0 for the rational +
  exp pair it replaced (both paths computed, Horner chains).
  The echo-state kernels always use it (their states equal NumPy's to 1e-12).
- NaN in, NaN out; +-inf give the limits.

About 0.4-0.7 ns an element vectorised (AVX2), against 4 ns (sigmoid) and 12 ns (tanh) for a
scalar libm call per element.
"""

import math
from math import copysign, exp, tanh

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import config

# ---------------------------------------------------------------- exact functions


@njit(inline="always")
def sigmoid(z):
    return 1.0 / (1.0 + exp(-z))


@njit(inline="always")
def dsigmoid_from_output(s):  # d/dz sigmoid(z) = s (1 - s)
    return s * (1.0 - s)


@njit(inline="always")
def tanh_(z):
    return tanh(z)


@njit(inline="always")
def dtanh_from_output(s):  # d/dz tanh(z) = 1 - s^2
    return 1.0 - s * s


@njit(inline="always")
def relu(z):
    return z if z > 0.0 else 0.0 * z


@njit(inline="always")
def drelu_from_output(s):  # d/dz relu(z) = [z > 0] = [s > 0]
    return 1.0 if s > 0.0 else 0.0


# ---------------------------------------------------------------- float32 approximations

_f = np.float32
_ONE, _TWO, _HALF = _f(1.0), _f(2.0), _f(0.5)
_LOG2E = _f(1.44269504088896341)
_LN2_HI, _LN2_LO = _f(0.693359375), _f(-2.12194440e-4)  # Cody-Waite: ln 2 = hi + lo
# e^r = 1 + r + r^2 (P0 + P1 r + ... + P5 r^5) on |r| <= ln2/2 (Cephes expf)
_P0, _P1, _P2 = _f(5.0000001201e-1), _f(1.6666665459e-1), _f(4.1665795894e-2)
_P3, _P4, _P5 = _f(8.3334519073e-3), _f(1.3981999507e-3), _f(1.9875691500e-4)
_EXP_LO, _EXP_HI = _f(-87.3), _f(88.3)  # 2^n stays a normal float32 inside this range
_N_LO, _N_HI = _f(-126.0), _f(127.0)
# tanh(x) = x + x^3 (T0 + T1 x^2 + ... + T4 x^8) on |x| < 0.625 (Cephes tanhf)
_T0, _T1, _T2 = _f(-3.33332819422e-1), _f(1.33314422036e-1), _f(-5.37397155531e-2)
_T3, _T4 = _f(2.06390887954e-2), _f(-5.70498872745e-3)
_TANH_SMALL = _f(0.625)
_SIG_LO = _f(-87.3)  # sigmoid below this is under 2^-126: return 0


def _make_pow2i(bits, mantissa, bias):
    """An intrinsic 2**n for a float of ``bits`` bits and an int of the same width, n in the
    normal exponent range: n + bias put in the exponent bits."""
    int_t, float_t = getattr(types, f"int{bits}"), getattr(types, f"float{bits}")
    float_ir = ir.FloatType() if bits == 32 else ir.DoubleType()

    @intrinsic
    def pow2i(typingctx, n):
        if n != int_t:
            return None

        def codegen(context, builder, signature, args):
            i = ir.IntType(bits)
            biased = builder.add(args[0], ir.Constant(i, bias))
            return builder.bitcast(builder.shl(biased, ir.Constant(i, mantissa)), float_ir)

        return float_t(int_t), codegen

    return pow2i


_pow2i = _make_pow2i(32, 23, 127)  # float32, n in [-126, 127]
_pow2i64 = _make_pow2i(64, 52, 1023)  # float64, n in [-1022, 1023]


@njit(inline="always", fastmath=config.FASTMATH)
def exp_fast(x):
    """e^x for float32, branch-free (selects only); see the module docstring for bounds."""
    x = _EXP_HI if x > _EXP_HI else x  # NaN passes both clamps
    x = _EXP_LO if x < _EXP_LO else x
    n = np.floor(x * _LOG2E + _HALF)
    n = n if n >= _N_LO else _N_LO  # also maps NaN to a defined integer
    n = n if n <= _N_HI else _N_HI
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = _P5 * r + _P4
    p = p * r + _P3
    p = p * r + _P2
    p = p * r + _P1
    p = p * r + _P0
    p = p * (r * r) + r + _ONE
    return p * _pow2i(np.int32(n))


@njit(inline="always", fastmath=config.FASTMATH)
def sigmoid_fast(x):
    s = _ONE / (_ONE + exp_fast(-x))
    return _f(0.0) if x < _SIG_LO else s


@njit(inline="always", fastmath=config.FASTMATH)
def tanh_fast(x):
    a = abs(x)
    # |x| >= 0.625: 1 - 2 / (e^{2|x|} + 1), sign restored below
    big = _ONE - _TWO / (exp_fast(a + a) + _ONE)
    big = big if x >= _f(0.0) else -big
    # |x| < 0.625: odd polynomial, exact for subnormals (x + tiny)
    z = x * x
    p = _T4 * z + _T3
    p = p * z + _T2
    p = p * z + _T1
    p = p * z + _T0
    small = x + x * z * p
    return small if a < _TANH_SMALL else big


# ---------------------------------------------------------------- float64 approximations

_INV_LN2_64 = 1.4426950408889634
_LN2_HI_64 = 6.93147180369123816490e-01  # Cody-Waite: ln 2 = hi + lo, hi * k exact
_LN2_LO_64 = 1.90821492927058770002e-10
_EXP64_LO, _EXP64_HI = -708.0, 709.0  # 2^k a normal float64 inside
_TANH64_ONE = 20.0  # tanh(z) rounds to +-1 for |z| > 19.1
_SIG64_LO = -709.0


@intrinsic
def _reduce_ln2(typingctx, x, k):
    """x - k ln 2 as (x - k hi) - k lo, each step one fused multiply-add. numba puts every
    fastmath flag on every float add and multiply of a kernel (its fastmath pass), and with
    'reassoc' LLVM folds the two steps back into x - k (hi + lo), which loses the split's
    point (at x = 700: 200 ulp of error instead of under 1); an fma call it leaves alone."""
    if x != types.float64 or k != types.float64:
        return None

    def codegen(context, builder, signature, args):
        x, k = args
        f64 = ir.DoubleType()
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f64, [f64, f64, f64]), "llvm.fma.f64"
        )
        minus_k = builder.fneg(k)
        r = builder.call(fma, [minus_k, ir.Constant(f64, _LN2_HI_64), x])
        return builder.call(fma, [minus_k, ir.Constant(f64, _LN2_LO_64), r])

    return types.float64(types.float64, types.float64), codegen


@intrinsic
def _fma64(typingctx, a, b, c):
    """a * b + c in one rounding, kept as written (see _reduce_ln2 for why a plain a * b + c
    is not: with 'reassoc' LLVM may regroup it)."""
    if not all(v == types.float64 for v in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f64, [f64, f64, f64]), "llvm.fma.f64"
        )
        return builder.call(fma, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


# expm1(r) = r + r^2 (E0 + E1 r + ... + E11 r^11) on |r| <= ln2/2: Taylor, E_n = 1/(n + 2)!
# (truncation < 2e-17 relative), evaluated by Estrin's scheme: four FMA levels deep instead of
# Horner's twelve, so that consecutive vectors overlap.
_E = tuple(1.0 / math.factorial(n + 2) for n in range(12))


@njit(inline="always", fastmath=config.FASTMATH)
def _expm1_reduced(r):
    r2 = r * r
    r4 = r2 * r2
    lo = (_E[0] + r * _E[1]) + r2 * (_E[2] + r * _E[3])
    mid = (_E[4] + r * _E[5]) + r2 * (_E[6] + r * _E[7])
    hi = (_E[8] + r * _E[9]) + r2 * (_E[10] + r * _E[11])
    return r + r2 * (lo + r4 * (mid + r4 * hi))


@njit(inline="always", fastmath=config.FASTMATH)
def exp_f64(x):
    """e^x in float64, branch-free; see the module docstring for bounds."""
    x = _EXP64_HI if x > _EXP64_HI else x  # NaN passes both clamps
    x = _EXP64_LO if x < _EXP64_LO else x
    k = np.floor(x * _INV_LN2_64 + 0.5)
    k = k if k >= -1022.0 else -1022.0  # also maps NaN to a defined integer
    k = k if k <= 1023.0 else 1023.0
    r = _reduce_ln2(np.float64(x), k)
    two_k = _pow2i64(np.int64(k))
    return _fma64(two_k, _expm1_reduced(r), two_k)  # 2^k e^r = 2^k (1 + expm1 r)


@njit(inline="always", fastmath=config.FASTMATH)
def sigmoid_f64(x):
    s = 1.0 / (1.0 + exp_f64(-x))
    return 0.0 if x < _SIG64_LO else s


@njit(inline="always", fastmath=config.FASTMATH)
def tanh_f64(z):
    """tanh in float64 arithmetic, branch-free so that loops over it vectorise:
    tanh|z| = -m / (2 + m) with m = expm1(-2|z|) in (-1, 0], which has no cancellation
    anywhere (2 + m is in (1, 2]), so one path serves every |z|."""
    a = abs(z)
    a = _TANH64_ONE if a > _TANH64_ONE else a  # NaN passes
    y = -2.0 * a
    k = np.floor(y * _INV_LN2_64 + 0.5)  # in [-58, 0]
    r = _reduce_ln2(y, k)
    p = _expm1_reduced(r)
    two_k = _pow2i64(np.int64(k))
    # expm1(y) = 2^k (1 + p) - 1 = 2^k p + (2^k - 1): 2^k - 1 is exact, one rounding after
    m = _fma64(two_k, p, two_k - 1.0)
    return copysign(-m / (2.0 + m), z)


# ---------------------------------------------------------------- what the CPU kernels call


def sigmoid_kernel(z):
    """sigmoid in z's dtype: ``sigmoid_fast`` for float32 (config.FAST_FLOAT32),
    ``sigmoid_f64`` for float64 under config.FAST_FLOAT64, else exact."""
    return sigmoid(z)


def tanh_kernel(z):
    """tanh in z's dtype: ``tanh_fast`` for float32 (config.FAST_FLOAT32), ``tanh_f64`` for
    float64 under config.FAST_FLOAT64, else exact."""
    return tanh_(z)


# (dtype, flag) -> (sigmoid, tanh, exp) for what the kernels call; exact otherwise
_APPROXIMATIONS = {
    (types.float32, "FAST_FLOAT32"): (sigmoid_fast, tanh_fast, exp_fast),
    (types.float64, "FAST_FLOAT64"): (sigmoid_f64, tanh_f64, exp_f64),
}


def _pick(z, which, exact):
    for (dtype, flag), fns in _APPROXIMATIONS.items():
        if z == dtype and getattr(config, flag):
            return fns[which]
    return exact


def exp_kernel(z):
    """e^z in z's dtype: ``exp_fast`` for float32 (config.FAST_FLOAT32), ``exp_f64`` for
    float64 under config.FAST_FLOAT64, else exact."""
    return exp(z)


@overload(exp_kernel, inline="always")
def _exp_kernel(z):
    f = _pick(z, 2, exp)
    return lambda z: f(z)


@overload(sigmoid_kernel, inline="always")
def _sigmoid_kernel(z):
    f = _pick(z, 0, sigmoid)
    return lambda z: f(z)


@overload(tanh_kernel, inline="always")
def _tanh_kernel(z):
    f = _pick(z, 1, tanh_)
    return lambda z: f(z)


@njit(inline="always")
def dsigmoid_kernel(s):  # s (1 - s), in s's dtype
    return s * (type(s)(1.0) - s)


@njit(inline="always")
def dtanh_kernel(s):  # 1 - s^2, in s's dtype
    return type(s)(1.0) - s * s


@njit(inline="always")
def relu_kernel(z):  # z * 0 keeps the sign of zero and propagates NaN, as relu above
    return z if z > type(z)(0.0) else z * type(z)(0.0)


@njit(inline="always")
def drelu_kernel(s):
    return type(s)(1.0) if s > type(s)(0.0) else type(s)(0.0)
