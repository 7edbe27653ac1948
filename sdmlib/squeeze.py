"""The squeeze operators of Squeezed Diffusion Models, one equation per function.

Every squeeze matrix of the paper has the same two eigenspaces: the principal axis v̂ and its orthogonal
complement v̂⊥. Eq. (9) reads

    S^SDM(s) = I + v̂v̂ᵀ (e^{−s} − 1),            eigenvalues  λ∥ = e^{−s},  λ⊥ = 1
    S^HDM(s) = e^{−s} v̂v̂ᵀ + e^{s/(n−1)} (I − v̂v̂ᵀ), eigenvalues  λ∥ = e^{−s},  λ⊥ = e^{s/(n−1)}

so every product, inverse and sum of squeeze matrices is again λ⊥ I + (λ∥ − λ⊥) v̂v̂ᵀ, and all the algebra of
the paper (eqs. 3, 11, 12) reduces to arithmetic on the pair (λ∥, λ⊥). This module does exactly that: it never
builds a per-pixel matrix, and applying a squeeze to a (B, n, H, W) batch is one projection onto v̂ and one rank-1
update.

Schedule arithmetic is done in float64 and cast once, at the boundary, to the dtype of the data.
This module imports torch and nothing else.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, Union

import torch

VARIANTS = ("sdm", "hdm")
SCHEDULE_KINDS = ("linear", "constant")

Strength = Union[float, torch.Tensor]
AxisLike = Union[torch.Tensor, Sequence[float]]


# ----------------------------------------------------------------------------------------------------------------
# Input checks. Every public function funnels its arguments through these, so bad input fails in one way: a
# ValueError that names the argument, the value and what is allowed.


def _check_variant(variant: str, n: int | None = None) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "hdm" and n is not None and n < 2:
        raise ValueError(
            f"variant='hdm' needs at least 2 channels (it compensates on the n−1 orthogonal directions), got n={n}"
        )


def _check_finite_number(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return value


def unit_axis(axis: AxisLike, n: int | None = None, *, name: str = "axis") -> torch.Tensor:
    """Return `axis` as a float64 unit vector of length n, or raise a ValueError naming what is wrong.

    A non-unit axis is normalised (one within 1e-12 of unit length is returned as it is). The finiteness and
    zero-norm checks read the values, so they run only for axes held on the CPU (a list, or a CPU tensor); an axis
    already on an accelerator is normalised without a check, so that no squeeze in a training or sampling loop
    waits for the device.
    """
    if not torch.is_tensor(axis):
        try:
            axis = torch.tensor(axis, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a 1-D sequence of real numbers, got {axis!r}") from None
    if axis.ndim != 1 or axis.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {tuple(axis.shape)}")
    if n is not None and axis.shape[0] != n:
        raise ValueError(f"{name} has length {axis.shape[0]} but the data has n={n} channels; they must match")
    dtype = torch.float32 if axis.device.type == "mps" else torch.float64  # MPS has no float64
    axis = axis.to(dtype)
    norm = torch.linalg.vector_norm(axis)
    if axis.device.type == "cpu":
        if not torch.isfinite(axis).all():
            raise ValueError(f"{name} must be finite, got {axis.tolist()}")
        if norm == 0:
            raise ValueError(f"{name} must have a non-zero norm, got {axis.tolist()}")
        if abs(float(norm) - 1.0) < 1e-12:
            return axis  # already unit: keep it bit for bit, so a saved and reloaded axis is the same axis
    return axis / norm


def _strength_tensor(s: Strength, name: str = "s") -> torch.Tensor:
    """`s` as a floating tensor (float64 unless it already lives on a device with another float dtype)."""
    if not torch.is_tensor(s):
        return torch.tensor(_check_finite_number(name, s), dtype=torch.float64)
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.device.type == "cpu" and not torch.isfinite(s).all():
        raise ValueError(f"{name} must be finite, got {s.tolist()}")
    return s


# ----------------------------------------------------------------------------------------------------------------
# Eq. (9) and its consequences, in the eigenbasis.


class SqueezeEigenvalues(NamedTuple):
    """The two eigenvalues of a squeeze-type matrix: λ∥ on v̂ and λ⊥ on every direction orthogonal to it."""

    parallel: torch.Tensor
    perpendicular: torch.Tensor


def squeeze_eigenvalues(s: Strength, n: int, variant: str = "sdm") -> SqueezeEigenvalues:
    """Eq. (9) in the eigenbasis: λ∥ = e^{−s} for both variants; λ⊥ = 1 (SDM) or e^{s/(n−1)} (HDM).

    `s` may be a number or a tensor of any shape; the eigenvalues have the shape of `s`.
    """
    _check_variant(variant, n)
    s = _strength_tensor(s)
    parallel = torch.exp(-s)
    perpendicular = torch.ones_like(s) if variant == "sdm" else torch.exp(s / (n - 1))
    return SqueezeEigenvalues(parallel, perpendicular)


def _matrix_from_eigenvalues(axis: torch.Tensor, eigenvalues: SqueezeEigenvalues) -> torch.Tensor:
    """λ⊥ I + (λ∥ − λ⊥) v̂v̂ᵀ, batched over the shape of the eigenvalues: (..., n, n)."""
    n = axis.shape[0]
    projector = torch.outer(axis, axis)  # v̂v̂ᵀ, (n, n)
    identity = torch.eye(n, dtype=axis.dtype, device=axis.device)
    lam_par = eigenvalues.parallel.to(axis)[..., None, None]
    lam_perp = eigenvalues.perpendicular.to(axis)[..., None, None]
    return lam_perp * identity + (lam_par - lam_perp) * projector


def squeeze_matrix(axis: AxisLike, s: Strength, variant: str = "sdm") -> torch.Tensor:
    """Eq. (9): the n×n squeeze matrix S(s) of the SDM or HDM variant (float64; batched if `s` is a tensor).

    SDM: S(s) = I + v̂v̂ᵀ (e^{−s} − 1).  HDM: S(s) = e^{−s} v̂v̂ᵀ + e^{s/(n−1)} (I − v̂v̂ᵀ).
    s > 0 squeezes (less noise along v̂), s < 0 anti-squeezes.
    """
    v = unit_axis(axis)
    return _matrix_from_eigenvalues(v, squeeze_eigenvalues(s, v.shape[0], variant))


def inverse_squeeze_matrix(axis: AxisLike, s: Strength, variant: str = "sdm") -> torch.Tensor:
    """Eq. (11): S(s)⁻¹ in closed form, from Sherman–Morrison.

    SDM: S(s)⁻¹ = I + v̂v̂ᵀ (e^{s} − 1).  HDM: S(s)⁻¹ = e^{s} v̂v̂ᵀ + e^{−s/(n−1)} (I − v̂v̂ᵀ).
    Both are S(−s): inverting a squeeze flips the sign of its strength.
    """
    v = unit_axis(axis)
    lam = squeeze_eigenvalues(s, v.shape[0], variant)
    return _matrix_from_eigenvalues(v, SqueezeEigenvalues(1 / lam.parallel, 1 / lam.perpendicular))


def drift(axis: AxisLike, s_t: Strength, s_prev: Strength, variant: str = "sdm") -> torch.Tensor:
    """Eq. (12): the drift R_t = S_t⁻¹ S_{t−1} of the whitened chain (8).

    SDM: R_t = I + v̂v̂ᵀ (e^{s_t − s_{t−1}} − 1); with s(t) = s0 β_t/β_max this is exp[s0 Δβ/β_max] − 1 on v̂.
    HDM: additionally e^{(s_{t−1} − s_t)/(n−1)} on v̂⊥.
    """
    v = unit_axis(axis)
    n = v.shape[0]
    lam_t = squeeze_eigenvalues(s_t, n, variant)
    lam_prev = squeeze_eigenvalues(s_prev, n, variant)
    return _matrix_from_eigenvalues(
        v,
        SqueezeEigenvalues(lam_prev.parallel / lam_t.parallel, lam_prev.perpendicular / lam_t.perpendicular),
    )


# ----------------------------------------------------------------------------------------------------------------
# The squeeze as an operator on data: (B, n, ...) tensors, channel axis 1.


def apply_squeeze(
    x: torch.Tensor,
    axis: AxisLike,
    s: Strength,
    variant: str = "sdm",
    inverse: bool = False,
) -> torch.Tensor:
    """Eq. (9) applied along the channel axis: S(s)·x, or S(s)⁻¹·x (eq. 11) with `inverse=True`.

    x: (B, n, ...) — images (B, n, H, W), or plain vectors (B, n). s: a number, a 0-d tensor, or one strength
    per sample, shape (B,). The cost is one projection p = v̂ᵀx per pixel and one rank-1 update,

        S(s) x = λ⊥ x + (λ∥ − λ⊥) v̂ p,

    O(B·n·H·W) with no per-pixel or per-sample matrix, no loop over the batch and no device synchronisation.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, n, ...) with channels on axis 1, got shape {tuple(x.shape)}")
    batch, n = x.shape[0], x.shape[1]
    _check_variant(variant, n)
    v = unit_axis(axis, n)
    s = _strength_tensor(s)
    if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != batch):
        raise ValueError(
            f"s must be a number or have one value per sample, shape ({batch},); got shape {tuple(s.shape)}"
        )
    if inverse:
        s = -s  # eq. (11): S(s)⁻¹ = S(−s)
    lam = squeeze_eigenvalues(s, n, variant)
    if s.ndim == 0 and s.device.type == "cpu":
        # Host scalars: multiplying by a Python float moves nothing to the device.
        lam_par, lam_perp = float(lam.parallel), float(lam.perpendicular)
    else:
        broadcast = (-1,) + (1,) * (x.ndim - 1) if s.ndim == 1 else ()  # (B, 1, 1, 1) for images
        lam_par = lam.parallel.to(device=x.device, dtype=x.dtype).view(broadcast)
        lam_perp = lam.perpendicular.to(device=x.device, dtype=x.dtype).view(broadcast)

    scale = 1.0 if variant == "sdm" else lam_perp  # λ⊥ = 1 for SDM: skip a pass over x
    return rank_one_update(x, v.to(device=x.device, dtype=x.dtype), lam_par - lam_perp, scale)


def rank_one_update(x: torch.Tensor, unit_axis: torch.Tensor, coefficient, scale=1.0) -> torch.Tensor:
    """The kernel of every squeeze: scale·x + coefficient·(v̂ᵀx) v̂ along the channel axis of x (B, n, ...).

    With scale = λ⊥ and coefficient = λ∥ − λ⊥ this is S x for any matrix with eigenvalues λ∥ on v̂ and λ⊥ on v̂⊥.
    `unit_axis` must already be a unit vector with x's device and dtype; `coefficient` and `scale` are numbers or
    tensors broadcastable to (B, 1, ...). No argument checks: this is the hot path (see `apply_squeeze`).
    """
    v_channels = unit_axis.view((1, x.shape[1]) + (1,) * (x.ndim - 2))  # (1, n, 1, 1)
    # v̂ᵀx per pixel, (B, 1, H, W), accumulated channel by channel (n is 3 or so): one read of x and no (B, n, H, W)
    # temporary. (einsum copies x into a channels-last layout for bmm first: ~40% of the step's extra time on a CPU.)
    projection = x[:, :1] * unit_axis[0]
    for channel in range(1, x.shape[1]):
        projection = projection.addcmul_(x[:, channel : channel + 1], unit_axis[channel])
    # One fused pass over x: the coefficient multiplies the small (B, 1, H, W) projection, not x.
    base = x if isinstance(scale, float) and scale == 1.0 else x * scale
    return torch.addcmul(base, projection * coefficient, v_channels)


# ----------------------------------------------------------------------------------------------------------------
# Time dependence and the forward marginal, eq. (3).


def squeeze_schedule(s0: float, betas: torch.Tensor, kind: str = "linear") -> torch.Tensor:
    """The squeeze strength s(t) at every timestep (float64, shape of `betas`).

    "linear" is the paper's s(t) = s0 · β_t / β_max (Section 2, last paragraph); "constant" is s0 at every t
    (then S_t does not depend on t and the whitened chain (8) is an exact DDPM).
    """
    s0 = _check_finite_number("s0", s0)
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {kind!r}")
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    if kind == "constant":
        return torch.full_like(betas, s0)
    return s0 * betas / betas.max()


class MarginalVariances(NamedTuple):
    """Σ_t of eq. (3) in its eigenbasis: the variance along v̂ and along each direction orthogonal to it."""

    parallel: torch.Tensor  # (T,)
    perpendicular: torch.Tensor  # (T,)


def marginal_variances(
    s_schedule: torch.Tensor, betas: torch.Tensor, n: int, variant: str = "sdm"
) -> MarginalVariances:
    """Eq. (3)'s covariance Σ_t = Σ_{i≤t} β_i ∏_{i<j≤t} α_j S_i S_iᵀ, reduced to two scalar recursions.

    All S_i share the eigenvectors v̂ and v̂⊥, so Σ_t does too, with eigenvalues obeying
    σ²_t = α_t σ²_{t−1} + β_t λ(s_t)²,  σ²_0 = 0, one recursion for λ∥ and one for λ⊥.
    Unrolled, σ²_t = ᾱ_t Σ_{i≤t} β_i λ(s_i)² / ᾱ_i, which is what is computed (a cumulative sum, float64).
    Index k of the result is the paper's t = k + 1 (diffusers counts timesteps from 0).
    """
    s_schedule = torch.as_tensor(s_schedule, dtype=torch.float64)
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if s_schedule.shape != betas.shape or betas.ndim != 1:
        raise ValueError(
            f"s_schedule and betas must be 1-D of equal length, got shapes {tuple(s_schedule.shape)} "
            f"and {tuple(betas.shape)}"
        )
    lam = squeeze_eigenvalues(s_schedule, n, variant)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)

    def unrolled(eigenvalue: torch.Tensor) -> torch.Tensor:
        return alphas_cumprod * torch.cumsum(betas * eigenvalue**2 / alphas_cumprod, dim=0)

    return MarginalVariances(unrolled(lam.parallel), unrolled(lam.perpendicular))


def marginal_covariance(
    axis: AxisLike, s_schedule: torch.Tensor, betas: torch.Tensor, variant: str = "sdm"
) -> torch.Tensor:
    """Eq. (3): the covariance Σ_t of x_t given x_0, for every t, shape (T, n, n), float64.

    Built from the two scalar recursions of `marginal_variances` (not a T-term sum of matrices).
    """
    v = unit_axis(axis)
    variances = marginal_variances(s_schedule, betas, v.shape[0], variant)
    return _matrix_from_eigenvalues(v, SqueezeEigenvalues(variances.parallel, variances.perpendicular))
