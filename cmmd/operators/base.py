"""The operator contract: a batched linear map with its exact adjoint.

Every forward model of the paper (class label, inpainting, blur + downsampling, bicubic
downsampling, parallel-beam Radon) is a :class:`LinearOperator` ``A`` with

* ``A.forward(x)`` (also ``A(x)``): ``x`` of shape ``(B, *A.x_shape)`` → ``(B, *A.y_shape)``;
* ``A.adjoint(y)``: ``y`` of shape ``(B, *A.y_shape)`` → ``(B, *A.x_shape)``, the transpose
  ``Aᵀ`` of the same discrete matrix, so that ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ up to rounding.

Device and dtype follow the input; an operator holds its constants in float64 on the CPU and
casts them on each call. Noise models are separate functions (:mod:`cmmd.operators.noise`).
"""

from __future__ import annotations

import torch

from cmmd._checks import check_floating, check_positive_int


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(B, " + ", ".join(str(s) for s in shape) + ")"


def check_batch(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``t`` is a finite floating tensor of shape ``(B, *shape)``."""
    check_floating(name, t)
    if t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {_shape_text(shape)} with a leading batch dimension, "
            f"got {tuple(t.shape)}; add a batch dimension with {name}.unsqueeze(0) if needed"
        )


def check_positive_float(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number > 0."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def image_size_pair(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``n`` → (n, n); validate an (height, width) pair of positive ints."""
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    check_positive_int("image_size[0]", size[0])
    check_positive_int("image_size[1]", size[1])
    return int(size[0]), int(size[1])


class LinearOperator:
    """A linear map ``A: R^x_shape → R^y_shape`` applied independently to each batch element.

    Subclasses set ``x_shape`` and ``y_shape`` (per-sample shapes, without the batch
    dimension) and implement ``_forward`` and ``_adjoint`` on validated input.
    """

    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A``: ``x`` (B, *x_shape) → (B, *y_shape)."""
        check_batch("x", x, self.x_shape)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``Aᵀ``: ``y`` (B, *y_shape) → (B, *x_shape)."""
        check_batch("y", y, self.y_shape)
        return self._adjoint(y)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(x_shape={self.x_shape}, y_shape={self.y_shape})"
