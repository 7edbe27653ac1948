"""SqueezedDDPMScheduler: exactly DDPMScheduler at s0 = 0, eqs. (4)–(7) against explicit matrices otherwise."""

import math

import pytest
import torch
from diffusers import DDPMScheduler
from torch.testing import assert_close

from sdmlib import SqueezedDDPMScheduler, apply_squeeze, inverse_squeeze_matrix, squeeze_matrix

AXIS = [0.55, 0.62, 0.56]


def fake_model(x, t):
    """A deterministic stand-in for a UNet: any smooth function of (x, t) will do for comparing schedulers."""
    return torch.tanh(1.5 * x.roll(1, dims=1)) * (0.5 + float(t) / 2000)


def matmul_channels(matrix, x):
    return torch.einsum("ij,bj...->bi...", matrix.to(x.dtype), x)


AUTHORS = {"resqueeze": "current", "clip_space": "whitened", "initial_squeeze": "t_max"}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"variant": "hdm"},
        {"resqueeze": "current"},
        {"squeeze_schedule": "constant"},
        {"clip_space": "data"},
        AUTHORS,
    ],
)
@pytest.mark.parametrize("num_inference_steps", [50, None])
def test_zero_squeeze_is_exactly_ddpm(extra, num_inference_steps):
    squeezed = SqueezedDDPMScheduler(s0=0.0, principal_axis=AXIS, **extra)
    plain = DDPMScheduler()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(6, 3, 8, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (6,), generator=generator)
    assert torch.equal(squeezed.squeeze_noise(noise, timesteps), noise)
    assert torch.equal(squeezed.add_noise(x0, noise, timesteps), plain.add_noise(x0, noise, timesteps))

    if num_inference_steps is not None:
        squeezed.set_timesteps(num_inference_steps)
        plain.set_timesteps(num_inference_steps)
    else:  # the full 1000-step chain is slow; its last 60 steps exercise the same code
        squeezed.timesteps = squeezed.timesteps[-60:]
        plain.timesteps = plain.timesteps[-60:]
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x_a = squeezed.initial_noise((4, 3, 8, 8), generator=gen_a)
    x_b = torch.randn((4, 3, 8, 8), generator=gen_b)  # what DDPMPipeline draws
    assert torch.equal(x_a, x_b)
    for t in squeezed.timesteps:
        out_a = squeezed.step(fake_model(x_a, t), t, x_a, generator=gen_a)
        out_b = plain.step(fake_model(x_b, t), t, x_b, generator=gen_b)
        assert torch.equal(out_a.pred_original_sample, out_b.pred_original_sample)
        x_a, x_b = out_a.prev_sample, out_b.prev_sample
        assert torch.equal(x_a, x_b)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_add_noise_and_target_with_explicit_matrices(variant):
    scheduler = SqueezedDDPMScheduler(s0=-0.7, variant=variant, principal_axis=AXIS)
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    noise = torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    timesteps = torch.tensor([0, 10, 500, 998, 999])
    beta_max = scheduler.betas.max().double()
    noisy = scheduler.add_noise(x0, noise, timesteps)
    target = scheduler.squeeze_noise(noise, timesteps)
    for b, t in enumerate(timesteps.tolist()):
        s_t = -0.7 * scheduler.betas[t].double() / beta_max  # s(t) = s0 β_t / β_max
        squeeze = squeeze_matrix(AXIS, s_t, variant)
        alpha_bar = scheduler.alphas_cumprod[t].double()
        expected_target = matmul_channels(squeeze, noise[b : b + 1])
        assert_close(target[b : b + 1], expected_target)
        assert_close(noisy[b : b + 1], alpha_bar.sqrt() * x0[b : b + 1] + (1 - alpha_bar).sqrt() * expected_target)


@pytest.mark.parametrize("schedule", ["linear", "constant"])
@pytest.mark.parametrize("resqueeze", ["previous", "current"])
@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_step_is_whiten_ddpm_resqueeze(resqueeze, variant, schedule):
    """Eqs. (5)–(7) with explicit matrices around a plain DDPMScheduler step, same random numbers."""
    s0 = 0.9
    squeezed = SqueezedDDPMScheduler(
        s0=s0, variant=variant, principal_axis=AXIS, resqueeze=resqueeze, squeeze_schedule=schedule
    )
    plain = DDPMScheduler()
    squeezed.set_timesteps(50)
    plain.set_timesteps(50)
    beta_max = squeezed.betas.max().double()

    def s_of(t):  # s(t) = s0 β_t/β_max, read at β = 0 past the last step: S_0 = I (linear) or S(s0) (constant)
        if schedule == "constant":
            return s0
        return s0 * squeezed.betas[t].double() / beta_max if t >= 0 else 0.0

    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    timesteps = squeezed.timesteps
    for i, t in enumerate(timesteps[[0, 1, 25, -2, -1]].tolist()):
        prev_t = int(squeezed.previous_timestep(t))
        model_output = fake_model(x, t)
        out = squeezed.step(model_output, t, x, generator=torch.Generator().manual_seed(i))

        whiten = inverse_squeeze_matrix(AXIS, s_of(t), variant)  # eq. (5)
        reference = plain.step(
            matmul_channels(whiten, model_output),
            t,
            matmul_channels(whiten, x),
            generator=torch.Generator().manual_seed(i),
        )  # eq. (6)
        resqueeze_matrix = squeeze_matrix(AXIS, s_of(prev_t) if resqueeze == "previous" else s_of(t), variant)  # (7)
        assert_close(out.prev_sample, matmul_channels(resqueeze_matrix, reference.prev_sample))
        assert_close(
            out.pred_original_sample,
            matmul_channels(squeeze_matrix(AXIS, s_of(t), variant), reference.pred_original_sample),
        )
        if resqueeze == "previous" and prev_t < 0 and schedule == "linear":  # re-squeeze with I: ends in data space
            white = [apply_squeeze(a, AXIS, s_of(t), variant, inverse=True) for a in (model_output, x)]
            unsqueezed = plain.step(*white[:1], t, white[1], generator=torch.Generator().manual_seed(i))
            assert torch.equal(out.prev_sample, unsqueezed.prev_sample)


def test_pred_original_sample_is_in_data_coordinates():
    """Given the true squeezed noise, the step's x̂_0 is the clean sample itself."""
    scheduler = SqueezedDDPMScheduler(s0=-1.0, principal_axis=AXIS, clip_sample=False)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    for t in (980, 500, 20):
        timesteps = torch.full((4,), t)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        out = scheduler.step(scheduler.squeeze_noise(noise, timesteps), t, x_t)
        # Loose only because diffusers keeps ᾱ in float32; a wrong coordinate system is off by O(1).
        assert_close(out.pred_original_sample, x0, atol=1e-4, rtol=1e-3)


def test_initial_noise_is_squeezed_by_first_timestep():
    scheduler = SqueezedDDPMScheduler(s0=-0.5, principal_axis=AXIS)
    scheduler.set_timesteps(50)
    x = scheduler.initial_noise((2, 3, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s_first = -0.5 * scheduler.betas[980].double() / scheduler.betas.max().double()
    assert_close(x, matmul_channels(squeeze_matrix(AXIS, s_first), eps))


def test_initial_noise_t_max_is_squeezed_by_the_last_training_timestep():
    """The authors' code draws S ε with S at t = T − 1 (s = s0), whatever the sampling schedule's first step."""
    scheduler = SqueezedDDPMScheduler(s0=-0.5, principal_axis=AXIS, initial_squeeze="t_max")
    scheduler.set_timesteps(50)
    x = scheduler.initial_noise((2, 3, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert_close(x, matmul_channels(squeeze_matrix(AXIS, -0.5), eps))


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
@pytest.mark.parametrize("resqueeze", ["previous", "current"])
def test_data_space_clipping_with_explicit_matrices(variant, resqueeze):
    """clip_space="data": x̂_0 = S_t x̂_0^white is clipped in the images' box and enters the posterior mean
    a·x̂_0^white + b·x̃_t of eq. (6) through S_t⁻¹; checked against the unclipped step, whose noise is the same."""
    s0, bound = -0.8, 1.0
    kwargs = dict(s0=s0, variant=variant, resqueeze=resqueeze, principal_axis=AXIS)
    clipped = SqueezedDDPMScheduler(clip_sample=True, clip_space="data", **kwargs)
    free = SqueezedDDPMScheduler(clip_sample=False, **kwargs)
    whitened = SqueezedDDPMScheduler(clip_sample=True, clip_space="whitened", **kwargs)
    for scheduler in (clipped, free, whitened):
        scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(6)
    for t in (980, 500, 20, 0):
        x = 3 * torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
        eps = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
        out = clipped.step(eps, t, x, generator=torch.Generator().manual_seed(t))
        ref = free.step(eps, t, x, generator=torch.Generator().manual_seed(t))
        s_t = clipped.strength_at(t)
        s_next = s_t if resqueeze == "current" else clipped.strength_at(clipped.previous_timestep(t))
        alpha_bar = clipped.alphas_cumprod[t].double()
        prev = clipped.previous_timestep(t)
        alpha_bar_prev = clipped.alphas_cumprod[prev].double() if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        a = alpha_bar_prev.sqrt() * (1 - alpha_bar / alpha_bar_prev) / (1 - alpha_bar)  # weight of x̂_0 (Ho et al.)
        x0 = ref.pred_original_sample  # unclipped, in data coordinates
        x0_clipped = x0.clamp(-bound, bound)
        # diffusers takes √ᾱ_t in float32; at t = 980 that rounding, over √ᾱ_t ≈ 6e−3, is ~1e−7 of x̂_0.
        assert_close(out.pred_original_sample, x0_clipped, rtol=1e-5, atol=1e-6)
        correction = a * (x0_clipped - x0)  # in data coordinates; whitened by S_t⁻¹, re-squeezed by S_next
        expected = ref.prev_sample + matmul_channels(
            squeeze_matrix(AXIS, s_next, variant) @ inverse_squeeze_matrix(AXIS, s_t, variant), correction
        )
        # diffusers' own posterior coefficients are float32, and β = 1 − ᾱ_t/ᾱ_t′ loses digits near t = 0:
        # ~2e−5 relative. A clip in the wrong box or a missing S_t⁻¹ is off by O(1).
        assert_close(out.prev_sample, expected, rtol=1e-4, atol=1e-4)
        if t == 980:  # where x̂_0 is uncertain, the two boxes give different steps
            other = whitened.step(eps, t, x, generator=torch.Generator().manual_seed(t))
            assert not torch.allclose(other.prev_sample, out.prev_sample)


def test_batched_timesteps_use_each_samples_own_squeeze():
    scheduler = SqueezedDDPMScheduler(s0=1.0, principal_axis=AXIS)
    noise = torch.randn(1, 3, 4, 4).repeat(4, 1, 1, 1)  # one noise, four timesteps
    target = scheduler.squeeze_noise(noise, torch.tensor([0, 999, 999, 0]))
    assert torch.equal(target[0], target[3])
    assert torch.equal(target[1], target[2])
    assert not torch.allclose(target[0], target[1])


def test_config_round_trip(tmp_path):
    scheduler = SqueezedDDPMScheduler(
        s0=-0.3,
        variant="hdm",
        squeeze_schedule="constant",
        principal_axis=[1.0, 2.0, 2.0],
        resqueeze="current",
        clip_space="data",
        initial_squeeze="t_max",
    )
    assert scheduler.config.principal_axis == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    scheduler.save_pretrained(tmp_path)
    loaded = SqueezedDDPMScheduler.from_pretrained(tmp_path)
    keys = ("s0", "variant", "squeeze_schedule", "principal_axis", "resqueeze", "num_train_timesteps")
    for key in (*keys, "clip_space", "initial_squeeze"):
        assert loaded.config[key] == scheduler.config[key], key
    assert torch.equal(loaded.squeeze_strengths, scheduler.squeeze_strengths)
    noise = torch.randn(2, 3, 4, 4)
    t = torch.tensor([3, 700])
    assert torch.equal(loaded.squeeze_noise(noise, t), scheduler.squeeze_noise(noise, t))


def test_squeeze_schedule_values():
    scheduler = SqueezedDDPMScheduler(s0=-0.4)
    assert scheduler.strength_at(999) == pytest.approx(-0.4)
    assert scheduler.strength_at(0) == pytest.approx(-0.4 * 1e-4 / 0.02)
    assert scheduler.strength_at(-1) == 0.0
    constant = SqueezedDDPMScheduler(s0=-0.4, squeeze_schedule="constant")
    assert constant.strength_at(0) == constant.strength_at(-1) == pytest.approx(-0.4)
    assert scheduler.config.principal_axis == pytest.approx([1 / math.sqrt(3)] * 3)  # luminance default


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"s0": float("nan")}, ValueError, "s0 must be a finite"),
        ({"s0": float("-inf")}, ValueError, "s0 must be a finite"),
        ({"variant": "sqz"}, ValueError, "variant must be one of"),
        ({"squeeze_schedule": "cosine"}, ValueError, "squeeze_schedule must be one of"),
        ({"resqueeze": "next"}, ValueError, r"resqueeze must be one of \('previous', 'current'\)"),
        ({"clip_space": "pixels"}, ValueError, r"clip_space must be one of \('whitened', 'data'\)"),
        ({"initial_squeeze": "T"}, ValueError, r"initial_squeeze must be one of \('first_step', 't_max'\)"),
        ({"principal_axis": [0.0, 0.0, 0.0]}, ValueError, "principal_axis must have a non-zero norm"),
        ({"principal_axis": [1.0], "variant": "hdm"}, ValueError, "hdm.*at least 2 channels"),
        ({"prediction_type": "x0"}, ValueError, r"prediction_type must be one of \('epsilon', 'sample', 'v_prediction'\)"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        SqueezedDDPMScheduler(**kwargs)


def test_channel_mismatch_is_a_clear_error():
    scheduler = SqueezedDDPMScheduler(s0=0.2)
    with pytest.raises(ValueError, match="length 3.*n=1"):
        scheduler.add_noise(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.tensor([1, 2]))
