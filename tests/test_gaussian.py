"""The Gaussian references the derivation notebooks rest on: Fréchet distance and the optimal predictor."""

import math

import torch
from torch.testing import assert_close

from sdmlib import SqueezedDDPMScheduler
from sdmlib.gaussian import frechet_distance, optimal_noise_predictor, sample_with_predictor

F64 = torch.float64


def test_frechet_distance_closed_form_for_commuting_covariances():
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(0)))
    a, b = torch.tensor([0.5, 0.1, 0.02], dtype=F64), torch.tensor([0.3, 0.2, 0.02], dtype=F64)
    cov_a, cov_b = rotation @ torch.diag(a) @ rotation.T, rotation @ torch.diag(b) @ rotation.T
    mean_a, mean_b = torch.zeros(3, dtype=F64), torch.tensor([0.1, 0.0, -0.2], dtype=F64)
    expected = 0.05 + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert_close(frechet_distance(mean_a, cov_a, mean_b, cov_b), expected)
    assert_close(frechet_distance(mean_a, cov_a, mean_a, cov_a), torch.tensor(0.0, dtype=F64), atol=1e-12, rtol=0)


def test_optimal_predictor_satisfies_orthogonality():
    """E[(S_t ε − ε̂*(x_t)) x_tᵀ] = 0: the residual of the conditional mean is uncorrelated with x_t."""
    scheduler = SqueezedDDPMScheduler(s0=-0.8, principal_axis=[0.6, 0.6, 0.53])
    mean = torch.tensor([0.1, 0.0, -0.1], dtype=F64)
    covariance = torch.tensor([[0.2, 0.15, 0.1], [0.15, 0.2, 0.12], [0.1, 0.12, 0.2]], dtype=F64)
    predictor = optimal_noise_predictor(mean, covariance, scheduler)
    generator = torch.Generator().manual_seed(0)
    num_samples = 100_000
    x0 = torch.randn(num_samples, 3, dtype=F64, generator=generator) @ torch.linalg.cholesky(covariance).T + mean
    noise = torch.randn(num_samples, 3, dtype=F64, generator=generator)
    for t in (50, 400, 900):
        timesteps = torch.full((num_samples,), t)
        x_t = scheduler.add_noise(x0, noise, timesteps).view(num_samples, 3, 1, 1)
        residual = scheduler.squeeze_noise(noise, timesteps) - predictor(x_t, torch.tensor(t)).flatten(1)
        cross = residual.T @ x_t.flatten(1) / num_samples
        standard_error = (residual.var(0)[:, None] * x_t.flatten(1).var(0)[None, :] / num_samples).sqrt()
        assert (cross.abs() / standard_error).max() < 5


def exact_ddpm_moments(scheduler, mean, variance):
    """Mean and variance of DDPM's sampler output for 1-D Gaussian data and the exact predictor, propagated
    exactly: every step is affine in x_t plus independent Gaussian noise, x_{t−1} = A x_t + b + σ z."""
    alphas_cumprod = scheduler.alphas_cumprod.to(F64)
    out_mean, out_var = torch.zeros_like(mean), torch.ones_like(variance)  # x_T ~ N(0, 1)
    for t in scheduler.timesteps.tolist():
        prev_t = int(scheduler.previous_timestep(t))
        alpha_bar = alphas_cumprod[t]
        alpha_bar_prev = alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0, dtype=F64)
        beta_t = 1 - alpha_bar / alpha_bar_prev
        gain = (1 - alpha_bar).sqrt() / (alpha_bar * variance + 1 - alpha_bar)  # ε̂ = gain (x − √ᾱ μ)
        coeff_x0 = alpha_bar_prev.sqrt() * beta_t / (1 - alpha_bar)
        coeff_xt = (1 - beta_t).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
        a = coeff_x0 * (1 - (1 - alpha_bar).sqrt() * gain) / alpha_bar.sqrt() + coeff_xt
        b = coeff_x0 * (1 - alpha_bar).sqrt() * gain * mean
        noise_var = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta_t if t > 0 else 0.0
        out_mean, out_var = a * out_mean + b, a**2 * out_var + noise_var
    return out_mean, out_var


def test_exact_predictor_sampler_matches_exact_moment_propagation():
    """At s0 = 0 the sampler is DDPM; with the exact predictor its output moments are known exactly.

    (They are not the data's: DDPM's ancestral sampler with the posterior variance β̃_t under-disperses
    low-variance directions at finite step counts; the derivation notebook 03 measures how much.)
    """
    scheduler = SqueezedDDPMScheduler(s0=0.0, clip_sample=False)
    mean = torch.tensor([0.2, -0.1, 0.0], dtype=F64)
    variance = torch.tensor([0.25, 0.05, 0.01], dtype=F64)
    num_samples = 40_000
    samples = sample_with_predictor(
        scheduler,
        optimal_noise_predictor(mean, torch.diag(variance), scheduler),
        num_samples,
        50,
        torch.Generator().manual_seed(0),
    )
    exact_mean, exact_var = exact_ddpm_moments(scheduler, mean, variance)
    assert (exact_var / variance < 0.9).any()  # the under-dispersion is real, not a sampler bug
    assert ((samples.var(0) / exact_var - 1).abs() < 5 * math.sqrt(2 / num_samples)).all()
    assert ((samples.mean(0) - exact_mean).abs() < 5 * (exact_var / num_samples).sqrt()).all()
