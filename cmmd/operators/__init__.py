"""Forward operators with verified adjoints, and noise models (layer 1 of README.md's "Architecture").

Contract (:class:`LinearOperator`): ``A(x)`` / ``A.forward(x)`` maps (B, *x_shape) to
(B, *y_shape), ``A.adjoint(y)`` is the exact transpose; device and dtype follow the input.
"""

from cmmd.operators.base import LinearOperator
from cmmd.operators.bicubic import BicubicDownsample, bicubic_matrix, upsample_bicubic
from cmmd.operators.blur import BlurDownsample, gaussian_kernel_1d
from cmmd.operators.conditions import ClassCondition, Inpainting, as_channels
from cmmd.operators.noise import add_gaussian_noise, lodopab_mu_scale, low_dose
from cmmd.operators.radon import (FBPChoice, ParallelBeamRadon, fourier_filter, limited_angle, measured_angle_numbers,
                                  ramp_filter, tune_fbp)

__all__ = [
    "LinearOperator",
    "ClassCondition",
    "as_channels",
    "Inpainting",
    "BlurDownsample",
    "gaussian_kernel_1d",
    "BicubicDownsample",
    "bicubic_matrix",
    "upsample_bicubic",
    "ParallelBeamRadon",
    "limited_angle",
    "measured_angle_numbers",
    "fourier_filter",
    "ramp_filter",
    "tune_fbp",
    "FBPChoice",
    "add_gaussian_noise",
    "low_dose",
    "lodopab_mu_scale",
]
