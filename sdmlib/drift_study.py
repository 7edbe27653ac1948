"""The drift R_t = S_t⁻¹S_{t−1} of eq. (12) along a sampling trajectory, and what it costs the sampler.

Used by the derivation notebook `03_drift`. For Gaussian data x_0 ~ N(μ, C) with the exact noise predictor of
`sdmlib.gaussian.optimal_noise_predictor`, every reverse step of `SqueezedDDPMScheduler.step` (whiten, eq. 5; DDPM
posterior step, eq. 6; re-squeeze, eq. 7) is an affine map of the state plus independent Gaussian noise. The law
of the generated samples is therefore Gaussian, and its mean and covariance follow from a recursion over the
sampling timesteps, with no Monte Carlo error (`sampler_moments`). `sample` runs the real sampler for comparison.

This module imports torch and sdmlib only; schedule arithmetic is in float64.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from .gaussian import frechet_distance, optimal_noise_predictor, sample_with_predictor
from .scheduler import SqueezedDDPMScheduler
from .squeeze import AxisLike, drift, inverse_squeeze_matrix, squeeze_matrix, unit_axis

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------
# Eq. (12) along a sampling trajectory.


def trajectory_strengths(scheduler: SqueezedDDPMScheduler) -> tuple[list[int], list[float], list[float]]:
    """For each step of the current sampling schedule: t, s(t), and s at the previous timestep (S_0 past the end).

    Call `scheduler.set_timesteps` first. The pairs (s(t), s(t_prev)) are the strengths of eq. (12)'s S_t and
    S_{t−1} as the sampler meets them: t_prev is the next entry of `scheduler.timesteps`, −1 after the last.
    """
    timesteps = [int(t) for t in scheduler.timesteps]
    previous = timesteps[1:] + [-1]
    return timesteps, [scheduler.strength_at(t) for t in timesteps], [scheduler.strength_at(t) for t in previous]


def trajectory_drifts(scheduler: SqueezedDDPMScheduler) -> torch.Tensor:
    """Eq. (12) at every step of the current sampling schedule: R = S_t⁻¹ S_{t_prev}, shape (steps, n, n)."""
    _, s_t, s_prev = trajectory_strengths(scheduler)
    return drift(
        scheduler.principal_axis,
        torch.tensor(s_t, dtype=torch.float64),
        torch.tensor(s_prev, dtype=torch.float64),
        scheduler.config.variant,
    )


def trajectory_drift_norms(scheduler: SqueezedDDPMScheduler) -> torch.Tensor:
    """‖R − I‖₂ (spectral norm) of eq. (12)'s drift at every step of the current sampling schedule, (steps,)."""
    drifts = trajectory_drifts(scheduler)
    return torch.linalg.matrix_norm(drifts - torch.eye(drifts.shape[-1], dtype=drifts.dtype), ord=2)


class SamplerStrengths(NamedTuple):
    """The squeeze strengths the sampler actually applies: at each step, s of the whitening S_t⁻¹ (eq. 5) and of the
    re-squeeze (eq. 7), and s of the starting noise S ε."""

    timesteps: list[int]
    whiten: list[float]
    resqueeze: list[float]
    initial: float


def sampler_strengths(scheduler: SqueezedDDPMScheduler, num_inference_steps: int) -> SamplerStrengths:
    """Run `initial_noise` and `step` over the sampling schedule and record which s each squeeze used.

    Observed, not recomputed: every call of the scheduler's `_squeeze` is recorded with its input and output, and a
    step's whitening strength is that of the call that took the step's input sample, its re-squeeze strength that
    of the call that produced the returned `prev_sample`. So a wrong timestep anywhere on the way (in `strength_at`,
    `previous_timestep` or `step` itself) shows up here, to be compared with a reference computed independently.
    """
    calls: list[tuple[torch.Tensor, float, bool, torch.Tensor]] = []
    original = scheduler._squeeze

    def recording(x: torch.Tensor, s: float, inverse: bool = False) -> torch.Tensor:
        out = original(x, s, inverse)
        calls.append((x, s, inverse, out))
        return out

    def strength(match) -> float:
        found = [s for x, s, inverse, out in calls if match(x, inverse, out)]
        if len(found) != 1:
            raise RuntimeError(f"expected one matching squeeze call, found {len(found)}")
        return float(found[0])

    scheduler._squeeze = recording
    try:
        scheduler.set_timesteps(num_inference_steps)
        n = scheduler.principal_axis.shape[0]
        x = scheduler.initial_noise((1, n, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        initial = strength(lambda _, inverse, out: out is x and not inverse)
        timesteps, whiten, resqueeze = [int(t) for t in scheduler.timesteps], [], []
        for t in scheduler.timesteps:
            calls.clear()
            sample = x
            x = scheduler.step(torch.zeros_like(sample), t, sample, generator=torch.Generator().manual_seed(1))
            x = x.prev_sample
            whiten.append(strength(lambda inp, inverse, _: inp is sample and inverse))
            resqueeze.append(strength(lambda _, inverse, out: out is x and not inverse))
    finally:
        del scheduler._squeeze  # back to the class's method
    return SamplerStrengths(timesteps, whiten, resqueeze, initial)


# ----------------------------------------------------------------------------------------------------------------
# Gaussian data and the exact law of the sampler's output.


class GaussianMoments(NamedTuple):
    """Mean (n,) and covariance (n, n) of a Gaussian, float64."""

    mean: torch.Tensor
    covariance: torch.Tensor


def covariance_with_axis(axis: AxisLike, eigenvalues: torch.Tensor) -> torch.Tensor:
    """The symmetric n×n matrix with eigenvalues `eigenvalues` (descending) whose top eigenvector is `axis`.

    The other eigenvectors complete v̂ to an orthonormal basis (QR of [v̂, e_1, …, e_{n−1}]); which basis does not
    matter to the squeeze, whose eigenspaces are v̂ and v̂⊥. So PCA of N(μ, C) returns exactly `axis` as v̂.
    """
    v = unit_axis(axis)
    n = v.shape[0]
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.cat([v[:, None], torch.eye(n, dtype=torch.float64)[:, : n - 1]], dim=1))
    basis = basis * torch.sign(basis[:, :1].T @ v)  # first column +v̂, not −v̂
    return basis @ torch.diag(eigenvalues) @ basis.T


def make_scheduler(
    axis: AxisLike,
    s0: float,
    resqueeze: str = "previous",
    variant: str = "sdm",
    squeeze_schedule: str = "linear",
    initial_squeeze: str = "first_step",
) -> SqueezedDDPMScheduler:
    """`SqueezedDDPMScheduler` with diffusers' default linear β schedule and clip_sample=False (Gaussian data is
    unbounded: clipping x̂_0 to [−1, 1] would make the step non-linear and bias the variance)."""
    return SqueezedDDPMScheduler(
        s0=s0,
        principal_axis=unit_axis(axis).tolist(),
        resqueeze=resqueeze,
        variant=variant,
        squeeze_schedule=squeeze_schedule,
        clip_sample=False,
        initial_squeeze=initial_squeeze,
    )


def affine_coefficients(predictor: Predictor, t: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read off an affine noise predictor ε̂(x, t) = G x + h by calling it on 0 and on the basis vectors.

    Returns G (n, n) and h (n,), float64. Exact for any predictor that is affine in x (as the Gaussian optimum is).
    """
    inputs = torch.cat([torch.zeros(1, n), torch.eye(n)]).to(torch.float64).view(n + 1, n, 1, 1)
    outputs = predictor(inputs, t).flatten(1).to(torch.float64)  # (n + 1, n)
    return (outputs[1:] - outputs[0]).T, outputs[0]


def ddpm_step_coefficients(alphas_cumprod: list[float], t: int, t_prev: int) -> tuple[float, ...]:
    """DDPM's posterior step over the stride t → t′ (Ho et al., eqs. 6–7; ᾱ′ = 1 past the end, t′ < 0):
    returns ᾱ, ᾱ′, a = √ᾱ′ β/(1−ᾱ), b = √(1−β)(1−ᾱ′)/(1−ᾱ) and σ² = β(1−ᾱ′)/(1−ᾱ) (0 at t = 0), β = 1 − ᾱ/ᾱ′."""
    alpha_bar = alphas_cumprod[t]
    alpha_bar_prev = alphas_cumprod[t_prev] if t_prev >= 0 else 1.0
    beta = 1 - alpha_bar / alpha_bar_prev
    a = alpha_bar_prev**0.5 * beta / (1 - alpha_bar)
    b = (1 - beta) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar)
    variance = beta * (1 - alpha_bar_prev) / (1 - alpha_bar) if t > 0 else 0.0
    return alpha_bar, alpha_bar_prev, a, b, variance


def sampler_moments(
    scheduler: SqueezedDDPMScheduler, predictor: Predictor, num_inference_steps: int
) -> GaussianMoments:
    """The exact mean and covariance of what `sample_with_predictor(scheduler, predictor, …)` generates.

    Requires clip_sample=False, no thresholding, variance_type="fixed_small" and an affine `predictor`. With
    ε̂ = G x + h, one call of `scheduler.step` at t (previous timestep t′, ᾱ′ = 1 past the end) is

        1. eq. (5):  x̃ = S_t⁻¹ x,  ε̃ = S_t⁻¹ ε̂
        2. eq. (6):  x̂_0 = (x̃ − √(1−ᾱ) ε̃)/√ᾱ,  x̃′ = a x̂_0 + b x̃ + σ z,
                     a = √ᾱ′ β/(1−ᾱ),  b = √(1−β) (1−ᾱ′)/(1−ᾱ),  σ² = β (1−ᾱ′)/(1−ᾱ) (0 at t = 0),
                     β = 1 − ᾱ/ᾱ′ (Ho et al., eqs. 6–7, over the stride t → t′)
        3. eq. (7):  x′ = S_next x̃′,  S_next = S_{t′} ("previous") or S_t ("current")

    i.e. x′ = A x + c + σ S_next z with A = S_next S_t⁻¹ [(a/√ᾱ)(I − √(1−ᾱ) G) + b I] and
    c = −S_next S_t⁻¹ (a/√ᾱ) √(1−ᾱ) h. The moments obey m′ = A m + c, P′ = A P Aᵀ + σ² S_next S_nextᵀ, from
    the start x_T = S_T ε: m = 0, P = S_T S_Tᵀ (S_T at the first sampling timestep, or at T − 1 with
    initial_squeeze="t_max").
    """
    config = scheduler.config
    if config.get("forward", "paper") != "paper":
        raise ValueError(
            f"sampler_moments writes out the paper's forward (noise matrix S_t); got forward={config.forward!r}: use "
            "sdmlib.sampler_study.affine_sampler_moments, which reads any sampler's step"
        )
    if config.clip_sample or config.thresholding or config.variance_type != "fixed_small":
        raise ValueError(
            "sampler_moments needs clip_sample=False, thresholding=False and variance_type='fixed_small' "
            f"(the step must be affine); got clip_sample={config.clip_sample}, thresholding={config.thresholding}, "
            f"variance_type={config.variance_type!r}"
        )
    scheduler.set_timesteps(num_inference_steps)
    axis, variant = scheduler.principal_axis, config.variant
    n = axis.shape[0]
    identity = torch.eye(n, dtype=torch.float64)
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64).tolist()
    timesteps, s_t, s_prev = trajectory_strengths(scheduler)
    s_next = s_t if config.resqueeze == "current" else s_prev

    squeezes_next = squeeze_matrix(axis, torch.tensor(s_next, dtype=torch.float64), variant)  # (K, n, n)
    whitenings = inverse_squeeze_matrix(axis, torch.tensor(s_t, dtype=torch.float64), variant)  # (K, n, n), S_t⁻¹
    first = config.num_train_timesteps - 1 if config.initial_squeeze == "t_max" else timesteps[0]
    start = squeeze_matrix(axis, scheduler.strength_at(first), variant)  # S_T: initial_noise draws S_T ε
    mean, covariance = torch.zeros(n, dtype=torch.float64), start @ start.T
    for k, t in enumerate(timesteps):
        t_prev = timesteps[k + 1] if k + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev, a, b, variance = ddpm_step_coefficients(alphas_cumprod, t, t_prev)

        gain, offset = affine_coefficients(predictor, torch.tensor(t), n)  # ε̂ = G x + h
        squeeze_next = squeezes_next[k]
        whiten_resqueeze = squeeze_next @ whitenings[k]  # S_next S_t⁻¹
        x0_weight = a / alpha_bar**0.5
        step = whiten_resqueeze @ (x0_weight * (identity - (1 - alpha_bar) ** 0.5 * gain) + b * identity)  # A
        shift = -whiten_resqueeze @ (x0_weight * (1 - alpha_bar) ** 0.5 * offset)  # c
        mean = step @ mean + shift
        covariance = step @ covariance @ step.T + variance * squeeze_next @ squeeze_next.T
    return GaussianMoments(mean, (covariance + covariance.T) / 2)


def moments_of_sampler(data: GaussianMoments, scheduler: SqueezedDDPMScheduler, num_inference_steps: int):
    """`sampler_moments` with the exact predictor for N(μ, C): the law of what `sample` generates."""
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    return sampler_moments(scheduler, predictor, num_inference_steps)


def sample(
    data: GaussianMoments,
    scheduler: SqueezedDDPMScheduler,
    num_samples: int,
    num_inference_steps: int,
    seed: int,
) -> torch.Tensor:
    """Run the real sampler (`initial_noise`, then `step` at every timestep) with the exact predictor for N(μ, C).

    Returns (num_samples, n) float64 samples. The generator is seeded with `seed`, so runs that differ only in
    configuration share their random numbers.
    """
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    generator = torch.Generator().manual_seed(seed)
    return sample_with_predictor(scheduler, predictor, num_samples, num_inference_steps, generator)


def empirical_moments(samples: torch.Tensor) -> GaussianMoments:
    """Sample mean and unbiased sample covariance of (N, n) samples."""
    return GaussianMoments(samples.mean(dim=0), torch.cov(samples.T))


def distribution_errors(generated: GaussianMoments, data: GaussianMoments, axis: AxisLike) -> dict[str, float]:
    """How far N(m̂, Ĉ) is from the data N(μ, C).

    variance_error_axis: v̂ᵀĈv̂ / v̂ᵀCv̂ − 1; variance_error_perp: the same on v̂⊥ (trace of the projected blocks);
    relative_frobenius: ‖Ĉ − C‖_F / ‖C‖_F; mean_error_axis: v̂ᵀ(m̂ − μ) / √(v̂ᵀCv̂); frechet: the Fréchet distance.
    """
    v = unit_axis(axis)
    perp = torch.eye(v.shape[0], dtype=torch.float64) - torch.outer(v, v)
    c_hat, c = generated.covariance, data.covariance
    var_axis = float(v @ c @ v)
    return dict(
        variance_error_axis=float(v @ c_hat @ v) / var_axis - 1,
        variance_error_perp=float(torch.trace(perp @ c_hat @ perp) / torch.trace(perp @ c @ perp)) - 1,
        relative_frobenius=float(torch.linalg.matrix_norm(c_hat - c) / torch.linalg.matrix_norm(c)),
        mean_error_axis=float(v @ (generated.mean - data.mean)) / var_axis**0.5,
        frechet=float(frechet_distance(generated.mean, c_hat, data.mean, c)),
    )


# ----------------------------------------------------------------------------------------------------------------
# The study: exact errors, Monte Carlo against them, and the first-order drift error.


def exact_errors(
    data: GaussianMoments,
    axis: AxisLike,
    s0: float,
    num_inference_steps: int,
    resqueeze: str = "previous",
    variant: str = "sdm",
    squeeze_schedule: str = "linear",
) -> dict:
    """One configuration's exact sampling errors (`distribution_errors` of `moments_of_sampler`), with its labels."""
    scheduler = make_scheduler(axis, s0, resqueeze, variant, squeeze_schedule)
    moments = moments_of_sampler(data, scheduler, num_inference_steps)
    return dict(
        s0=s0,
        steps=num_inference_steps,
        resqueeze=resqueeze,
        variant=variant,
        schedule=squeeze_schedule,
        **distribution_errors(moments, data, axis),
    )


def monte_carlo_run(
    data: GaussianMoments,
    axis: AxisLike,
    s0: float,
    num_inference_steps: int,
    resqueeze: str,
    variant: str,
    num_samples: int,
    seed: int,
) -> tuple[dict, torch.Tensor]:
    """Run the real sampler (`sample`) and score it against the exact law of its output (`sampler_moments`).

    Returns a row of statistics and the (num_samples, n) samples. The samples are exactly Gaussian with covariance P,
    so for a projector Π the unbiased estimate of tr(ΠĈΠ) has standard error √(2 tr((ΠPΠ)²)/(N−1)) (Π = v̂v̂ᵀ: the
    variance along v̂, SE √(2/(N−1))·v̂ᵀPv̂; Π = I − v̂v̂ᵀ: the total variance on v̂⊥), and the sample mean along v̂
    has standard error √(v̂ᵀPv̂/N). z_variance, z_variance_perp and z_mean are the deviations from the exact values
    in those units. z_variance_other_option scores the same samples against the exact law of the other re-squeeze
    option (can the test tell them apart?). Variances are reported relative to the data's (v̂ᵀCv̂, tr(ΠCΠ)).
    """
    v = unit_axis(axis)
    on_axis = torch.outer(v, v)
    off_axis = torch.eye(v.shape[0], dtype=torch.float64) - on_axis
    scheduler = make_scheduler(axis, s0, resqueeze, variant)
    start = time.perf_counter()
    samples = sample(data, scheduler, num_samples, num_inference_steps, seed)  # (N, n)
    seconds = time.perf_counter() - start
    truth = moments_of_sampler(data, scheduler, num_inference_steps)
    other_option = "current" if resqueeze == "previous" else "previous"
    other = moments_of_sampler(data, make_scheduler(axis, s0, other_option, variant), num_inference_steps)
    empirical = empirical_moments(samples)

    def projected(projector: torch.Tensor, covariance: torch.Tensor) -> float:
        return float(torch.trace(projector @ covariance @ projector))

    def standard_error(projector: torch.Tensor) -> float:
        block = projector @ truth.covariance @ projector
        return float(2 * torch.trace(block @ block) / (num_samples - 1)) ** 0.5

    row = dict(
        variant=variant, steps=num_inference_steps, resqueeze=resqueeze, s0=s0, num_samples=num_samples, seconds=seconds
    )
    for name, projector in (("variance_error_axis", on_axis), ("variance_error_perp", off_axis)):
        data_variance = projected(projector, data.covariance)
        exact_variance, se = projected(projector, truth.covariance), standard_error(projector)
        row[name] = projected(projector, empirical.covariance) / data_variance - 1
        row[f"{name}_exact"] = exact_variance / data_variance - 1
        row[f"se_{name}"] = se / data_variance
        row[f"z_{name}"] = (projected(projector, empirical.covariance) - exact_variance) / se
    row["z_mean_axis"] = float(v @ (empirical.mean - truth.mean)) / float(v @ truth.covariance @ v / num_samples) ** 0.5
    other_variance = projected(on_axis, other.covariance)
    row["z_variance_axis_other_option"] = (projected(on_axis, empirical.covariance) - other_variance) / standard_error(
        on_axis
    )
    errors = distribution_errors(empirical, data, v)
    row.update(relative_frobenius=errors["relative_frobenius"], frechet=errors["frechet"])
    return row, samples


class DriftSlopes(NamedTuple):
    """First-order drift error of the generated variance along v̂, per unit s0, for the two re-squeeze options."""

    previous: float
    current: float


def first_order_drift_slopes(
    scheduler: SqueezedDDPMScheduler, data_variance: float, num_inference_steps: int
) -> DriftSlopes:
    """∂/∂s0 at s0 = 0 of v̂ᵀĈv̂ / v̂ᵀCv̂ − 1 due to the drift: a memory-weighted sum of the per-step drifts.

    Along v̂ (an eigenvector of C and of every S_t) the sampler is scalar. In whitened coordinates the data variance
    is d_t = c e^{2 s_t}; step k (t → t′) is DDPM's step for d_t, and each option then leaves a variance error,
    to first order in δ_k = s_t − s_{t′} (the exponent of eq. 12):

        "previous":  ᾱ′ (d_t − d_{t′})        ≈  2 c ᾱ′ δ_k     (the drift stays on the signal)
        "current":   (e^{−2δ_k} − 1)(1 − ᾱ′)  ≈ −2 (1 − ᾱ′) δ_k (the signal is corrected, the noise is scaled)

    Each later step j multiplies a variance error by A_j², A_j the step's gain on the whitened state at s0 = 0,
    A = (a/√ᾱ)(1 − (1−ᾱ)/W) + b with W = ᾱ c + 1 − ᾱ (a, b as in `sampler_moments`). So the relative error is
    Σ_k G_k source_k / c with memory G_k = ∏_{j>k} A_j². Only `scheduler`'s β schedule is used (not its s0), and
    the drift that changes the DDPM discretisation error itself with s0 is left out: that part vanishes as the
    number of steps grows.
    """
    c = float(data_variance)
    scheduler.set_timesteps(num_inference_steps)
    per_unit_s0 = (scheduler.betas.to(torch.float64) / scheduler.betas.max()).tolist()  # s(t)/s0, linear schedule
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64).tolist()
    timesteps = [int(t) for t in scheduler.timesteps]
    gains, previous, current = [], [], []
    for k, t in enumerate(timesteps):
        t_prev = timesteps[k + 1] if k + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev, a, b, _ = ddpm_step_coefficients(alphas_cumprod, t, t_prev)
        whitened_variance = alpha_bar * c + 1 - alpha_bar
        gains.append(((a / alpha_bar**0.5) * (1 - (1 - alpha_bar) / whitened_variance) + b) ** 2)
        delta = per_unit_s0[t] - (per_unit_s0[t_prev] if t_prev >= 0 else 0.0)  # δ_k / s0
        previous.append(2 * c * alpha_bar_prev * delta)
        current.append(-2 * (1 - alpha_bar_prev) * delta)
    gains_after = torch.tensor(gains[1:] + [1.0], dtype=torch.float64)  # A²_{k+1}, …; 1 after the last step
    memory = torch.flip(torch.cumprod(torch.flip(gains_after, [0]), 0), [0])  # G_k = ∏_{j>k} A_j²
    return DriftSlopes(
        float(memory @ torch.tensor(previous, dtype=torch.float64)) / c,
        float(memory @ torch.tensor(current, dtype=torch.float64)) / c,
    )
