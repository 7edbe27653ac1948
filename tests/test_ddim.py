"""SqueezedDDIMScheduler: exactly DDIMScheduler at s0 = 0 (every option), whiten–DDIM–re-squeeze against explicit
matrices and a hand-written Song et al. eq. (12) otherwise; custom timestep lists for both squeezed schedulers."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from torch.testing import assert_close

from sdmlib import (
    SqueezedDDIMScheduler,
    SqueezedDDPMScheduler,
    inverse_squeeze_matrix,
    quadratic_timesteps,
    squeeze_matrix,
)
from sdmlib.models import build_unet
from sdmlib.pipeline import SqueezedDDPMPipeline

AXIS = [0.55, 0.62, 0.56]
SHAPE = (2, 3, 4, 4)


def fake_model(x, t):
    """A deterministic stand-in for a UNet, large enough that clipping and thresholding act."""
    return 2.5 * torch.tanh(1.5 * x.roll(1, dims=1)) * (0.5 + float(t) / 2000)


def matmul_channels(matrix, x):
    return torch.einsum("ij,bj...->bi...", matrix.to(x.dtype), x)


def run_loop(scheduler, eta, steps=10, timesteps=None, initial=None, **step_kwargs):
    """The pipeline's loop; noise from one seeded generator, the starting noise drawn as diffusers draws it."""
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    generator = torch.Generator().manual_seed(1)
    x = initial(scheduler, generator) if initial else torch.randn(SHAPE, generator=generator)
    outputs = []
    for t in scheduler.timesteps:
        out = scheduler.step(fake_model(x, t), t, x, eta=eta, generator=generator, **step_kwargs)
        outputs.append(out.pred_original_sample)
        x = out.prev_sample
        outputs.append(x)
    return outputs


def public(config):
    """A config's fields, without diffusers' bookkeeping (`_class_name`, `_use_default_values`, …)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def assert_same_tensors(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


DDIM_OPTIONS = [
    {},
    {"timestep_spacing": "trailing"},
    {"timestep_spacing": "linspace"},
    {"set_alpha_to_one": False},
    {"steps_offset": 1},
    {"steps_offset": 1, "set_alpha_to_one": False},
    {"clip_sample": False},
    {"thresholding": True, "sample_max_value": 1.5},
    {"prediction_type": "sample"},
    {"prediction_type": "v_prediction"},
    {"prediction_type": "v_prediction", "clip_sample": False, "timestep_spacing": "trailing"},
]
SQUEEZE_OPTIONS = [{}, {"variant": "hdm", "resqueeze": "current"}, {"clip_space": "data", "squeeze_schedule": "constant"}]


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("options", DDIM_OPTIONS)
def test_zero_squeeze_is_exactly_ddim(options, eta):
    squeezed = SqueezedDDIMScheduler(s0=0.0, principal_axis=AXIS, **options)
    plain = DDIMScheduler(**options)
    ours = run_loop(squeezed, eta, initial=lambda s, g: s.initial_noise(SHAPE, generator=g))
    assert_same_tensors(ours, run_loop(plain, eta))


@pytest.mark.parametrize("squeeze", SQUEEZE_OPTIONS)
@pytest.mark.parametrize("use_clipped_model_output", [False, True])
def test_zero_squeeze_is_exactly_ddim_whatever_the_squeeze_options(squeeze, use_clipped_model_output):
    squeezed = SqueezedDDIMScheduler(s0=0.0, principal_axis=AXIS, **squeeze)
    kwargs = {"use_clipped_model_output": use_clipped_model_output}
    assert_same_tensors(run_loop(squeezed, 0.5, steps=15, **kwargs), run_loop(DDIMScheduler(), 0.5, steps=15, **kwargs))


@pytest.mark.parametrize(
    "options", [{}, {"steps_offset": 1, "set_alpha_to_one": False}, {"timestep_spacing": "trailing"}]
)
def test_a_custom_list_equal_to_the_parents_schedule_is_exactly_ddim(options):
    """Where the parent's stride t − T // n is the next listed timestep, a custom list goes the same way."""
    plain = DDIMScheduler(**options)
    plain.set_timesteps(20)
    listed = plain.timesteps.tolist()
    squeezed = SqueezedDDIMScheduler(s0=0.0, **options)
    assert_same_tensors(run_loop(squeezed, 0.6, timesteps=listed), run_loop(plain, 0.6, steps=20))


def test_a_custom_list_equal_to_the_parents_schedule_is_exactly_ddpm():
    plain = DDPMScheduler()
    plain.set_timesteps(20)
    listed = plain.timesteps.tolist()
    squeezed = SqueezedDDPMScheduler(s0=0.0)
    for a, b in [(squeezed, listed), (plain, listed)]:
        a.set_timesteps(timesteps=b)
    generator_a, generator_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x_a = x_b = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    for t in listed:
        x_a = squeezed.step(fake_model(x_a, t), t, x_a, generator=generator_a).prev_sample
        x_b = plain.step(fake_model(x_b, t), t, x_b, generator=generator_b).prev_sample
        assert torch.equal(x_a, x_b)


def squeeze_strength(scheduler, t):
    """s(t) = s0 β_t / β_max, and 0 past the end (S_0 = I under the linear schedule)."""
    if t < 0:
        return 0.0
    return scheduler.config.s0 * scheduler.betas[t].double() / scheduler.betas.max().double()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("resqueeze", ["previous", "current"])
@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_step_is_whiten_ddim_resqueeze(variant, resqueeze, prediction_type):
    """step = S_t′ · DDIMScheduler.step(S_t⁻¹ output, S_t⁻¹ x) with explicit matrices (S_t with "current")."""
    options = dict(prediction_type=prediction_type, timestep_spacing="linspace")
    squeezed = SqueezedDDIMScheduler(s0=-0.9, variant=variant, resqueeze=resqueeze, principal_axis=AXIS, **options)
    plain = DDIMScheduler(**options)
    squeezed.set_timesteps(20)
    plain.set_timesteps(20)
    listed = squeezed.timesteps.tolist()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for i in (0, 1, 10, 18, 19):
        t = listed[i]
        t_next = listed[i + 1] if i + 1 < len(listed) else -1  # linspace: not the parent's t − T // n
        output = fake_model(x, t)
        out = squeezed.step(output, t, x, eta=0.8, generator=torch.Generator().manual_seed(i))
        whiten = inverse_squeeze_matrix(AXIS, squeeze_strength(squeezed, t), variant)
        reference = plain.step(
            matmul_channels(whiten, output), t, matmul_channels(whiten, x), eta=0.8,
            generator=torch.Generator().manual_seed(i),
        )
        s_next = squeeze_strength(squeezed, t_next if resqueeze == "previous" else t)
        assert_close(out.prev_sample, matmul_channels(squeeze_matrix(AXIS, s_next, variant), reference.prev_sample))
        squeeze_t = squeeze_matrix(AXIS, squeeze_strength(squeezed, t), variant)
        assert_close(out.pred_original_sample, matmul_channels(squeeze_t, reference.pred_original_sample))
        x = out.prev_sample


def eq12_reference(x, eps_white, t, t_next, scheduler, eta, z, s_t, s_next, variant, clip_data=None, rederive=False):
    """Song et al. eq. (12) written out in float64 with explicit matrices, from the whitened ε̂; `clip_data` clips
    x̂_0 = S_t x̃̂_0 to that bound in data space (and re-derives ε̂ from it with `rederive`)."""
    alpha_bar = scheduler.alphas_cumprod.double()
    a_t = alpha_bar[t]
    a_next = alpha_bar[t_next] if t_next >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x_white = matmul_channels(inverse_squeeze_matrix(AXIS, s_t, variant), x)
    x0_white = (x_white - (1 - a_t).sqrt() * eps_white) / a_t.sqrt()
    if clip_data is not None:
        x0_data = matmul_channels(squeeze_matrix(AXIS, s_t, variant), x0_white).clamp(-clip_data, clip_data)
        x0_white = matmul_channels(inverse_squeeze_matrix(AXIS, s_t, variant), x0_data)
        if rederive:
            eps_white = (x_white - a_t.sqrt() * x0_white) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)).sqrt()
    prev_white = a_next.sqrt() * x0_white + (1 - a_next - sigma**2).sqrt() * eps_white + sigma * z
    prev = matmul_channels(squeeze_matrix(AXIS, s_next, variant), prev_white)
    return prev, matmul_channels(squeeze_matrix(AXIS, s_t, variant), x0_white)


@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_custom_timesteps_step_to_the_next_listed_timestep(variant):
    """A quadratic list has strides of every length: each step is eq. (12) over t → t′, by hand."""
    squeezed = SqueezedDDIMScheduler(s0=0.8, variant=variant, principal_axis=AXIS, clip_sample=False)
    listed = quadratic_timesteps(12, 1000)
    squeezed.set_timesteps(timesteps=listed)
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    for t, t_next in zip(listed, listed[1:] + [-1]):
        z = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        output = fake_model(x, t)
        out = squeezed.step(output, t, x, eta=0.5, variance_noise=z)
        s_t, s_next = squeeze_strength(squeezed, t), squeeze_strength(squeezed, t_next)
        eps_white = matmul_channels(inverse_squeeze_matrix(AXIS, s_t, variant), output)
        prev, x0 = eq12_reference(x, eps_white, t, t_next, squeezed, 0.5, z, s_t, s_next, variant)
        # diffusers keeps ᾱ in float32: ~1e−7 relative, amplified by 1/√ᾱ_t ≈ 10² at t = 800.
        assert_close(out.prev_sample, prev, rtol=1e-5, atol=1e-5)
        assert_close(out.pred_original_sample, x0, rtol=1e-5, atol=1e-5)
        x = out.prev_sample


@pytest.mark.parametrize("use_clipped_model_output", [False, True])
@pytest.mark.parametrize("variant", ["sdm", "hdm"])
def test_data_space_clipping_against_eq12_by_hand(variant, use_clipped_model_output):
    bound, s0 = 1.0, -0.8
    kwargs = dict(s0=s0, variant=variant, principal_axis=AXIS)
    clipped = SqueezedDDIMScheduler(clip_sample=True, clip_space="data", **kwargs)
    whitened = SqueezedDDIMScheduler(clip_sample=True, clip_space="whitened", **kwargs)
    clipped.set_timesteps(20)
    whitened.set_timesteps(20)
    generator = torch.Generator().manual_seed(7)
    for t in (950, 500, 50, 0):
        t_next = t - 50
        x = 3 * torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        output = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        z = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        step_kwargs = dict(eta=0.6, use_clipped_model_output=use_clipped_model_output, variance_noise=z)
        out = clipped.step(output, t, x, **step_kwargs)
        s_t, s_next = squeeze_strength(clipped, t), squeeze_strength(clipped, t_next)
        eps_white = matmul_channels(inverse_squeeze_matrix(AXIS, s_t, variant), output)
        prev, x0 = eq12_reference(
            x, eps_white, t, t_next, clipped, 0.6, z, s_t, s_next, variant, bound, use_clipped_model_output
        )
        assert out.pred_original_sample.abs().max() <= bound + 1e-6
        assert_close(out.pred_original_sample, x0, rtol=1e-5, atol=1e-5)
        assert_close(out.prev_sample, prev, rtol=1e-4, atol=1e-4)
        if t == 950:  # where x̂_0 is uncertain, the two boxes give different steps
            other = whitened.step(output, t, x, **step_kwargs)
            assert not torch.allclose(other.prev_sample, out.prev_sample)


def test_initial_noise_is_squeezed_by_the_first_timestep():
    scheduler = SqueezedDDIMScheduler(s0=-0.5, principal_axis=AXIS)
    scheduler.set_timesteps(timesteps=[700, 300, 0])
    x = scheduler.initial_noise(SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    eps = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    assert_close(x, matmul_channels(squeeze_matrix(AXIS, squeeze_strength(scheduler, 700)), eps))


def test_config_round_trips_and_converts_to_and_from_ddpm(tmp_path):
    squeeze = dict(
        s0=-0.3, variant="hdm", squeeze_schedule="constant", principal_axis=[1.0, 2.0, 2.0], resqueeze="current",
        clip_space="data", initial_squeeze="t_max",
    )
    ddim = SqueezedDDIMScheduler(set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction", **squeeze)
    ddim.save_pretrained(tmp_path)
    loaded = SqueezedDDIMScheduler.from_pretrained(tmp_path)
    assert public(loaded.config) == public(ddim.config)
    assert torch.equal(loaded.squeeze_strengths, ddim.squeeze_strengths)
    ddpm = SqueezedDDPMScheduler.from_config(ddim.config)
    back = SqueezedDDIMScheduler.from_config(ddpm.config)
    for key in (*squeeze, "prediction_type", "steps_offset"):
        assert ddpm.config[key] == ddim.config[key] == back.config[key], key
    assert ddpm.config.principal_axis == pytest.approx([1 / 3, 2 / 3, 2 / 3])


@pytest.fixture(scope="module")
def tiny_pipeline():
    torch.manual_seed(0)
    scheduler = SqueezedDDPMScheduler(s0=-0.4, principal_axis=AXIS)
    return SqueezedDDPMPipeline(unet=build_unet("tiny", 8), scheduler=scheduler)


def test_pipeline_samples_with_a_swapped_in_ddim_and_saves_it(tiny_pipeline, tmp_path):
    pipe = tiny_pipeline
    pipe.scheduler = SqueezedDDIMScheduler.from_config(pipe.scheduler.config)
    images = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert images.images.shape == (2, 3, 8, 8) and torch.isfinite(images.images).all()
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["scheduler"] == ["sdmlib.ddim", "SqueezedDDIMScheduler"]
    generic = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(generic.scheduler) is SqueezedDDIMScheduler
    loaded = SqueezedDDPMPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is SqueezedDDIMScheduler
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    again = loaded(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert_close(again.images, images.images, rtol=1e-4, atol=1e-5)  # reloaded weights and axis: float rounding


@pytest.mark.parametrize("cls", [SqueezedDDIMScheduler, SqueezedDDPMScheduler])
def test_both_schedulers_sample_on_the_quadratic_schedule(cls):
    scheduler = cls(s0=-0.4, principal_axis=AXIS)
    listed = quadratic_timesteps(15, 1000)
    scheduler.set_timesteps(timesteps=listed)
    assert scheduler.timesteps.tolist() == listed
    x = scheduler.initial_noise(SHAPE, generator=torch.Generator().manual_seed(9))
    for t in scheduler.timesteps:
        x = scheduler.step(fake_model(x, t), t, x, generator=torch.Generator().manual_seed(int(t))).prev_sample
    assert torch.isfinite(x).all()


def test_quadratic_timesteps_are_the_ddim_codes_deduplicated():
    # The DDIM repository's "quad" skip, verbatim; descending and without repeats.
    seq = [int(s) for s in list(np.linspace(0, np.sqrt(1000 * 0.8), 100) ** 2)]
    listed = quadratic_timesteps(100, 1000)
    assert listed == sorted(set(seq), reverse=True)
    assert listed[0] == 800 and listed[-1] == 0 and len(listed) == 96
    assert quadratic_timesteps(100, 1000, offset=1) == [t + 1 for t in listed]
    assert quadratic_timesteps(5, 1000) == [800, 450, 200, 50, 0]
    assert quadratic_timesteps(1, 1000) == [0]


BAD_TIMESTEPS = [
    ([], "got \\[\\]"),
    ([500, 500, 10], "500 is followed by 500"),
    ([10, 500], "10 is followed by 500"),
    ([1000, 10], "entry 1000 is out of range"),
    ([500, -1], "entry -1 is out of range"),
    ([500, 2.5], "entry 2.5 is not an integer"),
    ([True, 0], "entry True is not an integer"),
    ("999", "got '999'"),
]


@pytest.mark.parametrize("cls", [SqueezedDDIMScheduler, SqueezedDDPMScheduler])
@pytest.mark.parametrize("timesteps, match", BAD_TIMESTEPS)
def test_bad_timesteps_are_a_clear_error(cls, timesteps, match):
    scheduler = cls(s0=-0.4)
    allowed = r"timesteps must be a non-empty, strictly decreasing list of integers in \[0, 1000\)"
    with pytest.raises(ValueError, match=allowed):
        scheduler.set_timesteps(timesteps=timesteps)
    with pytest.raises(ValueError, match=match):
        scheduler.set_timesteps(timesteps=timesteps)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.set_timesteps(0), "num_inference_steps must be an integer between 1 and 1000, got 0"),
        (lambda s: s.set_timesteps(10, timesteps=[5, 0]), "exactly one of num_inference_steps and timesteps"),
        (lambda s: s.set_timesteps(), "exactly one of num_inference_steps and timesteps"),
    ],
)
def test_bad_set_timesteps_calls_are_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(SqueezedDDIMScheduler())


@pytest.mark.parametrize("eta", [-0.1, float("nan")])
def test_negative_eta_is_a_clear_error(eta):
    scheduler = SqueezedDDIMScheduler(s0=-0.4)
    scheduler.set_timesteps(10)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"eta must be a number ≥ 0 .*got (-0.1|nan)"):
        scheduler.step(x, scheduler.timesteps[0], x, eta=eta)


def test_a_timestep_off_a_custom_schedule_is_a_clear_error():
    scheduler = SqueezedDDIMScheduler(s0=-0.4)
    scheduler.set_timesteps(timesteps=[900, 400, 0])
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"timestep must be one of the custom schedule's \[900, 400, 0\], got 500"):
        scheduler.step(x, 500, x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "sqz"}, "variant must be one of"),
        ({"squeeze_schedule": "cosine"}, "squeeze_schedule must be one of"),
        ({"resqueeze": "next"}, r"resqueeze must be one of \('previous', 'current'\)"),
        ({"clip_space": "pixels"}, r"clip_space must be one of \('whitened', 'data'\)"),
        ({"initial_squeeze": "T"}, r"initial_squeeze must be one of \('first_step', 't_max'\)"),
        ({"s0": float("nan")}, "s0 must be a finite"),
        ({"prediction_type": "x0"}, r"prediction_type must be one of"),
    ],
)
def test_unknown_squeeze_options_are_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SqueezedDDIMScheduler(**kwargs)
