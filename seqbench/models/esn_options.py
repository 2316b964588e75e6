"""The echo-state network's declared options (seqbench.options.Option): what a run may set.

OPTIONS are build_esn's keywords, FIT_OPTIONS the readout fit's (seqbench.esn_fit.fit_esn's;
the washout is the task's option). A run's feedback is output_feedback (F = I); feedback_size
(any F) is build_esn's alone. ``linear`` is another name of the ``identity`` activation: the
build resolves it (ACTIVATION_NAMES), so the reservoir and the kernels see ``identity`` only.
"""

from __future__ import annotations

from ..options import Option

DISTRIBUTIONS = ("normal", "uniform")
ACTIVATION_NAMES = {"tanh": "tanh", "identity": "identity", "linear": "identity"}
ACTIVATIONS = tuple(ACTIVATION_NAMES)  # the one choice list: declaration and build

OPTIONS = (
    Option("spectral_radius", float, 0.9, "max |eigenvalue| W is rescaled to", 0.0, low_open=True),
    Option("leak", float, 1.0, "leak rate a of x_t = (1 - a) x_t-1 + a f(...)", 0.0, 1.0, True),
    Option("input_scaling", float, 1.0, "W_in entries are +-input_scaling", 0.0, low_open=True),
    Option("connectivity", float, 0.1, "fraction of nonzero entries of W", 0.0, 1.0, True),
    Option("input_connectivity", float, 1.0, "fraction of nonzero W_in", 0.0, 1.0, True),
    Option("bias_scaling", float, 0.0, "b ~ U(-1, 1) * bias_scaling", 0.0),
    Option(
        "activation",
        str,
        "tanh",
        "f; identity (or its alias linear) is the linear reservoir",
        choices=ACTIVATIONS,
    ),
    Option("weight_distribution", str, "normal", "W's nonzero values", choices=DISTRIBUTIONS),
    Option("sparse", bool, True, "W as a CSR matrix (false: dense)"),
    Option("orthogonal", bool, False, "W random orthogonal x spectral_radius (dense)"),
    Option("output_feedback", bool, False, "readout fed back via W_fb (teacher-forced fit)"),
    Option("feedback_scaling", float, 1.0, "W_fb ~ U(-1, 1) x this", 0.0, low_open=True),
)
FIT_OPTIONS = (
    Option("ridge", float, 1e-6, "ridge penalty of the readout fit", 0.0),
    Option("teacher_noise", float, 0.0, "U(-a, a) added to the fed-back teacher in the fit", 0.0),
    Option("state_noise", float, 0.0, "U(-a, a) added to each pre-activation in the fit", 0.0),
)
BUILD_ONLY = ("feedback_size",)  # build_esn's, not a run's
