"""Scalar activations and their derivatives from the saved output, shared by all kernels.

Each derivative is written in terms of the activation's output ``s = f(z)``, which is what
the forward pass saves, so backward never re-evaluates a transcendental for a gate.
"""

from math import exp, tanh

from numba import njit


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
