"""Input validation shared by the library: every public function checks its arguments here.

Each check raises ``ValueError`` whose message names the argument, what is wrong and how to
fix it, so that bad input fails loudly before any work is done.
"""

from __future__ import annotations

import math
import numbers

import torch

#: Dtypes too coarse for the flows: float16 has 11 significant bits, bfloat16 8, so MMD², its gradient
#: and the sorted projections come out NaN or off by 10–30 %; compute in float32 or float64.
LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_floating(name: str, t: torch.Tensor) -> None:
    """Raise unless ``t`` is a non-empty tensor of float32/float64 (any shape) with only finite entries.

    float16 and bfloat16 are refused (:data:`LOW_PRECISION`), with the conversion to apply.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(
            f"{name} must have a floating dtype (float32 or float64), got {t.dtype}; "
            f"convert it with {name}.float() or {name}.double()"
        )
    if t.dtype in LOW_PRECISION:
        raise ValueError(
            f"{name} has dtype {t.dtype}, too coarse for MMD flows (NaN or errors of 10-30 %); "
            f"convert it with {name}.float() (or {name}.double()) first"
        )
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample")
    # One reduction first (a NaN or inf makes the sum non-finite); the full check only to confirm,
    # since a sum of large finite entries may overflow.
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf; remove or replace those entries")


def check_points(name: str, t: torch.Tensor) -> None:
    """Raise unless ``t`` is a valid point cloud of shape (N, d)."""
    check_floating(name, t)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, d), got {tuple(t.shape)}; "
            f"flatten each sample with {name}.flatten(1)"
        )


def check_pair(x: torch.Tensor, y: torch.Tensor, x_name: str = "x", y_name: str = "y") -> None:
    """Raise unless ``x`` (N, d) and ``y`` (M, d) are valid point clouds of one dimension, dtype and device."""
    check_points(x_name, x)
    check_points(y_name, y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same feature dimension, "
            f"got {x_name}: {tuple(x.shape)} and {y_name}: {tuple(y.shape)}"
        )
    if x.dtype != y.dtype:
        raise ValueError(f"{x_name} has dtype {x.dtype} but {y_name} has {y.dtype}; use one dtype")
    if x.device != y.device:
        raise ValueError(f"{x_name} is on {x.device} but {y_name} is on {y.device}; move both to one device")


def check_positive_int(name: str, value: int) -> None:
    """Raise unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_nonnegative_int(name: str, value: int) -> None:
    """Raise unless ``value`` is an int >= 0 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def check_number(
    name: str, value: float, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:
    """Raise unless ``value`` is a finite real number (bool refused) in the interval given by ``low``/``high``.

    ``low_open``/``high_open`` exclude the bound itself, e.g. ``low=0, low_open=True`` asks for ``value > 0``.
    The message names the argument, the value and the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        right = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {left}, {right}, got {value!r}")


def check_shape(name: str, shape) -> tuple[int, ...]:
    """``shape`` as a tuple if it is a non-empty tuple/list/Size of positive ints, else a ``ValueError``."""
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else None
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints such as (2,) or (1, 28, 28)")
    return shape
