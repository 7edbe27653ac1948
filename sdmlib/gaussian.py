"""Closed-form and brute-force references for Gaussian data, used by the derivation notebooks and the tests.

For data x_0 ~ N(μ, C) everything about squeezed diffusion is computable without training: the forward chain
(eq. 2) can be simulated exactly, and the noise predictor that minimises eq. (4) is known in closed form. Running
the real sampler (`SqueezedDDPMScheduler.step`) with that exact predictor isolates the error of the sampler
itself, in particular of the approximate posterior of eq. (6) under time-dependent squeezing.

Samples here are plain channel vectors shaped (N, n, 1, 1): images of one pixel, so the scheduler sees the same
(B, n, H, W) layout as in training. This module imports torch and sdmlib's own math only.
"""

from __future__ import annotations

from typing import Callable

import torch

from .squeeze import AxisLike, apply_squeeze, unit_axis


def simulate_forward_covariance(
    num_samples: int,
    axis: AxisLike,
    s_schedule: torch.Tensor,
    betas: torch.Tensor,
    variant: str = "sdm",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Eq. (2) simulated step by step from x_0 = 0; returns the empirical covariance of x_t at every t, (T, n, n).

    x_t = √α_t x_{t−1} + √(1−α_t) S_t ε_t with fresh ε_t at each step. The mean of x_t is √ᾱ_t x_0, which
    is deterministic, so starting from x_0 = 0 isolates the noise whose covariance eq. (3) predicts; the
    estimator is the second moment x_tᵀx_t / N (the mean is known to be 0). float64 throughout.
    """
    v = unit_axis(axis)
    n = v.shape[0]
    betas = torch.as_tensor(betas, dtype=torch.float64)
    s_schedule = torch.as_tensor(s_schedule, dtype=torch.float64)
    x = torch.zeros(num_samples, n, dtype=torch.float64)  # (N, n)
    covariances = torch.empty(len(betas), n, n, dtype=torch.float64)
    for t, (beta, s) in enumerate(zip(betas.tolist(), s_schedule.tolist())):
        eps = torch.randn(num_samples, n, dtype=torch.float64, generator=generator)
        x = (1 - beta) ** 0.5 * x + beta**0.5 * apply_squeeze(eps, v, s, variant)
        covariances[t] = x.T @ x / num_samples
    return covariances


def dense_marginal_covariance(squeeze_matrices: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Eq. (3)'s covariance as the dense T-term sum Σ_t = Σ_{i≤t} β_i (ᾱ_t/ᾱ_i) S_i S_iᵀ for every t, (T, n, n).

    `squeeze_matrices`: the (T, n, n) explicit S_i, built by the caller (a derivation notebook types out eq. 9 for
    them, so that this reference shares no code with `sdmlib.marginal_covariance`). The weights are the (T, T) table
    c²_{t,i} = β_i ᾱ_t/ᾱ_i for i ≤ t, 0 above the diagonal; float64.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64)
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), dim=0)  # (T,)
    weights = torch.tril(betas[None, :] * torch.exp(log_alpha_bar[:, None] - log_alpha_bar[None, :]))  # (T, T)
    squeeze_matrices = squeeze_matrices.to(torch.float64)
    return torch.einsum("ti,ijk,ilk->tjl", weights, squeeze_matrices, squeeze_matrices)


def covariance_standard_error(covariance: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Standard error of each entry of a zero-mean Gaussian second-moment estimate: √((Σ_ii Σ_jj + Σ_ij²)/N)."""
    diagonal = torch.diagonal(covariance, dim1=-2, dim2=-1)
    return ((diagonal[..., :, None] * diagonal[..., None, :] + covariance**2) / num_samples).sqrt()


def noise_matrix(scheduler, timestep) -> torch.Tensor:
    """The scheduler's own noise matrix M_t at `timestep` as an explicit (n, n) float64 matrix: its `_squeeze_at`
    applied to the basis vectors (S_t for the paper's forward, D_t = Σ_t^{1/2}/√(1−ᾱ_t) for forward="exact";
    symmetric, so rows and columns agree)."""
    n = len(scheduler.principal_axis)
    basis = torch.eye(n, dtype=torch.float64).view(n, n, 1, 1)
    return scheduler._squeeze_at(basis, timestep).flatten(1)


def optimal_noise_predictor(
    mean: torch.Tensor, covariance: torch.Tensor, scheduler
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The minimiser of eq. (4) for Gaussian data x_0 ~ N(mean, covariance): ε̂*(x_t, t) = E[M_t ε | x_t].

    Under the training marginal of `scheduler.add_noise`, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) M_t ε with the scheduler's own
    noise matrix M_t (`noise_matrix`: S_t, or D_t with forward="exact"), the pair (M_t ε, x_t) is jointly Gaussian, so

        E[M_t ε | x_t] = √(1−ᾱ_t) M_t² (ᾱ_t C + (1−ᾱ_t) M_t²)⁻¹ (x_t − √ᾱ_t μ).

    Returns a function of (x_t, t) with x_t of shape (B, n, 1, 1), as a network would be called.
    """
    mean = torch.as_tensor(mean, dtype=torch.float64)
    covariance = torch.as_tensor(covariance, dtype=torch.float64)
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)

    def predictor(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = alphas_cumprod[int(t)]
        squeeze = noise_matrix(scheduler, t)  # (n, n), symmetric
        squeeze_sq = squeeze @ squeeze
        marginal = alpha_bar * covariance + (1 - alpha_bar) * squeeze_sq
        gain = (1 - alpha_bar).sqrt() * squeeze_sq @ torch.linalg.inv(marginal)  # (n, n)
        centred = x_t.flatten(1).to(torch.float64) - alpha_bar.sqrt() * mean  # (B, n)
        return (centred @ gain.T).to(x_t.dtype).view_as(x_t)

    return predictor


def sample_with_predictor(
    scheduler,
    predictor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_samples: int,
    num_inference_steps: int,
    generator: torch.Generator | None = None,
    step_kwargs: dict | None = None,
) -> torch.Tensor:
    """Run the scheduler's own sampler (initial_noise, then `step` at every timestep) with a given predictor;
    `step_kwargs` (e.g. `{"eta": 0.0}`) are passed to every step.

    Returns the generated samples as (num_samples, n) float64 vectors.
    """
    n = len(scheduler.config.principal_axis)
    scheduler.set_timesteps(num_inference_steps)
    x = scheduler.initial_noise((num_samples, n, 1, 1), generator=generator, dtype=torch.float64)
    for t in scheduler.timesteps:
        x = scheduler.step(predictor(x, t), t, x, generator=generator, **(step_kwargs or {})).prev_sample
    return x.flatten(1)


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(
    mean1: torch.Tensor, covariance1: torch.Tensor, mean2: torch.Tensor, covariance2: torch.Tensor
) -> torch.Tensor:
    """Fréchet (2-Wasserstein²) distance between N(μ₁, C₁) and N(μ₂, C₂):

    ‖μ₁ − μ₂‖² + tr(C₁ + C₂ − 2 (C₁^{½} C₂ C₁^{½})^{½}), in float64, via symmetric eigendecompositions.
    """
    mean1, mean2, covariance1, covariance2 = (
        torch.as_tensor(a, dtype=torch.float64) for a in (mean1, mean2, covariance1, covariance2)
    )
    root1 = _sqrtm_psd(covariance1)
    cross = _sqrtm_psd(root1 @ covariance2 @ root1)
    return (mean1 - mean2).square().sum() + torch.trace(covariance1 + covariance2 - 2 * cross)
