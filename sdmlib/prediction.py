"""Prediction targets: the relations between x̂_0, ε̂ and v̂ given x_t (JiT, `docs/prediction_targets.md`).

The forward process is x_t = a_t x_0 + b_t ε^sq with a_t = √ᾱ_t, b_t = √(1−ᾱ_t) and ε^sq = S_t ε (eq. 3 as the
authors' code trains it; S_t = I at s0 = 0). diffusers' velocity is v = a_t ε − b_t x_0, so under squeezing
v^sq = a_t ε^sq − b_t x_0. Every relation below is linear in (x_t, prediction) with scalar coefficients, so it holds
unchanged in data coordinates (x_0, ε^sq, v^sq) and in whitened ones (S_t⁻¹x_0, ε, S_t⁻¹v^sq): the squeeze never
enters, which is why these functions take the scales a_t, b_t and no squeeze matrix. A caller in whitened
coordinates (the scheduler's step, a DDIM step) passes whitened tensors and gets whitened results.

This module is the one place where the relations are written. Each function is one relation, named after what it
returns; `convert` dispatches by diffusers' names ("epsilon", "sample", "v_prediction"). The scales broadcast
against the tensors: pass (B, 1, 1, 1) tensors for per-sample timesteps (`scales_at`). Math only: imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")

# JiT clamps 1 − t at 0.05 where its v-loss divides by it, i.e. bounds the implied weight 1/(1 − t) by 20.
DEFAULT_MAX_LOSS_WEIGHT = 20.0


def scales_at(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, ndim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, b_t) = (√ᾱ_t, √(1−ᾱ_t)) at each timestep, shaped (B, 1, …) to broadcast over a (B, …) tensor of `ndim`
    dimensions. Computed in the dtype of `alphas_cumprod` (pass float64 for exact arithmetic, then cast once)."""
    alpha_bar = alphas_cumprod[timesteps]
    shape = (-1,) + (1,) * (ndim - 1)
    return alpha_bar.sqrt().view(shape), (1 - alpha_bar).sqrt().view(shape)


# -- the forward quantities -----------------------------------------------------------------------------------


def noisy_sample(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. (3): x_t = a_t x_0 + b_t ε (ε^sq in data coordinates)."""
    return a * x0 + b * eps


def velocity(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """diffusers' v-target: v = a_t ε − b_t x_0 (v^sq = a_t ε^sq − b_t x_0 under squeezing)."""
    return a * eps - b * x0


# -- the six conversions, given x_t ---------------------------------------------------------------------------


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (x_t − b_t ε̂) / a_t. Divides by a_t (→ 0 at high noise)."""
    return (x_t - b * eps) / a


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ε̂ = (x_t − a_t x̂_0) / b_t. Divides by b_t (→ 0 at low noise)."""
    return (x_t - a * x0) / b


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x̂_0 = a_t x_t − b_t v̂ (uses a_t² + b_t² = 1)."""
    return a * x_t - b * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ε̂ = b_t x_t + a_t v̂ (uses a_t² + b_t² = 1)."""
    return b * x_t + a * v


def v_from_eps(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """v̂ = (ε̂ − b_t x_t) / a_t, the inverse of `eps_from_v`. Divides by a_t."""
    return (eps - b * x_t) / a


def v_from_x0(x_t: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """v̂ = (a_t x_t − x̂_0) / b_t, the inverse of `x0_from_v`. Divides by b_t."""
    return (a * x_t - x0) / b


_CONVERSIONS = {
    ("epsilon", "sample"): x0_from_eps,
    ("sample", "epsilon"): eps_from_x0,
    ("v_prediction", "sample"): x0_from_v,
    ("v_prediction", "epsilon"): eps_from_v,
    ("epsilon", "v_prediction"): v_from_eps,
    ("sample", "v_prediction"): v_from_x0,
}


def check_prediction_type(name: str, value: str) -> None:
    """A clear error for a prediction type (or loss space) that is not one of diffusers' three names."""
    if value not in PREDICTION_TYPES:
        raise ValueError(f"{name} must be one of {PREDICTION_TYPES}, got {value!r}")


def convert(
    prediction: torch.Tensor, source: str, target: str, x_t: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """A prediction of kind `source` as the equivalent prediction of kind `target`, given x_t (identity if equal)."""
    check_prediction_type("source", source)
    check_prediction_type("target", target)
    if source == target:
        return prediction
    return _CONVERSIONS[(source, target)](x_t, prediction, a, b)


def target_of(kind: str, x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The true value of a prediction of `kind` for a sample built from (x_0, ε^sq): x_0, ε^sq or v^sq."""
    check_prediction_type("kind", kind)
    if kind == "epsilon":
        return eps
    if kind == "sample":
        return x0
    return velocity(x0, eps, a, b)


def loss_weight(
    source: str, target: str, a: torch.Tensor, b: torch.Tensor, max_weight: float = DEFAULT_MAX_LOSS_WEIGHT
) -> torch.Tensor:
    """The factor c with convert(p̂) − convert(p) = c (p̂ − p): the squared error in `target` space of a prediction
    of kind `source` is c² times its squared error in `source` space. Bounded: |c| ≤ `max_weight`.

    Every conversion is affine in the prediction at fixed x_t, so c is the conversion of a unit prediction at
    x_t = 0 (read off `convert`, not written again). Where it divides by a_t or b_t it is unbounded: ε → x gives
    b_t/a_t (≈ 156 at t = T for the linear β schedule), x → ε gives a_t/b_t (≈ 100 at t = 0), ε → v gives 1/a_t and
    x → v gives 1/b_t. JiT meets the same problem in its v-loss for x-prediction, weight 1/(1 − t), and clamps 1 − t at
    0.05, i.e. bounds the weight by 20; the default bound here is the same 20, so that a handful of extreme timesteps
    cannot dominate the batch's loss (the loss of one sample may then be at most 400 times its unweighted value).
    """
    if max_weight <= 0:
        raise ValueError(f"max_weight must be positive, got {max_weight!r}")
    a, b = torch.broadcast_tensors(torch.as_tensor(a), torch.as_tensor(b))
    unit = torch.ones_like(a)
    weight = convert(unit, source, target, torch.zeros_like(a), a, b)
    return weight.clamp(-max_weight, max_weight)


def training_loss(
    prediction: torch.Tensor,
    x0: torch.Tensor,
    eps: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    prediction_type: str = "epsilon",
    loss_space: str = "epsilon",
    max_weight: float = DEFAULT_MAX_LOSS_WEIGHT,
) -> torch.Tensor:
    """Eq. (4) for any prediction × loss: the mean squared error, in `loss_space`, of the network output read as a
    prediction of `prediction_type` for x_t = a_t x_0 + b_t ε^sq (`eps` is ε^sq).

    With prediction_type == loss_space this is `F.mse_loss(prediction, target)` itself (ε/ε is the paper's loss, bit
    for bit). Otherwise the conversion's error is the prediction-space error times `loss_weight` (bounded by
    `max_weight`: see there), computed in float32 like the ε/ε loss.
    """
    target = target_of(prediction_type, x0, eps, a, b)
    if prediction_type == loss_space:
        return F.mse_loss(prediction.float(), target.float())
    weight = loss_weight(prediction_type, loss_space, a, b, max_weight).float()
    return (weight * (prediction.float() - target.float())).square().mean()


__all__ = [
    "training_loss",
    "PREDICTION_TYPES",
    "DEFAULT_MAX_LOSS_WEIGHT",
    "scales_at",
    "noisy_sample",
    "velocity",
    "x0_from_eps",
    "eps_from_x0",
    "x0_from_v",
    "eps_from_v",
    "v_from_eps",
    "v_from_x0",
    "convert",
    "check_prediction_type",
    "target_of",
    "loss_weight",
]
