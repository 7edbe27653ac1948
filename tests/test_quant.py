"""sdmlib.quant: quantizers against hand-computed values, calibration sets, shortcut splitting, reconstruction,
save/load, bad input, and the W8-vs-W4 ordering on a trained tiny UNet."""

import math

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear
from scipy.stats import norm

from sdmlib.quant.calibration import calibration_set, ndtc_timesteps, nearest_steps, uniform_steps
from sdmlib.quant.config import QuantConfig
from sdmlib.quant.quantizers import activation_quantizer, calibrate_activations, quant_layer, weight_quantizer
from sdmlib.quant.shortcut import SplitConv2d

W = torch.tensor([[-1.1, 0.0, 2.0, 0.9], [0.31, 0.5, 0.1, -0.05]])  # no value on a rounding tie


def _linear(weight_quant, input_quant=None, weight=W):
    layer = QuantLinear(weight.shape[1], weight.shape[0], bias=False, weight_quant=weight_quant,
                        input_quant=input_quant, return_quant_tensor=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_minmax_weights_symmetric_per_channel_by_hand():
    # 4 bits, narrow symmetric: levels −7..7, scale = max|w| / 7 per output channel; round half to even.
    quant = _linear(weight_quantizer("minmax", 4)).quant_weight()
    torch.testing.assert_close(quant.scale.flatten(), torch.tensor([2 / 7, 0.5 / 7]))
    # w/scale: row 0 (−3.85, 0, 7, 3.15) → (−4, 0, 7, 3); row 1 (4.34, 7, 1.4, −0.7) → (4, 7, 1, −1)
    expected = torch.tensor([[-4 * 2 / 7, 0.0, 2.0, 3 * 2 / 7], [4 * 0.5 / 7, 0.5, 0.5 / 7, -1 * 0.5 / 7]])
    torch.testing.assert_close(quant.value, expected)


def test_qdiffusion_weights_asymmetric_min_max_by_hand():
    # 4 bits unsigned 0..15: scale = (max − min(min, 0)) / 15, zero point = −min / scale.
    quant = _linear(weight_quantizer("qdiffusion", 4)).quant_weight()
    # row 0: range [−1.1, 2], scale 3.1/15, zero point round(1.1/scale) = round(5.32) = 5
    # row 1: range [−0.05, 0.5], scale 0.55/15, zero point round(0.05/scale) = round(1.36) = 1
    scales, zeros = torch.tensor([3.1 / 15, 0.55 / 15]), torch.tensor([5.0, 1.0])
    torch.testing.assert_close(quant.scale.flatten(), scales)
    torch.testing.assert_close(quant.zero_point.flatten(), zeros)
    integers = (W / scales[:, None] + zeros[:, None]).round().clamp(0, 15)
    torch.testing.assert_close(quant.value, (integers - zeros[:, None]) * scales[:, None])
    assert integers[0].tolist() == [0.0, 5.0, 15.0, 9.0]  # −1.1/s + 5 = −0.32 → 0, 0.9/s + 5 = 9.35 → 9


@pytest.mark.parametrize("norm", [2.4, 2.0])
def test_ptq4dm_weights_lp_search_matches_brute_force(norm):
    # The clipping range minimising Σ|w − Q(w)|^p among max|w|·j/n, j = 1..n, searched explicitly (PTQ4DM's code:
    # p = 2.4; p = 2 is brevitas' squared error); rows of Gaussian weights with one outlier each, where clipping pays.
    weight = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    weight[:, 0] = torch.tensor([6.0, -5.0, 4.0])
    for candidates in (4, 100):
        layer = _linear(weight_quantizer("ptq4dm", 4, mse_candidates=candidates, search_norm=norm), weight=weight)
        scale = layer.quant_weight().scale.flatten()
        for row in range(3):
            amax = weight[row].abs().max()
            errors = []
            for j in range(1, candidates + 1):
                s = amax * j / candidates / 7
                errors.append((((weight[row] / s).round().clamp(-7, 7) * s - weight[row]).abs() ** norm).sum())
            best = amax * (int(torch.stack(errors).argmin()) + 1) / candidates / 7
            torch.testing.assert_close(scale[row], best)
            assert candidates == 4 or best < amax / 7  # the finer search clips the outlier


def test_lp_search_norm_changes_the_clipping():
    # A larger p punishes the clipped outlier's error more, so the range it picks is never narrower, and here wider.
    weight = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    weight[:, 0] = torch.tensor([6.0, -5.0, 4.0])
    scales = {p: _linear(weight_quantizer("ptq4dm", 4, search_norm=p), weight=weight).quant_weight().scale.flatten()
              for p in (2.0, 2.4, 4.0)}
    assert torch.all(scales[2.4] >= scales[2.0]) and torch.all(scales[4.0] >= scales[2.4])
    assert torch.any(scales[4.0] > scales[2.0])
    assert QuantConfig(method="ptq4dm", search_norm=2.0).setting_name().endswith("-p2")
    assert "-p" not in QuantConfig(method="ptq4dm").setting_name().split("recon_off")[1]


def test_asymmetric_activation_range_is_calibrated_min_max_by_hand():
    layer = _linear(weight_quantizer("qdiffusion", 8), activation_quantizer("qdiffusion", 8))
    batches = [torch.tensor([[-1.0, 0.5, 3.0, 0.0]]), torch.tensor([[-2.0, 0.5, 2.0, 0.0]])]
    from brevitas.graph.calibrate import calibration_mode

    with torch.no_grad(), calibration_mode(layer):
        for batch in batches:
            layer(batch)
    layer.eval()
    # brevitas averages each batch's statistic: range [−1.5, 2.5], scale 4/255, zero point round(1.5·255/4).
    scale = 4 / 255
    zero = round(1.5 / scale)
    x = torch.tensor([[-1.0, 0.5, 3.0, 0.013]])
    expected = ((x / scale).round() + zero).clamp(0, 255) * scale - zero * scale
    torch.testing.assert_close(layer.input_quant(x).value, expected)


def test_quant_layer_keeps_the_float_output_at_16_bits():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    config = QuantConfig(method="minmax", weight_bits=8, activation_bits=16, calibration_size=32)
    quantized = quant_layer(conv, config)
    assert isinstance(quantized, QuantConv2d)
    x = torch.randn(4, 3, 8, 8)
    calibrate_activations(_Wrap(quantized), [(x, None)])
    torch.testing.assert_close(quantized(x), conv(x), atol=0.02, rtol=0.02)


class _Wrap(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, t):
        return self.layer(x)


# -- calibration sets --------------------------------------------------------------------------------------------


def _clipped_normal_moments(mu, sigma, low, high):
    """Mean and variance of clip(X, low, high), X ~ N(mu, sigma²), by numerical integration on a fine grid."""
    grid = torch.linspace(mu - 10 * sigma, mu + 10 * sigma, 400001, dtype=torch.float64)
    density = torch.from_numpy(norm.pdf(grid.numpy(), mu, sigma))
    values = grid.clamp(low, high)
    weight = density / density.sum()
    mean = (weight * values).sum()
    return float(mean), float((weight * (values - mean) ** 2).sum())


def test_ndtc_timesteps_mean_and_spread_within_monte_carlo_error():
    T, n = 1000, 200_000
    t = ndtc_timesteps(n, T, 0.4, 0.4, torch.Generator().manual_seed(0)).double()
    assert t.min() >= 0 and t.max() <= T - 1 and t.dtype == torch.float64
    mean, variance = _clipped_normal_moments(0.4 * T, 0.4 * T, 0, T - 1)
    standard_error = math.sqrt(variance / n)
    assert abs(t.mean() - mean) < 4 * standard_error  # 4 SE; rounding shifts the mean by far less
    assert abs(t.var() - variance) / variance < 0.02  # variance's relative SE is about √(2/n)·(kurtosis) ≈ 0.5 %


def test_uniform_steps_every_cth_step_and_nearest_steps():
    assert uniform_steps(100, 5).tolist() == list(range(0, 100, 5))
    assert len(uniform_steps(100, 5)) == 20  # Q-Diffusion CIFAR-10: 20 steps × 256 samples
    schedule = torch.tensor([980, 784, 588, 392, 196, 0])
    assert nearest_steps(torch.tensor([999, 600, 0, 100]), schedule).tolist() == [0, 2, 5, 4]


@pytest.fixture(scope="module")
def random_unet():
    from sdmlib.models import build_unet
    from sdmlib.scheduler import SqueezedDDPMScheduler

    torch.manual_seed(0)
    return build_unet("tiny", 32).eval(), SqueezedDDPMScheduler(s0=0.4)


def test_uniform_and_ndtc_sets_come_from_the_trajectory(random_unet):
    unet, scheduler = random_unet
    config = QuantConfig(calibration="uniform", calibration_size=6, batch_size=3, num_inference_steps=4,
                         uniform_interval=2)
    uniform = calibration_set(unet, scheduler, config)
    scheduler.set_timesteps(4)
    assert sorted(uniform.t.tolist()) == sorted(scheduler.timesteps[[0, 2]].tolist() * 3)
    assert uniform.x.shape == (6, 3, 32, 32)
    # The first kept step is the sampler's starting noise S_T ε, drawn as the pipeline draws it.
    first = uniform.x[uniform.t == int(scheduler.timesteps[0])]
    assert first.std() > 0.5
    ndtc = calibration_set(unet, scheduler, config.replace(calibration="ndtc"))
    assert set(ndtc.t.tolist()) <= set(scheduler.timesteps.tolist())
    coded = calibration_set(unet, scheduler, config.replace(calibration="ndtc", ndtc_labelling="code"))
    drawn = ndtc_timesteps(6, 1000, 0.4, 0.4, torch.Generator().manual_seed(config.seed + 1))
    assert sorted(coded.t.tolist()) == sorted(drawn.tolist())  # the raw draws are the labels


def test_ndtc_code_labelling_keeps_the_image_near_T_minus_1_minus_t(random_unet, monkeypatch):
    import sdmlib.quant.calibration as calibration

    unet, scheduler = random_unet
    seen = {}
    monkeypatch.setattr(calibration, "_from_trajectories",
                        lambda unet, sampler, config, steps, labels: seen.update(steps=steps, labels=labels))
    config = QuantConfig(calibration="ndtc", ndtc_labelling="code", calibration_size=64, batch_size=8,
                         num_inference_steps=10)
    calibration._calibration_pairs(unet, scheduler, config)
    scheduler.set_timesteps(10)
    kept = scheduler.timesteps[seen["steps"]]  # the trajectory step each image is taken at
    # PTQ4DM's script: the image kept near T − 1 − t is labelled t. The 10 steps are 0, 100, …, 900, so the nearest
    # is within half a spacing (50), or within 99 above the last step; labelling by t itself would miss by |2t − 999|.
    assert seen["labels"].float().std() > 100
    assert (kept - (999 - seen["labels"])).abs().max() <= 99


def test_ddim_calibration_set_comes_from_a_deterministic_ddim_trajectory(random_unet):
    import functools

    from sdmlib.ddim import SqueezedDDIMScheduler
    from sdmlib.quant.sampling import build_sampler, trajectory

    unet, scheduler = random_unet
    config = QuantConfig(sampler="ddim", calibration="uniform", calibration_size=4, batch_size=2,
                         num_inference_steps=4, uniform_interval=2)
    ddim = build_sampler("ddim", scheduler)
    assert type(ddim) is SqueezedDDIMScheduler and ddim.config.s0 == scheduler.config.s0
    calibration = calibration_set(unet, scheduler, config)
    ddim.set_timesteps(4)
    assert sorted(calibration.t.tolist()) == sorted(ddim.timesteps[[0, 2]].tolist() * 2)
    etas, step = [], ddim.step

    @functools.wraps(step)  # keeps step's signature, which is how trajectory decides to pass η
    def recording_step(*args, **kwargs):
        etas.append(kwargs.get("eta"))
        return step(*args, **kwargs)

    ddim.step = recording_step
    list(trajectory(unet, ddim, 1, 3, torch.Generator().manual_seed(0)))
    assert etas == [0.0] * 3


# -- shortcut splitting ------------------------------------------------------------------------------------------


def test_split_conv_is_exact_in_float_and_beats_one_quantizer_on_disparate_ranges():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 8, 1)
    deep, skip = 30 * torch.randn(64, 8, 4, 4), 0.05 * torch.randn(64, 8, 4, 4)  # ranges 600× apart
    with torch.no_grad():
        conv.weight[:, 8:] *= 600  # both parts matter to the output, as in a trained network
    x = torch.cat([deep, skip], dim=1)
    split = SplitConv2d(conv, 8)
    torch.testing.assert_close(split(x), conv(x), atol=1e-4, rtol=1e-4)
    config = QuantConfig(method="qdiffusion", weight_bits=8, calibration_size=32, reconstruction="off")
    single = quant_layer(conv, config)
    split.first, split.second = quant_layer(split.first, config), quant_layer(split.second, config)
    for layer in (single, split):
        calibrate_activations(_Wrap(layer), [(x, None)])
    x_skip = torch.cat([torch.zeros_like(deep), skip], 1)
    with torch.no_grad():
        error_single = (single(x) - conv(x)).norm()
        error_split = (split(x) - conv(x)).norm()
        skip_single = (single.input_quant(x_skip).value[:, 8:] - skip).norm() / skip.norm()
    assert skip_single > 0.5  # one range for both parts wipes out most of the skip features
    assert error_split < 0.5 * error_single


def test_concat_splits_measure_h_channels_of_every_up_block_resnet():
    """Against the forward pass itself: the h part of resnet j's input is the up block's input (j = 0) or resnet
    j − 1's output, on a UNet whose skips within one up block differ in channels (3 levels, 2 layers per block)."""
    from diffusers import UNet2DModel

    from sdmlib.quant.shortcut import concat_splits

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, block_out_channels=(16, 24, 40), layers_per_block=2, norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3).eval()
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([10])
    splits = concat_splits(unet, x, t)
    h_channels, handles = {}, []
    for i, block in enumerate(unet.up_blocks):
        handles.append(block.register_forward_pre_hook(
            lambda m, args, kwargs, i=i: h_channels.__setitem__((i, 0), (args[0] if args else kwargs[
                "hidden_states"]).shape[1]), with_kwargs=True))
        for j, resnet in enumerate(block.resnets[:-1]):
            handles.append(resnet.register_forward_hook(
                lambda m, args, out, i=i, j=j: h_channels.__setitem__((i, j + 1), out.shape[1])))
    with torch.no_grad():
        unet(x, t)
    expected = {f"up_blocks.{i}.resnets.{j}.conv_shortcut": c for (i, j), c in h_channels.items()}
    assert splits == expected and len(splits) == 9
    assert len(set(splits.values())) > 1 and splits != {name: 40 for name in splits}


def test_setting_names_carry_only_what_differs_from_the_method_defaults():
    assert QuantConfig(method="ptq4dm").setting_name() == "ptq4dm-w8a8-ndtc1024-split_off-recon_off"
    assert QuantConfig(method="ptq4dm", search_norm=2.0).setting_name().endswith("-p2")
    assert QuantConfig(method="qdiffusion", search_norm=2.0).setting_name() == QuantConfig(
        method="qdiffusion").setting_name()  # the L_p search is PTQ4DM's alone
    assert QuantConfig(method="ptq4dm", ndtc_labelling="code").setting_name().endswith("-codelabels")
    assert QuantConfig(method="qdiffusion", reconstruction_iterations=7).setting_name().endswith("-recon_7")


# -- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"weight_bits": 3}, "weight_bits must be one of (4, 8), got 3"),
        ({"activation_bits": 4}, "activation_bits must be one of (8, 16)"),
        ({"method": "brecq"}, "method must be one of ('ptq4dm', 'qdiffusion', 'minmax')"),
        ({"calibration": "random"}, "calibration must be one of"),
        ({"search_norm": 0.5}, "search_norm must be a number ≥ 1 .* got 0.5"),
        ({"calibration_size": 16, "batch_size": 32}, "calibration_size must be at least batch_size=32, got 16"),
        ({"sampler": "euler"}, "sampler must be one of ('ddpm', 'ddim', 'exact', 'exact_ddim'), got 'euler'"),
        ({"reconstruction": True}, "reconstruction must be a string"),
    ],
)
def test_bad_input_names_parameter_and_allowed(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QuantConfig.from_mapping(changes)


# -- block reconstruction ----------------------------------------------------------------------------------------


def test_reconstruction_lowers_a_resnet_blocks_output_error():
    from diffusers.models.resnet import ResnetBlock2D

    from sdmlib.quant.quantizers import quantize_layers
    from sdmlib.quant.reconstruction import reconstruct_unit

    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=16, out_channels=16, temb_channels=8, groups=4).eval()
    config = QuantConfig(method="qdiffusion", weight_bits=4, calibration_size=32, reconstruction_iterations=150,
                         activation_iterations=50, reconstruction_batch_size=16)
    quantized = quantize_layers(__import__("copy").deepcopy(block), config)
    x, temb = torch.randn(32, 16, 8, 8), torch.randn(32, 8)
    calibrate_activations(_BlockWrap(quantized), [(x, temb)])
    inputs = [((x[:16], temb[:16]), {}), ((x[16:], temb[16:]), {})]
    with torch.no_grad():
        targets = [block(x[:16], temb[:16]), block(x[16:], temb[16:])]
    report = reconstruct_unit(quantized, inputs, targets, config, torch.Generator().manual_seed(0))
    assert report["error_after"] < 0.8 * report["error_before"]
    # The learned rounding ends hard: every weight is on the integer grid of its own quantizer.
    layer = quantized.conv1
    quant = layer.quant_weight()
    integers = quant.value / quant.scale + quant.zero_point
    torch.testing.assert_close(integers, integers.round(), atol=1e-3, rtol=0)


class _BlockWrap(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x, temb):
        return self.block(x, temb)


# -- a trained tiny UNet: W8 below W4, the splits, save → load ---------------------------------------------------


def test_trained_tiny_unet_w8_below_w4_and_save_load_identical(tiny_run, tmp_path):
    from sdmlib.config import TrainConfig
    from sdmlib.evaluate import load_pipeline
    from sdmlib.quant.model import quantize_unet
    from sdmlib.quant.run import check_run
    from sdmlib.quant.shortcut import concat_ranges, concat_splits, split_errors
    from sdmlib.quant.state import load_quant_state, save_quant_state
    from sdmlib.train import train

    run_dir = train(TrainConfig.from_mapping({**tiny_run, "output_dir": str(tmp_path / "run")}), progress=False)
    pipeline = load_pipeline(run_dir, torch.device("cpu"))
    unet, scheduler = pipeline.unet.eval(), pipeline.scheduler
    config = QuantConfig(run_dir=str(run_dir), method="minmax", calibration="uniform", calibration_size=8,
                         batch_size=8, num_inference_steps=3, uniform_interval=1)
    assert check_run(config) == run_dir
    calibration = calibration_set(unet, scheduler, config)
    x, t = calibration.x, calibration.t
    with torch.no_grad():
        reference = unet(x, t).sample

    def relative_error(model):
        with torch.no_grad():
            return float((model(x, t).sample - reference).norm() / reference.norm())

    w8, _, _ = quantize_unet(unet, config, calibration)
    w4, _, _ = quantize_unet(unet, config.replace(weight_bits=4), calibration)
    assert 0 < relative_error(w8) < relative_error(w4) < 1

    # The splits found in diffusers' up blocks: h has the channels the resnet gets beyond its skip.
    splits = concat_splits(unet, x, t)
    assert splits["up_blocks.0.resnets.0.conv_shortcut"] == 64 and len(splits) == 6
    ranges = concat_ranges(unet, splits, x, t)
    assert all(h > 0 and skip > 0 for h, skip in ranges.values())
    # What the split saves on the trained UNet, layer by layer (the quantize notebook's table and assertion).
    report = split_errors(unet, splits, calibration.batches(4), config.replace(method="qdiffusion", weight_bits=8))
    assert set(report) == set(splits)
    for name, row in report.items():
        assert (row["h_range"], row["skip_range"]) == pytest.approx(ranges[name], rel=0.5)  # more batches here
        assert 0 < row["error_split"] <= 1.1 * row["error_single"], name
    assert sum(r["error_split"] for r in report.values()) < 0.9 * sum(r["error_single"] for r in report.values())

    # Q-Diffusion's full recipe (split, learned rounding: tensors brevitas shares between two quantizers).
    split_config = config.replace(method="qdiffusion", shortcut_split="on", reconstruction="on", attention_matmuls=True,
                                  reconstruction_iterations=2, activation_iterations=1, reconstruction_batch_size=4)
    model, splits, _ = quantize_unet(unet, split_config, calibration)
    save_quant_state(tmp_path / "q", model, unet, split_config, splits)
    loaded, loaded_config = load_quant_state(tmp_path / "q", unet)
    assert loaded_config == split_config
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, model(x, t).sample)
        other = __import__("copy").deepcopy(unet)
        other.conv_out.bias += 0.01
    with pytest.raises(ValueError, match="not for this run's UNet"):
        load_quant_state(tmp_path / "q", other)


def test_run_folder_without_model_is_refused(tmp_path):
    from sdmlib.quant.run import check_run

    with pytest.raises(ValueError, match="run_dir=.* holds no trained model"):
        check_run(QuantConfig(run_dir=str(tmp_path)))


# -- the attention matmuls (option attention_matmuls) ------------------------------------------------------------


def _attention(**kwargs):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(32, heads=2, dim_head=16, norm_num_groups=8, residual_connection=True, bias=True,
                     _from_deprecated_attn_block=True, **kwargs).eval()


@pytest.mark.parametrize("cross", [False, True])
def test_written_out_attention_equals_diffusers_sdpa_in_float(cross):
    import copy

    from sdmlib.quant.attention import QuantAttnProcessor

    attn = _attention(cross_attention_dim=24 if cross else None)
    x = torch.randn(3, 32, 5, 5) if not cross else torch.randn(3, 25, 32)
    context = torch.randn(3, 7, 24) if cross else None
    mask = torch.zeros(3, 7).masked_fill(torch.rand(3, 7) > 0.7, -1e4) if cross else None
    with torch.no_grad():
        reference = attn(x, encoder_hidden_states=context, attention_mask=mask)
        written = copy.deepcopy(attn)
        written.set_processor(QuantAttnProcessor())
        torch.testing.assert_close(written(x, encoder_hidden_states=context, attention_mask=mask), reference,
                                   atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["minmax", "ptq4dm", "qdiffusion"])
def test_quantized_attention_matmuls_each_input_quantized(method):
    from sdmlib.quant.attention import quantize_attention

    attn = _attention()
    x = torch.randn(8, 32, 6, 6)
    with torch.no_grad():
        reference = attn(x)
    model = _Wrap(__import__("copy").deepcopy(attn))
    assert quantize_attention(model, QuantConfig(method=method, mse_candidates=10)) == ["layer"]
    calibrate_activations(model, [(x, None)])
    processor = model.layer.processor
    seen = {}
    for name in ("query_quant", "key_quant", "value_quant", "probs_quant"):
        getattr(processor, name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, (args[0], out)))
    with torch.no_grad():
        error = float((model(x, None) - reference).norm() / reference.norm())
    assert 0 < error < 0.02  # 8-bit rounding of the four matmul inputs, nothing more
    for name, (before, after) in seen.items():  # each input is on its own 8-bit grid, not passed through
        assert not torch.equal(before, after), name
        assert torch.unique(after).numel() <= 256, name
    probs_after = seen["probs_quant"][1]
    assert probs_after.min() >= 0
    # An unsigned grid for the probabilities (they lie in [0, 1]): a signed one would waste half its 256 levels.
    assert not processor.probs_quant.act_quant.is_signed
    assert QuantConfig(attention_matmuls=True).setting_name().endswith("-attn")


def test_reconstruction_learns_the_attention_matmul_step_sizes():
    from sdmlib.quant.attention import quantize_attention
    from sdmlib.quant.quantizers import quantize_layers
    from sdmlib.quant.reconstruction import reconstruct_unit

    attn = _attention()
    config = QuantConfig(method="qdiffusion", weight_bits=4, reconstruction_iterations=0, activation_iterations=20,
                         reconstruction_batch_size=8, calibration_size=32)
    quantized = quantize_layers(__import__("copy").deepcopy(attn), config)
    quantize_attention(_Wrap(quantized), config)
    x = torch.randn(16, 32, 6, 6)
    calibrate_activations(_Wrap(quantized), [(x, None)])
    processor = quantized.processor
    before = {n: p.detach().clone() for n, p in processor.named_parameters() if n.endswith("scaling_impl.value")}
    assert len(before) == 4
    with torch.no_grad():
        targets = [attn(x[:8]), attn(x[8:])]
    reconstruct_unit(quantized, [((x[:8],), {}), ((x[8:],), {})], targets, config, torch.Generator().manual_seed(0))
    after = dict(processor.named_parameters())
    assert all(not torch.equal(after[n], value) for n, value in before.items())
