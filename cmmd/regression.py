r"""The MMSE regressor: the fair baseline for the accuracy of a posterior mean [method §6].

Among all estimators of X from y, the posterior mean :math:`\mathbb E[X \mid y]` has the smallest expected
squared error. A network trained with the squared error on the flow's training pairs approximates it:

.. math::

    \hat\theta = \arg\min_\theta \frac1N \sum_{i=1}^N \big\| \Phi_\theta(u_i, y_i) - x_i \big\|^2,
    \qquad \hat x(y) = \Phi_{\hat\theta}(u, y),

with the **same** architecture :math:`\Phi` as the flow's networks (a :class:`cmmd.nets.UNet` takes the pair
(input, condition)), the same pairs :math:`(x_i, y_i)`, the same Adam loop and at least the flow's total Adam budget
(:func:`adam_budget`). The network input :math:`u_i` is fixed, not learned:

* ``"zeros"`` (the fair choice, the default): :math:`u_i = 0`, so :math:`\hat x` is a deterministic function of
  y alone, a regressor of :math:`\mathbb E[X \mid y]`;
* ``"noise"``: one draw :math:`u_i \sim U[0, 1]^d` per training pair, kept for all steps (what the flow's first
  network sees). A network can memorise the pairs by their codes :math:`u_i`, and a prediction depends on the
  noise drawn for it; this mode exists to measure that effect, not as the baseline.

Even an exact posterior sampler cannot beat the MMSE estimator: the mean of its S samples has (1 + 1/S) times the
MMSE [method §6], so a well-trained regressor is the bar that a posterior mean approaches. The training loop is the flow's own
(:func:`cmmd.model.train_network`: minibatches drawn with replacement from ``generator``,
loss :math:`\frac1B \sum_b \|\Phi(u_b, y_b) - x_b\|^2`, Adam, constant or cosine learning rate, optional gradient
clipping), so the baseline and the flow differ only in their targets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cmmd._checks import check_floating, check_number, check_positive_int
from cmmd.model import LR_SCHEDULES, FlowConfig, train_network

INPUTS = ("zeros", "noise")


@dataclass
class MMSERegressor:
    """A network trained by :func:`fit_mmse_regressor` to predict x from the condition y alone.

    Attributes:
        net: the trained network Φ(u, y) (in eval mode).
        x_shape, y_shape: shapes of one x and one y, without the batch dimension.
        input: ``"zeros"`` or ``"noise"``, the fixed input u the network saw in training.
        steps: Adam steps it was trained for.
        train_loss: mean training loss ‖Φ(u, y) − x‖² (per pair, summed over entries) of the last 10 % of the steps.
    """

    net: nn.Module
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    input: str
    steps: int
    train_loss: float

    @torch.no_grad()
    def predict(self, y: torch.Tensor, *, batch_size: int = 256,
                generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The estimate :math:`\hat x(y) = \Phi(u, y) \approx \mathbb E[X \mid y]` of each observation.

        Args:
            y: observations (B, *y_shape).
            batch_size: rows pushed through the network at once (memory bound; rows are independent, so the
                result depends on it only through the rounding of the matrix products).
            generator: source of the inputs u ~ U[0, 1]^d when ``input == "noise"`` (required then, drawn at
                once for all rows); unused for ``"zeros"``.

        Returns:
            (B, *x_shape) on the device and in the dtype of the network.
        """
        check_floating("y", y)
        if tuple(y.shape[1:]) != self.y_shape:
            raise ValueError(f"y must have shape (B, *{self.y_shape}) like the training observations, "
                             f"got {tuple(y.shape)}")
        check_positive_int("batch_size", batch_size)
        param = next(self.net.parameters(), None)
        dtype, device = (param.dtype, param.device) if param is not None else (y.dtype, y.device)
        y = y.to(device=device, dtype=dtype)
        inputs = _inputs(self.input, y.shape[0], self.x_shape, dtype, device, generator)
        self.net.eval()
        out = torch.empty((y.shape[0], *self.x_shape), dtype=dtype, device=device)
        for start in range(0, y.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            out[rows] = self.net(inputs[rows], y[rows])
        return out


def fit_mmse_regressor(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    lr_schedule: str = "cosine",
    grad_clip: float | None = None,
    input: str = "zeros",
) -> MMSERegressor:
    r"""Train a copy of ``net`` by Adam on :math:`\frac1B \sum_b \|\Phi(u_b, y_b) - x_b\|^2` (module docstring).

    Args:
        net: an untrained network of the flow's architecture, called as ``net(u, y)`` with u (B, *x_shape) and
            y (B, *y_shape) and returning (B, *x_shape). It is deep-copied (the argument is left unchanged) and
            moved to the device and dtype of x.
        x: targets (N, *x_shape), the ground truths of the training pairs.
        y: conditions (N, *y_shape), their observations (same N, dtype and device as x).
        steps: Adam steps; the fair budget is at least :func:`adam_budget` of the flow it is compared with.
        batch_size: pairs per step (drawn with replacement; the flow's batch size for a fair comparison).
        lr: Adam learning rate.
        generator: source of all randomness here (the ``"noise"`` inputs, then the minibatches), on x's device;
            the same generator state and the same initial ``net`` give the same weights (CPU).
        lr_schedule: ``"cosine"`` (decays to 0 over ``steps``) or ``"constant"``.
        grad_clip: clip the gradient norm to this value; ``None``: no clipping.
        input: ``"zeros"`` (the fair baseline: a deterministic regressor of E[x | y]) or ``"noise"`` (one
            U[0, 1]^d draw per pair, fixed over the steps).

    Returns:
        :class:`MMSERegressor` holding the trained copy.
    """
    if not isinstance(net, nn.Module):
        raise ValueError(f"net must be a torch.nn.Module called as net(input, y), got {type(net).__name__}")
    check_floating("x", x)
    check_floating("y", y)
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"x and y must have shapes (N, *x_shape) and (N, *y_shape) with a non-empty shape per "
                         f"pair, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of pairs, got {x.shape[0]} and {y.shape[0]}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(f"x ({x.dtype}, {x.device}) and y ({y.dtype}, {y.device}) must match")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_number("lr", lr, low=0, low_open=True)
    if grad_clip is not None:
        check_number("grad_clip (or None for no clipping)", grad_clip, low=0, low_open=True)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator (the source of the minibatches), got {generator!r:.80}")
    x_shape, y_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
    model = copy.deepcopy(net).to(device=x.device, dtype=x.dtype)
    inputs = _inputs(input, x.shape[0], x_shape, x.dtype, x.device, generator)
    model.eval()
    with torch.no_grad():
        probe = model(inputs[:2], y[:2])
    if tuple(probe.shape) != tuple(x[:2].shape):
        raise ValueError(f"net(input, y) returned shape {tuple(probe.shape)} for 2 pairs, but the targets have "
                         f"{tuple(x[:2].shape)}: the network must map (B, *x_shape), (B, *y_shape) to (B, *x_shape)")
    # The flow's own Adam loop (it reads only these config fields): the baseline is trained as the flow's networks are.
    config = FlowConfig(train_steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                        grad_clip=grad_clip)
    loss = train_network(model, inputs, y, x, config, generator)
    model.eval()
    return MMSERegressor(net=model, x_shape=x_shape, y_shape=y_shape, input=input, steps=steps, train_loss=loss)


def adam_budget(config: FlowConfig | Sequence[FlowConfig]) -> int:
    r"""The total number of Adam steps of a flow's networks: :math:`L \times` ``train_steps``, summed over levels.

    A fair MMSE regressor gets at least this many steps (at the flow's batch size) [method §6]: the flow trains
    each of its L = ``config.n_networks`` networks for ``config.train_steps`` steps, so a baseline with fewer steps
    would lose by budget, not by method. A pyramid passes the configs of its levels,
    ``[level.config for level in pyramid.levels]``.

    Args:
        config: one :class:`~cmmd.model.FlowConfig`, or a non-empty sequence of them (one per level).

    Returns:
        :math:`\sum_\text{levels} L \cdot \text{train\_steps}`.
    """
    configs = [config] if isinstance(config, FlowConfig) else list(config) if isinstance(config, Sequence) else None
    if not configs or not all(isinstance(c, FlowConfig) for c in configs):
        raise ValueError(f"config must be a FlowConfig or a non-empty sequence of FlowConfigs, got {config!r:.80}")
    return sum(c.n_networks * c.train_steps for c in configs)


def _inputs(kind: str, n: int, x_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
            generator: torch.Generator | None) -> torch.Tensor:
    """The fixed network inputs u (n, *x_shape): zeros (a stride-0 view, no memory) or U[0, 1] from ``generator``."""
    if kind == "zeros":
        return torch.zeros((1, *x_shape), dtype=dtype, device=device).expand(n, *x_shape)
    if generator is None:
        raise ValueError("input='noise' draws the network inputs u ~ U[0, 1]^d: pass generator=torch.Generator()")
    return torch.rand((n, *x_shape), generator=generator, dtype=dtype, device=device)
