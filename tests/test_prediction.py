"""sdmlib.prediction: the x/ε/v relations in float64, against diffusers' own, and every prediction type of the
squeezed scheduler (number for number DDPMScheduler at s0 = 0; whiten–parent–re-squeeze otherwise)."""

import itertools

import pytest
import torch
from diffusers import DDPMScheduler
from torch.testing import assert_close

from sdmlib import SqueezedDDPMScheduler, inverse_squeeze_matrix, squeeze_matrix
from sdmlib import prediction as P

AXIS = [0.55, 0.62, 0.56]
TYPES = P.PREDICTION_TYPES


def fake_model(x, t):
    return torch.tanh(1.5 * x.roll(1, dims=1)) * (0.5 + float(t) / 2000)


def matmul_channels(matrix, x):
    return torch.einsum("ij,bj...->bi...", matrix.to(x.dtype), x)


def problem(seed=0, batch=6):
    """(x_0, ε, x_t, a, b) in float64 at timesteps spread over the whole chain, both ends included."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 3, 4, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(batch, 3, 4, 4, generator=generator, dtype=torch.float64)
    alphas_cumprod = DDPMScheduler().alphas_cumprod.double()
    timesteps = torch.linspace(0, 999, batch).long()
    a, b = P.scales_at(alphas_cumprod, timesteps)
    return x0, eps, P.noisy_sample(x0, eps, a, b), a, b


@pytest.mark.parametrize("source, target", list(itertools.permutations(TYPES, 2)))
def test_each_conversion_recovers_the_true_quantity(source, target):
    x0, eps, x_t, a, b = problem()
    truth = {k: P.target_of(k, x0, eps, a, b) for k in TYPES}
    assert_close(P.convert(truth[source], source, target, x_t, a, b), truth[target], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("source, target", list(itertools.permutations(TYPES, 2)))
def test_round_trips_are_float64_exact(source, target):
    x0, eps, x_t, a, b = problem(seed=1)
    arbitrary = torch.randn_like(x0)  # not the true value: the relations must invert for any prediction
    back = P.convert(P.convert(arbitrary, source, target, x_t, a, b), target, source, x_t, a, b)
    assert_close(back, arbitrary, rtol=1e-10, atol=1e-10)


def test_velocity_matches_diffusers():
    scheduler = DDPMScheduler()
    x0, eps, _, _, _ = problem(seed=2)
    timesteps = torch.linspace(0, 999, 6).long()
    a, b = P.scales_at(scheduler.alphas_cumprod.double(), timesteps)
    assert_close(P.velocity(x0, eps, a, b), scheduler.get_velocity(x0, eps, timesteps), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("source", TYPES)
def test_x0_conversion_matches_diffusers_step(source):
    """diffusers' step converts each prediction type to x̂_0; ours must agree (its ᾱ is float32)."""
    scheduler = DDPMScheduler(prediction_type=source, clip_sample=False)
    scheduler.set_timesteps(50)
    x_t = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    output = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    for t in (980, 500, 20):
        a, b = P.scales_at(scheduler.alphas_cumprod, torch.tensor([t, t]))
        expected = scheduler.step(output, t, x_t).pred_original_sample
        assert_close(P.convert(output, source, "sample", x_t, a, b), expected)


@pytest.mark.parametrize("source, target", list(itertools.product(TYPES, TYPES)))
def test_loss_weight_is_the_conversion_slope(source, target):
    x0, eps, x_t, a, b = problem(seed=5)
    truth = P.target_of(source, x0, eps, a, b)
    guess = truth + 0.1 * torch.randn_like(truth)
    weight = P.loss_weight(source, target, a, b, max_weight=1e9)
    difference = P.convert(guess, source, target, x_t, a, b) - P.convert(truth, source, target, x_t, a, b)
    assert_close(weight * (guess - truth), difference, rtol=1e-8, atol=1e-8)


def test_loss_weight_is_bounded_where_a_conversion_divides():
    _, _, _, a, b = problem()
    for source, target in itertools.product(TYPES, TYPES):
        weight = P.loss_weight(source, target, a, b, max_weight=20.0)
        assert weight.abs().max() <= 20.0
    assert P.loss_weight("epsilon", "sample", a, b, max_weight=1e9).abs().max() > 100  # b/a at t = T
    assert P.loss_weight("sample", "epsilon", a, b, max_weight=1e9).abs().max() > 90  # a/b at t = 0
    assert torch.equal(P.loss_weight("epsilon", "epsilon", a, b), torch.ones_like(a))


def test_unknown_type_is_a_clear_error():
    x0, eps, x_t, a, b = problem()
    with pytest.raises(ValueError, match=r"target must be one of \('epsilon', 'sample', 'v_prediction'\), got 'x'"):
        P.convert(x0, "epsilon", "x", x_t, a, b)
    with pytest.raises(ValueError, match="max_weight must be positive"):
        P.loss_weight("epsilon", "sample", a, b, max_weight=0)


# -- the scheduler ------------------------------------------------------------------------------------------------

SETTINGS = [
    {"variance_type": "fixed_small"},
    {"variance_type": "fixed_large"},
    {"variance_type": "fixed_small_log"},
    # "fixed_large_log" is left out: diffusers' own step takes the square root of log β_t < 0 there (NaN samples).
    {"variance_type": "learned"},
    {"variance_type": "learned_range"},
    {"clip_sample": False},
    {"clip_sample": True, "clip_sample_range": 0.5},
    {"thresholding": True, "clip_sample": False},
    {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 0.8},
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("prediction_type", TYPES)
def test_zero_squeeze_is_exactly_ddpm_for_every_type(prediction_type, settings):
    """The full 50-step sampling loop, same generator: identical tensors to diffusers' DDPMScheduler."""
    squeezed = SqueezedDDPMScheduler(s0=0.0, principal_axis=AXIS, prediction_type=prediction_type, **settings)
    plain = DDPMScheduler(prediction_type=prediction_type, **settings)
    squeezed.set_timesteps(50)
    plain.set_timesteps(50)
    learned = settings.get("variance_type", "").startswith("learned")
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x_a = squeezed.initial_noise((2, 3, 8, 8), generator=gen_a)
    x_b = torch.randn((2, 3, 8, 8), generator=gen_b)
    for t in squeezed.timesteps:
        output = fake_model(x_a, t)
        if learned:  # (B, 2n, H, W): the second half is the variance (or its interpolation), passed through
            output = torch.cat([output, 0.01 * torch.sigmoid(x_a)], dim=1)  # a positive variance
        out_a = squeezed.step(output, t, x_a, generator=gen_a)
        out_b = plain.step(output.clone(), t, x_b, generator=gen_b)
        assert torch.equal(out_a.pred_original_sample, out_b.pred_original_sample)
        x_a, x_b = out_a.prev_sample, out_b.prev_sample
        assert torch.equal(x_a, x_b)


@pytest.mark.parametrize("prediction_type", TYPES)
@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_squeezed_step_whitens_any_prediction(prediction_type, variant):
    """Eqs. (5)–(7) with explicit matrices around DDPMScheduler's step of the same prediction type."""
    s0 = -0.8
    squeezed = SqueezedDDPMScheduler(s0=s0, variant=variant, principal_axis=AXIS, prediction_type=prediction_type)
    plain = DDPMScheduler(prediction_type=prediction_type)
    squeezed.set_timesteps(50)
    plain.set_timesteps(50)
    beta_max = squeezed.betas.max().double()
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for i, t in enumerate(squeezed.timesteps[[0, 25, -1]].tolist()):
        s_t = s0 * squeezed.betas[t].double() / beta_max
        prev_t = int(squeezed.previous_timestep(t))
        s_prev = s0 * squeezed.betas[prev_t].double() / beta_max if prev_t >= 0 else 0.0
        output = fake_model(x, t)
        out = squeezed.step(output, t, x, generator=torch.Generator().manual_seed(i))
        whiten = inverse_squeeze_matrix(AXIS, s_t, variant)
        reference = plain.step(
            matmul_channels(whiten, output), t, matmul_channels(whiten, x), generator=torch.Generator().manual_seed(i)
        )
        assert_close(out.prev_sample, matmul_channels(squeeze_matrix(AXIS, s_prev, variant), reference.prev_sample))


@pytest.mark.parametrize("prediction_type", TYPES)
def test_true_prediction_of_each_type_gives_the_clean_sample(prediction_type):
    """Under squeezing, the exact ε^sq, x_0 or v^sq of a noisy sample leads the step to x̂_0 = x_0."""
    scheduler = SqueezedDDPMScheduler(s0=-1.0, principal_axis=AXIS, clip_sample=False, prediction_type=prediction_type)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    for t in (980, 500, 20):
        timesteps = torch.full((4,), t)
        x_t, eps_sq = scheduler.add_noise_and_target(x0, noise, timesteps)
        a, b = P.scales_at(scheduler.alphas_cumprod.double(), timesteps)
        truth = P.target_of(prediction_type, x0, eps_sq, a, b)
        if prediction_type == "v_prediction":
            assert_close(truth, scheduler.get_velocity(x0, noise, timesteps), atol=1e-5, rtol=1e-5)
        out = scheduler.step(truth, t, x_t)
        # Loose only because diffusers keeps ᾱ in float32; a wrong coordinate system is off by O(1).
        assert_close(out.pred_original_sample, x0, atol=1e-4, rtol=1e-3)
