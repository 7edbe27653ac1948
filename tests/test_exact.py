"""The exact squeezed process: forward="exact" (eq. 3's marginal), `SqueezedExactScheduler` (its posterior at any
stride, η ∈ [0, 1]) and `sdmlib.sampler_study.affine_sampler_moments` (the output law read off a real step).

References are brute force: eq. (3)'s dense Σ_t (`marginal_covariance`) for the forward; diffusers' own DDPM and DDIM
steps at s0 = 0; a dense-matrix propagation of the exact posterior (Gaussian conditioning with matrix square roots,
written here and sharing no code with the per-direction rank-1 step) for the sampler; Monte Carlo within standard
errors for the real sampler.
"""

import json
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import sdmlib.train as training
from sdmlib import drift_study
from sdmlib.config import TrainConfig
from sdmlib.drift_study import GaussianMoments, affine_coefficients, covariance_with_axis
from sdmlib.exact import SqueezedExactScheduler, exact_step_coefficients
from sdmlib.gaussian import covariance_standard_error, optimal_noise_predictor, sample_with_predictor
from sdmlib.sampler_study import affine_sampler_moments, exact_predictor_errors
from sdmlib.scheduler import SqueezedDDPMScheduler
from sdmlib.squeeze import marginal_covariance, squeeze_matrix, unit_axis

AXIS = [0.57, 0.59, 0.57]
DATA = GaussianMoments(
    torch.tensor([-0.02, -0.04, -0.11], dtype=torch.float64), covariance_with_axis(AXIS, [0.20, 0.012, 0.004])
)
# Data whose covariance does not have v̂ as an eigenvector: then no matrix of a step commutes with the squeeze, and a
# transposed or misplaced factor shows (with DATA every matrix is symmetric and such mistakes are invisible).
_FACTOR = torch.tensor([[0.30, 0.10, -0.05], [-0.12, 0.20, 0.08], [0.05, -0.15, 0.10]], dtype=torch.float64)
SKEWED = GaussianMoments(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64), _FACTOR @ _FACTOR.T + 0.01 * torch.eye(3))
Z_LIMIT = 4.5  # |z| bound of the Monte Carlo checks: with ~10 statistics per test a false alarm is below 1e-4


def exact(s0=-1.0, **kwargs):
    kwargs = {"principal_axis": AXIS, "clip_sample": False, "forward": "exact", **kwargs}
    return SqueezedExactScheduler(s0=s0, **kwargs)


def ddpm(s0=-1.0, **kwargs):
    return SqueezedDDPMScheduler(s0=s0, **{"principal_axis": AXIS, "clip_sample": False, **kwargs})


# -- the forward process --------------------------------------------------------------------------------------


def forward_noise_z_scores(scheduler, t: int, num_samples: int = 4000, seed: int = 0) -> torch.Tensor:
    """z-scores of the second moment of x_t − √ᾱ_t x_0 from `add_noise` against eq. (3)'s Σ_t, entry by entry."""
    generator = torch.Generator().manual_seed(seed)
    n = len(AXIS)
    x0 = torch.randn(num_samples, n, 1, 1, dtype=torch.float64, generator=generator)
    noise = torch.randn(num_samples, n, 1, 1, dtype=torch.float64, generator=generator)
    timesteps = torch.full((num_samples,), t, dtype=torch.long)
    x_t = scheduler.add_noise(x0, noise, timesteps)
    centred = (x_t - scheduler.alphas_cumprod[t].double().sqrt() * x0).flatten(1)  # (N, n)
    moment = centred.T @ centred / num_samples
    sigma = marginal_covariance(AXIS, scheduler.squeeze_strengths, scheduler.betas, scheduler.config.variant)[t]
    return (moment - sigma) / covariance_standard_error(sigma, num_samples)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
@pytest.mark.parametrize("s0", [-1.0, 1.0])
@pytest.mark.parametrize("t", [5, 400, 999])
def test_exact_forward_draws_eq3_marginal(variant, s0, t):
    z = forward_noise_z_scores(SqueezedDDPMScheduler(s0=s0, variant=variant, principal_axis=AXIS, forward="exact"), t)
    assert z.abs().max() < Z_LIMIT, z


def test_the_forward_check_tells_the_paper_marginal_apart():
    """The same check rejects the paper's marginal (1−ᾱ_t) S_t², whose variance along v̂ is Σ_t's / 0.84 at t = 400
    (s0 = −1), about 7 standard errors away with 4000 samples."""
    z = forward_noise_z_scores(SqueezedDDPMScheduler(s0=-1.0, principal_axis=AXIS), 400)
    assert z.abs().max() > Z_LIMIT


def test_paper_forward_is_the_default_and_unchanged():
    """forward="paper": x_t = √ᾱ_t x_0 + √(1−ᾱ_t) S_t ε with the explicit S_t of eq. (9)."""
    scheduler = ddpm(-0.7)
    assert scheduler.config.forward == "paper"
    x0, noise = torch.randn(2, 4, 3, 1, 1, dtype=torch.float64)
    timesteps = torch.tensor([0, 123, 500, 999])
    alpha_bar = scheduler.alphas_cumprod[timesteps].double().view(-1, 1)
    squeezes = squeeze_matrix(AXIS, scheduler.squeeze_strengths[timesteps])  # (4, n, n)
    expected = alpha_bar.sqrt() * x0.flatten(1) + (1 - alpha_bar).sqrt() * torch.einsum("bij,bj->bi", squeezes, noise.flatten(1))
    torch.testing.assert_close(scheduler.add_noise(x0, noise, timesteps).flatten(1), expected)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_exact_forward_at_s0_zero_is_the_paper_forward_bit_for_bit(variant):
    paper, exact_forward = (SqueezedDDPMScheduler(s0=0.0, variant=variant, forward=f) for f in ("paper", "exact"))
    x0, noise = torch.randn(2, 5, 3, 4, 4)
    timesteps = torch.tensor([0, 1, 250, 800, 999])
    for name in ("add_noise", "get_velocity", "squeeze_noise"):
        args = (noise, timesteps) if name == "squeeze_noise" else (x0, noise, timesteps)
        assert torch.equal(getattr(paper, name)(*args), getattr(exact_forward, name)(*args)), name
    for t in (999, 500, 0, -1):
        assert torch.equal(paper._squeeze_at(x0, t), exact_forward._squeeze_at(x0, t))
        assert exact_forward.is_identity_at(t)
    for scheduler in (paper, exact_forward):
        scheduler.set_timesteps(10)
    assert torch.equal(
        paper.initial_noise((2, 3, 4, 4), generator=torch.Generator().manual_seed(0)),
        exact_forward.initial_noise((2, 3, 4, 4), generator=torch.Generator().manual_seed(0)),
    )


def test_exact_noise_matrix_past_the_end_continues_d0():
    """D_t past the end is D_0 = S(s(0)) (the limit at the data end), so the whiten/re-squeeze step, whose last
    step whitens x̂_0 with D_0⁻¹, returns x̂_0 itself in data space (with the linear schedule, s(0) = s0 β_0/β_max)."""
    scheduler = SqueezedDDPMScheduler(s0=-1.0, principal_axis=AXIS, forward="exact", prediction_type="sample", clip_sample=False)
    s_first = float(scheduler.squeeze_strengths[0])
    assert scheduler.noise_eigenvalues_at(-1) == scheduler.noise_eigenvalues_at(0)
    assert scheduler.noise_eigenvalues_at(0) == pytest.approx((math.exp(-s_first), 1.0), rel=1e-12)
    assert not scheduler.is_identity_at(-1)
    scheduler.set_timesteps(10)
    x0 = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    sample = torch.randn_like(x0)
    out = scheduler.step(x0, scheduler.timesteps[-1], sample, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.prev_sample, x0, rtol=0, atol=1e-12)


def test_forward_option_round_trips_and_bad_values_are_clear_errors(tmp_path):
    scheduler = ddpm(-0.4, forward="exact")
    scheduler.save_pretrained(tmp_path / "ddpm")
    loaded = SqueezedDDPMScheduler.from_pretrained(tmp_path / "ddpm")
    assert loaded.config.forward == "exact" and loaded.noise_eigenvalues_at(500) == scheduler.noise_eigenvalues_at(500)
    with pytest.raises(ValueError, match=r"forward must be one of \('paper', 'exact'\).*got 'exakt'"):
        SqueezedDDPMScheduler(forward="exakt")
    with pytest.raises(ValueError, match=r"forward must be one of \('paper', 'exact'\), got 'Exact'"):
        TrainConfig(forward="Exact").validate()


# -- the exact scheduler: configuration --------------------------------------------------------------------------


def test_exact_scheduler_round_trips_and_loads_a_ddpm_config(tmp_path):
    scheduler = exact(0.6, variant="hdm", clip_sample=True, clip_space="data", prediction_type="v_prediction")
    scheduler.save_pretrained(tmp_path / "exact")
    loaded = SqueezedExactScheduler.from_pretrained(tmp_path / "exact")
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert public(loaded.config) == public(scheduler.config)
    source = ddpm(-0.4, forward="exact", variant="hdm")
    converted = SqueezedExactScheduler.from_config(source.config)
    for key in ("s0", "variant", "forward", "principal_axis", "squeeze_schedule", "prediction_type"):
        assert converted.config[key] == source.config[key], key
    assert converted.noise_eigenvalues_at(700) == source.noise_eigenvalues_at(700)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholding": True}, "thresholding must be False"),
        ({"variance_type": "learned_range"}, "variance_type must be 'fixed_small'.*got 'learned_range'"),
        ({"forward": "approximate"}, "forward must be one of"),
        ({"clip_space": "image"}, "clip_space must be one of"),
    ],
)
def test_exact_scheduler_refuses_what_it_does_not_support(kwargs, match):
    with pytest.raises(ValueError, match=match):
        exact(**kwargs)


@pytest.mark.parametrize("eta", [-0.1, 1.5, "1"])
def test_bad_eta_is_a_clear_error(eta):
    scheduler = exact()
    scheduler.set_timesteps(10)
    x = torch.zeros(1, 3, 1, 1)
    with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\]"):
        scheduler.step(x, scheduler.timesteps[0], x, eta=eta)


# -- the exact scheduler: the step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("steps", [1000, 50])
@pytest.mark.parametrize("clip", [None, "data", "whitened"])
def test_at_s0_zero_eta_one_is_ddpm_and_eta_zero_is_ddim(prediction_type, steps, clip):
    """σ²_t = 1 − ᾱ_t: the exact posterior is DDPM's "fixed_small" step and η = 0 is DDIM's (ᾱ = 1 past the end).
    diffusers computes its coefficients in float32 (1 − ᾱ_t/ᾱ_t′ then loses up to 5e-4 relative at small t), so the
    references get their own ᾱ_t cast to float64 and must agree to 1e-10.

    With clipping only DDPM is the reference: the exact step plugs the clipped x̂_0 into the posterior (so also into
    x_t − √ᾱ_t x̂_0), as DDPM does, where DDIM keeps the network's unclipped ε̂ in its direction term."""
    common = dict(clip_sample=clip is not None, prediction_type=prediction_type)
    scheduler = exact(0.0, clip_space=clip or "whitened", **common)
    references = {1.0: DDPMScheduler(**common)}
    if clip is None:
        references[0.0] = DDIMScheduler(**common)
    for s in (scheduler, *references.values()):
        s.set_timesteps(steps)
        s.alphas_cumprod = s.alphas_cumprod.double()
        s.final_alpha_cumprod = torch.as_tensor(getattr(s, "final_alpha_cumprod", 1.0), dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    sample = 1.5 * torch.randn(3, 3, 4, 4, dtype=torch.float64, generator=generator)
    output = torch.randn(3, 3, 4, 4, dtype=torch.float64, generator=generator)
    for t in scheduler.timesteps[[0, 1, len(scheduler.timesteps) // 2, -2, -1]]:
        for eta, reference in references.items():
            ours = scheduler.step(output, t, sample, eta=eta, generator=torch.Generator().manual_seed(1))
            kwargs = {"eta": eta} if eta == 0.0 else {}
            theirs = reference.step(output, t, sample, generator=torch.Generator().manual_seed(1), **kwargs)
            torch.testing.assert_close(ours.prev_sample, theirs.prev_sample, rtol=0, atol=1e-10)
            torch.testing.assert_close(ours.pred_original_sample, theirs.pred_original_sample, rtol=0, atol=1e-10)


def test_data_clipping_clips_x0_in_the_images_box():
    scheduler = exact(-1.0, clip_sample=True, clip_space="data", prediction_type="sample")
    scheduler.set_timesteps(10)
    x0 = 3 * torch.randn(8, 3, 2, 2)
    out = scheduler.step(x0, scheduler.timesteps[0], torch.randn_like(x0), eta=0.0)
    torch.testing.assert_close(out.pred_original_sample, x0.clamp(-1, 1))
    whitened = exact(-1.0, clip_sample=True, clip_space="whitened", prediction_type="sample")
    whitened.set_timesteps(10)
    t = whitened.timesteps[0]
    out = whitened.step(x0, t, torch.randn_like(x0), eta=0.0).pred_original_sample
    assert whitened._squeeze_at(out, t, inverse=True).abs().max() <= 1 + 1e-6
    assert out.abs().max() > 1.5  # along v̂ the whitened box is D_t times wider


def test_step_coefficients_are_the_gaussian_conditional():
    """η = 1: k_x = Cov(x′, x)/Var(x) and k_z² = Var(x′) − Cov²/Var(x) for the joint law of (x_t′, x_t) given x_0,
    built from the forward chain x_t = r x_t′ + noise of variance σ²_t − r²σ²_t′."""
    alpha_bar, alpha_bar_prev, sigma, sigma_prev = 0.3, 0.7, 0.9, 0.6
    r = (alpha_bar / alpha_bar_prev) ** 0.5
    covariance = r * sigma_prev**2
    k_x, k_0, k_z = exact_step_coefficients(alpha_bar, alpha_bar_prev, sigma, sigma_prev, 1.0)
    assert k_x == pytest.approx(covariance / sigma**2, rel=1e-12)
    assert k_z**2 == pytest.approx(sigma_prev**2 - covariance**2 / sigma**2, rel=1e-12)
    assert k_0 == pytest.approx(alpha_bar_prev**0.5 - k_x * alpha_bar**0.5, rel=1e-12)
    k_x, _, k_z = exact_step_coefficients(alpha_bar, alpha_bar_prev, sigma, sigma_prev, 0.0)
    assert (k_x, k_z) == (pytest.approx(sigma_prev / sigma, rel=1e-12), 0.0)
    assert exact_step_coefficients(alpha_bar, 1.0, sigma, 0.0, 1.0) == (0.0, 1.0, 0.0)  # past the end: x̂_0


def test_initial_noise_draws_the_exact_marginal_at_the_first_timestep():
    scheduler = exact(-1.0, variant="hdm")
    scheduler.set_timesteps(20)
    first = int(scheduler.timesteps[0])
    x = scheduler.initial_noise((20000, 3, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x.flatten(1)
    sigma = marginal_covariance(AXIS, scheduler.squeeze_strengths, scheduler.betas, "hdm")[first]
    z = (x.T @ x / len(x) - sigma) / covariance_standard_error(sigma, len(x))
    assert z.abs().max() < Z_LIMIT


@pytest.mark.parametrize("t", [0, 300, 999])
def test_the_gaussian_predictor_is_exact_for_the_exact_forward(t):
    """With forward="exact" the optimal predictor is E[D_t ε | x_t] = Σ_t (ᾱ_t C + Σ_t)⁻¹ (x_t − √ᾱ_t μ) / √(1−ᾱ_t),
    Σ_t from eq. (3) (`marginal_covariance`): the scheduler's own noise matrix, not S_t."""
    scheduler = exact(-1.0, variant="hdm")
    predictor = optimal_noise_predictor(SKEWED.mean, SKEWED.covariance, scheduler)
    sigma = marginal_covariance(AXIS, scheduler.squeeze_strengths, scheduler.betas, "hdm")[t]
    alpha_bar = scheduler.alphas_cumprod[t].double()
    x_t = torch.randn(5, 3, dtype=torch.float64)
    expected = (x_t - alpha_bar.sqrt() * SKEWED.mean) @ torch.linalg.solve(alpha_bar * SKEWED.covariance + sigma, sigma)
    ours = predictor(x_t.view(5, 3, 1, 1), torch.tensor(t)).flatten(1)
    torch.testing.assert_close(ours, expected / (1 - alpha_bar).sqrt(), rtol=1e-3, atol=1e-8)  # float32 ᾱ in b_t


def test_per_sample_generators_give_each_sample_its_own_noise():
    """A batch sampled with a list of generators equals each sample drawn alone with its generator."""
    scheduler = exact(-0.5)
    predictor = optimal_noise_predictor(DATA.mean, DATA.covariance, scheduler)
    batch = sample_with_predictor(scheduler, predictor, 3, 10, [torch.Generator().manual_seed(s) for s in range(3)])
    for s in range(3):
        alone = sample_with_predictor(scheduler, predictor, 1, 10, [torch.Generator().manual_seed(s)])
        torch.testing.assert_close(batch[s : s + 1], alone, rtol=0, atol=1e-12)


# -- (a): the output law, closed form and Monte Carlo ---------------------------------------------------------------


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def dense_exact_moments(scheduler, predictor, steps: int, eta: float) -> GaussianMoments:
    """The exact posterior step in dense matrices: with Σ, Σ′ = eq. (3)'s covariances at t, t′ and r² = ᾱ/ᾱ′,
    C = Σ′ − r² Σ′Σ⁻¹Σ′ and x′ = √ᾱ′ x̂_0 + (Σ′ − η²C)^{½} Σ^{−½} (x − √ᾱ x̂_0) + η C^{½} z, from x_T ~ N(0, Σ_T)."""
    n = len(AXIS)
    identity = torch.eye(n, dtype=torch.float64)
    sigmas = marginal_covariance(AXIS, scheduler.squeeze_strengths, scheduler.betas, scheduler.config.variant)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    mean, covariance = torch.zeros(n, dtype=torch.float64), sigmas[timesteps[0]]
    for k, t in enumerate(timesteps):
        t_prev = timesteps[k + 1] if k + 1 < len(timesteps) else -1
        alpha_bar = alphas_cumprod[t]
        alpha_bar_prev = alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        sigma, sigma_prev = sigmas[t], (sigmas[t_prev] if t_prev >= 0 else torch.zeros(n, n, dtype=torch.float64))
        gain, offset = affine_coefficients(predictor, torch.tensor(t), n)  # ε̂ = G x + h
        x0_gain = (identity - (1 - alpha_bar).sqrt() * gain) / alpha_bar.sqrt()  # x̂_0 = F x + f
        x0_offset = -(1 - alpha_bar).sqrt() * offset / alpha_bar.sqrt()
        conditional = sigma_prev - (alpha_bar / alpha_bar_prev) * sigma_prev @ torch.linalg.inv(sigma) @ sigma_prev
        state = _sqrtm(sigma_prev - eta**2 * conditional) @ torch.linalg.inv(_sqrtm(sigma))
        step = alpha_bar_prev.sqrt() * x0_gain + state @ (identity - alpha_bar.sqrt() * x0_gain)
        shift = (alpha_bar_prev.sqrt() * identity - alpha_bar.sqrt() * state) @ x0_offset
        mean = step @ mean + shift
        covariance = step @ covariance @ step.T + eta**2 * conditional
    return GaussianMoments(mean, covariance)


@pytest.mark.parametrize("eta", [1.0, 0.0, 0.5])
@pytest.mark.parametrize("s0, variant", [(-1.0, "sdm"), (0.8, "hdm")])
@pytest.mark.parametrize("data", [DATA, SKEWED], ids=["aligned", "skewed"])
def test_affine_moments_of_the_exact_sampler_equal_the_dense_propagation(eta, s0, variant, data):
    scheduler = exact(s0, variant=variant)
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    ours = affine_sampler_moments(scheduler, predictor, 20, {"eta": eta})
    dense = dense_exact_moments(scheduler, predictor, 20, eta)
    # float64 on both sides, but the scheduler's marginal is √(1−ᾱ_t) D_t with diffusers' float32 ᾱ_t (what
    # add_noise trains on), eq. (3) uses float64 ᾱ: near t = 0, where 1 − ᾱ_t ≈ 1e-4, they differ by ~1e-3 relative
    # in the noise variance, which leaves ~4e-6 relative in the output law; a wrong coefficient leaves ≥ 1e-3.
    torch.testing.assert_close(ours.mean, dense.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.covariance, dense.covariance, rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("resqueeze", ["previous", "current"])
@pytest.mark.parametrize("data", [DATA, SKEWED], ids=["aligned", "skewed"])
def test_affine_moments_reproduce_the_closed_form_of_the_paper_sampler(resqueeze, data):
    """`affine_sampler_moments` reads diffusers' step, whose coefficients are float32 (1 − ᾱ_t/ᾱ_t′ loses ~6e-8 on
    β ≈ 1e-2): agreement to 1e-4 relative, against `drift_study.sampler_moments` written out in float64."""
    scheduler = drift_study.make_scheduler(AXIS, -1.0, resqueeze)
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    ours = affine_sampler_moments(scheduler, predictor, 50)
    closed = drift_study.sampler_moments(scheduler, predictor, 50)
    torch.testing.assert_close(ours.mean, closed.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.covariance, closed.covariance, rtol=1e-4, atol=1e-7)


def test_sampler_moments_refuses_the_exact_forward():
    scheduler = ddpm(-1.0, forward="exact")
    with pytest.raises(ValueError, match="affine_sampler_moments"):
        drift_study.sampler_moments(scheduler, optimal_noise_predictor(DATA.mean, DATA.covariance, scheduler), 10)


@pytest.mark.parametrize("eta", [1.0, 0.0])
@pytest.mark.parametrize("s0", [-1.0, 1.0])
def test_a_real_exact_sampler_matches_its_closed_form_moments(eta, s0):
    """(a): 4000 samples of the real sampler (20 steps, exact predictor) against the propagated law N(m, P):
    every covariance entry within Z_LIMIT standard errors (`covariance_standard_error`), the mean along v̂ within
    Z_LIMIT·√(v̂ᵀPv̂/N)."""
    num_samples = 4000
    scheduler = exact(s0)
    predictor = optimal_noise_predictor(DATA.mean, DATA.covariance, scheduler)
    truth = dense_exact_moments(scheduler, predictor, 20, eta)
    generator = torch.Generator().manual_seed(7)
    samples = sample_with_predictor(scheduler, predictor, num_samples, 20, generator, {"eta": eta})
    centred = samples - truth.mean
    z = (centred.T @ centred / num_samples - truth.covariance) / covariance_standard_error(truth.covariance, num_samples)
    assert z.abs().max() < Z_LIMIT, z
    v = unit_axis(AXIS)
    z_mean = float(v @ centred.mean(0)) / float(v @ truth.covariance @ v / num_samples) ** 0.5
    assert abs(z_mean) < Z_LIMIT


# -- (b), (c): what "exact" buys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_b_at_1000_steps_the_exact_samplers_bias_is_plain_ddpms(eta):
    """(b) at s0 = ±1 (the extremes of [−1, 1]; the notebook checks the whole grid). The bias left at 1000 steps is
    the dropped Var(x_0 | x_t), which the squeeze changes only through the noise level along v̂ (anti-squeezing adds
    noise, so a little more x_0 uncertainty is dropped): |bias(s0)| ≤ 1.15 |bias(0)| + 0.002 along v̂ and v̂⊥, where
    the paper's sampler is off by 10×. Measured: η = 1, −1.84% (s0 = −1) and −1.59% (s0 = 1) against −1.71%."""
    plain = exact_predictor_errors(DATA, exact(0.0), 1000, {"eta": eta})
    for s0 in (-1.0, 1.0):
        errors = exact_predictor_errors(DATA, exact(s0), 1000, {"eta": eta})
        for name in ("variance_error_axis", "variance_error_perp"):
            assert abs(errors[name]) <= 1.15 * abs(plain[name]) + 0.002, (s0, name, errors[name], plain[name])


def test_b_the_paper_sampler_fails_the_same_bound():
    plain = exact_predictor_errors(DATA, ddpm(0.0), 1000)
    paper = exact_predictor_errors(DATA, ddpm(-1.0), 1000)
    assert abs(paper["variance_error_axis"]) > 5 * abs(plain["variance_error_axis"])


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_c_the_exact_samplers_bias_shrinks_with_the_steps(eta):
    for s0 in (-1.0, 1.0):
        biases = [
            exact_predictor_errors(DATA, exact(s0), steps, {"eta": eta}) for steps in (10, 20, 50, 100)
        ]
        for name in ("variance_error_axis", "variance_error_perp"):
            sizes = [abs(b[name]) for b in biases]
            assert all(a > b for a, b in zip(sizes, sizes[1:])), (s0, name, sizes)


# -- training with the exact forward ----------------------------------------------------------------------------------


def test_training_with_the_exact_forward_saves_it(tmp_path, tiny_run):
    config = TrainConfig.from_mapping({**tiny_run, "s0": -0.5, "forward": "exact", "train_steps": 2, "output_dir": str(tmp_path / "run")})
    run_dir = training.train(config, progress=False)
    saved = json.loads((run_dir / "scheduler" / "scheduler_config.json").read_text())
    assert saved["forward"] == "exact" and saved["s0"] == -0.5
    assert json.loads((run_dir / "config.json").read_text())["forward"] == "exact"
    assert TrainConfig(s0=-0.4, forward="exact").run_dir.name == "cifar10-sdm-s0_-0.4-seed0-forward_exact"
    assert TrainConfig(s0=-0.4).run_dir.name == "cifar10-sdm-s0_-0.4-seed0"


def test_the_pipeline_samples_with_the_exact_scheduler_swapped_in_and_saves_it(tmp_path):
    """As diffusers users swap schedulers: `SqueezedExactScheduler.from_config(pipe.scheduler.config)`; the saved
    pipeline loads it back (model_index.json names sdmlib.exact)."""
    from sdmlib.models import build_unet
    from sdmlib.pipeline import SqueezedDDPMPipeline

    torch.manual_seed(0)
    pipe = SqueezedDDPMPipeline(unet=build_unet("tiny", 32), scheduler=SqueezedDDPMScheduler(s0=-0.4, forward="exact"))
    pipe.scheduler = SqueezedExactScheduler.from_config(pipe.scheduler.config)
    generators = [torch.Generator().manual_seed(s) for s in range(2)]
    images = pipe(batch_size=2, generator=generators, num_inference_steps=3, output_type="pt").images
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = SqueezedDDPMPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.scheduler) is SqueezedExactScheduler and loaded.scheduler.config.forward == "exact"
