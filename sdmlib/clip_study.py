"""Where clipping x̂_0 acts, and what it does to the sampler: the whitened box against the images' box.

Used by the derivation notebook `03_drift`. diffusers' DDPM step with clip_sample=True clips its prediction x̂_0
to [−1, 1]. Inside `SqueezedDDPMScheduler.step` that prediction belongs to the whitened chain, S_t⁻¹x̂_0, so the
box is the whitened one (`clip_space="whitened"`, also the authors' code); `clip_space="data"` clips x̂_0 itself.
For Gaussian data N(μ, C) with the exact noise predictor (`sdmlib.gaussian.optimal_noise_predictor`), optionally
perturbed by independent noise of a given RMS (a stand-in for a trained network's error), this module measures how
often each box clips, and runs the real sampler with each to see the effect on the generated variance along v̂.

This module imports torch and sdmlib only.
"""

from __future__ import annotations

import torch

from .drift_study import GaussianMoments, distribution_errors, empirical_moments
from .gaussian import optimal_noise_predictor, sample_with_predictor
from .scheduler import SqueezedDDPMScheduler
from .squeeze import AxisLike, unit_axis

CLIP_BOXES = ("none", "whitened", "data")


def clipping_scheduler(axis: AxisLike, s0: float, clip_box: str, resqueeze: str = "previous", **kwargs):
    """`SqueezedDDPMScheduler` (diffusers' default linear β) that clips x̂_0 in `clip_box`: "none", "whitened" or
    "data"."""
    if clip_box not in CLIP_BOXES:
        raise ValueError(f"clip_box must be one of {CLIP_BOXES}, got {clip_box!r}")
    return SqueezedDDPMScheduler(
        s0=s0,
        principal_axis=unit_axis(axis).tolist(),
        resqueeze=resqueeze,
        clip_sample=clip_box != "none",
        clip_space="data" if clip_box == "data" else "whitened",
        **kwargs,
    )


def clip_fractions(
    data: GaussianMoments,
    axis: AxisLike,
    s0: float,
    timestep: int,
    predictor_rms_error: float,
    num_samples: int,
    seed: int,
    bound: float = 1.0,
) -> dict:
    """How often x̂_0 is clipped at one training timestep, in each box, under the training marginal.

    x_t = √ᾱ_t x_0 + √(1−ᾱ_t) S_t ε (what the network sees); ε̂ = the exact predictor plus independent N(0, r²)
    noise, r = `predictor_rms_error`; x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t in data space, S_t⁻¹x̂_0 in the whitened chain.
    Returns the fraction of entries outside ±bound in each box, and the fraction of samples (pixels, 3 entries)
    whose clipped x̂_0 differs between the boxes (clamp(x̂_0) against S_t clamp(S_t⁻¹x̂_0), beyond round-off).
    """
    scheduler = clipping_scheduler(axis, s0, "none")
    generator = torch.Generator().manual_seed(seed)
    n = data.mean.shape[0]
    t = torch.tensor(timestep)
    cholesky = torch.linalg.cholesky(data.covariance)
    z = torch.randn(num_samples, n, generator=generator, dtype=torch.float64)
    x0 = (data.mean + z @ cholesky.T).view(num_samples, n, 1, 1)  # (N, n, 1, 1): x_0 ~ N(μ, C)
    noise = torch.randn(num_samples, n, 1, 1, generator=generator, dtype=torch.float64)
    x_t = scheduler.add_noise(x0, noise, t.expand(num_samples))
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    eps = predictor(x_t, t) + predictor_rms_error * torch.randn(x_t.shape, generator=generator, dtype=torch.float64)
    alpha_bar = float(scheduler.alphas_cumprod[timestep])
    x0_hat = (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5  # (N, n, 1, 1), data space
    s_t = scheduler.strength_at(timestep)
    x0_white = scheduler._squeeze(x0_hat, s_t, inverse=True)
    in_data = x0_hat.clamp(-bound, bound)
    in_whitened = scheduler._squeeze(x0_white.clamp(-bound, bound), s_t)
    differs = ((in_data - in_whitened).abs() > 1e-9 * (1 + x0_hat.abs())).flatten(1).any(dim=1)
    return dict(
        s0=s0,
        t=timestep,
        s_t=s_t,
        predictor_rms_error=predictor_rms_error,
        clipped_whitened=float((x0_white.abs() > bound).double().mean()),
        clipped_data=float((x0_hat.abs() > bound).double().mean()),
        samples_differing=float(differs.double().mean()),
    )


def clipped_sampler_errors(
    data: GaussianMoments,
    axis: AxisLike,
    s0: float,
    clip_box: str,
    resqueeze: str,
    num_samples: int,
    num_inference_steps: int,
    seed: int,
    initial_squeeze: str = "first_step",
    predictor_rms_error: float = 0.0,
) -> dict:
    """Run the real sampler with the exact predictor (plus independent N(0, r²) noise at every call, r =
    `predictor_rms_error`) and clipping in `clip_box`; the samples' `distribution_errors` (variance along v̂ relative
    to the data's, …) and the standard error of the variance along v̂ (√(2/(N−1)) of it, exact for Gaussian samples
    and a fair guide for clipped ones)."""
    scheduler = clipping_scheduler(axis, s0, clip_box, resqueeze, initial_squeeze=initial_squeeze)
    exact = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    generator = torch.Generator().manual_seed(seed)
    error_generator = torch.Generator().manual_seed(seed + 1)

    def predictor(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not predictor_rms_error:
            return exact(x, t)
        return exact(x, t) + predictor_rms_error * torch.randn(x.shape, generator=error_generator, dtype=x.dtype)

    samples = sample_with_predictor(scheduler, predictor, num_samples, num_inference_steps, generator)  # (N, n)
    errors = distribution_errors(empirical_moments(samples), data, axis)
    v = unit_axis(axis)
    relative_variance = 1 + errors["variance_error_axis"]
    return dict(
        s0=s0,
        clip_box=clip_box,
        resqueeze=resqueeze,
        initial_squeeze=initial_squeeze,
        predictor_rms_error=predictor_rms_error,
        steps=num_inference_steps,
        num_samples=num_samples,
        **errors,
        se_variance_error_axis=relative_variance * (2 / (num_samples - 1)) ** 0.5,
        outside_box=float((samples.abs() > 1).double().mean()),
        mean_axis=float(samples.mean(dim=0) @ v),
    )


__all__ = ["CLIP_BOXES", "clip_fractions", "clipped_sampler_errors", "clipping_scheduler"]
