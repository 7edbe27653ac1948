"""The speed options: the foreach EMA against diffusers' loop, the training set on the device against the DataLoader,
the fallbacks resolved before training, and a bf16 / channels_last training step on the CPU."""

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers.training_utils import EMAModel

import sdmlib.speed as speed
import sdmlib.train as training
from sdmlib.config import TrainConfig
from sdmlib.data import build_dataset
from sdmlib.speed import DeviceImages, ForeachEMA, plan_speed, resolve_mixed_precision

CPU = torch.device("cpu")


def cpu_plan(**changes):
    options = dict(mixed_precision="auto", tf32=True, channels_last="auto", compile=False, data_on_device="auto")
    return plan_speed(CPU, **{**options, **changes}, dataset_bytes=1000)


# -- EMA ---------------------------------------------------------------------------------------------------------


def test_foreach_ema_equals_diffusers_loop_bit_for_bit_through_the_warm_up():
    """θ̄ ← θ̄ − (1 − d_k)(θ̄ − θ) with d_k = min(decay, 1 − (1 + k/γ)^−p): the same bits as EMAModel.step's loop,
    step after step while d_k rises, with a frozen parameter copied rather than averaged."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in ((5, 3), (7,), (2, 2, 3))]
    params[1].requires_grad_(False)
    kwargs = dict(decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    loop, foreach = EMAModel(params, **kwargs), ForeachEMA(params, **kwargs)
    decays = []
    for _ in range(8):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn(p.shape, generator=generator))
        loop.step(params)
        foreach.step(params)
        decays.append(foreach.cur_decay_value)
        assert foreach.cur_decay_value == loop.cur_decay_value
        for a, b in zip(loop.shadow_params, foreach.shadow_params):
            assert torch.equal(a, b)
    assert 0 < decays[2] < decays[-1] < 0.999  # the warm-up was exercised
    assert torch.equal(foreach.shadow_params[1], params[1])
    assert foreach.state_dict().keys() == loop.state_dict().keys()  # checkpoints keep their format


# -- the training set on the device ---------------------------------------------------------------------------


@pytest.mark.parametrize("process_index", [0, 1])
def test_device_batches_equal_dataloader_batches(image_folder, process_index):
    """Both data paths give the same (step → indices, x_0) for every step and process, across an epoch boundary, and
    the flips, noise and timesteps drawn from them agree."""
    dataset = build_dataset("folder", image_folder, 16, train=True, augment=False)
    config = TrainConfig.from_mapping(
        {"dataset": "folder", "image_size": 16, "batch_size": 8, "train_steps": 5, "num_workers": 2}
    )
    accelerator = SimpleNamespace(process_index=process_index, num_processes=2, device=CPU)
    paths = {
        on: list(training.training_batches(dataset, config, cpu_plan(data_on_device=on), 1, accelerator))
        for on in ("on", "off")
    }
    assert len(paths["on"]) == len(paths["off"]) == 4  # steps 1..4; 24 images = 3 steps per epoch
    for (step, indices, x0), (step_b, indices_b, x0_b) in zip(paths["on"], paths["off"]):
        assert (step, indices) == (step_b, indices_b)
        expected = training.batch_indices(len(dataset), 8, 0, step)[process_index * 4 : (process_index + 1) * 4]
        assert indices == expected.tolist()
        assert torch.equal(x0, x0_b)
        assert torch.equal(x0, torch.stack([dataset[i] for i in indices]))
        for a, b in zip(
            training.step_randomness(config, x0, step, process_index),
            training.step_randomness(config, x0_b, step, process_index),
        ):
            assert torch.equal(a, b)


def test_device_images_hold_uint8_and_scale_like_the_dataset(image_folder):
    dataset = build_dataset("folder", image_folder, 16, train=True, augment=False)
    images = DeviceImages(dataset, CPU)
    assert images.images.dtype == torch.uint8 and images.images.shape == (24, 3, 16, 16)
    assert speed.dataset_bytes(dataset) == 24 * 3 * 16 * 16
    indices = torch.tensor([5, 0, 23])
    assert torch.equal(images.batch(indices), torch.stack([dataset[i] for i in indices.tolist()]))


# -- options resolved before training ---------------------------------------------------------------------------


def test_cpu_defaults_leave_the_cpu_computation_as_it_was():
    plan = cpu_plan()
    assert (plan.mixed_precision, plan.tf32, plan.channels_last, plan.compile, plan.fused_adamw) == (
        "no", False, False, False, False,
    )  # fmt: skip
    assert not plan.data_on_device
    assert any("tf32 has no effect" in note for note in plan.notes)
    forced = cpu_plan(channels_last="on", data_on_device="on", tf32=False)
    assert forced.channels_last and forced.data_on_device and not forced.tf32


def test_a_precision_the_hardware_cannot_do_falls_back_with_a_note():
    cuda = torch.device("cuda")
    assert resolve_mixed_precision("bf16", cuda, bf16_supported=True) == ("bf16", "")
    precision, note = resolve_mixed_precision("bf16", cuda, bf16_supported=False)
    assert precision == "fp16" and "bf16" in note and "fp16" in note
    precision, note = resolve_mixed_precision("fp16", CPU)
    assert precision == "no" and "fp16" in note and "CUDA" in note
    assert resolve_mixed_precision("bf16", CPU) == ("bf16", "")  # CPU autocast does bf16
    assert resolve_mixed_precision("auto", cuda)[0] == "fp16"


def test_compile_without_a_compiler_falls_back_to_eager_with_a_note(monkeypatch):
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    plan = cpu_plan(compile=True)
    assert not plan.compile
    assert any("compile=true but no C++ compiler" in note for note in plan.notes)


def test_a_batch_that_does_not_divide_across_processes_is_a_clear_error():
    assert training.check_process_split(8, 2) == 4
    with pytest.raises(ValueError, match=r"batch_size=6 does not divide across 4 processes"):
        training.check_process_split(6, 4)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"channels_last": "yes"}, r"channels_last must be one of \('auto', 'on', 'off'\), got 'yes'"),
        ({"data_on_device": True}, "data_on_device must be a string"),
        ({"compile": "true"}, "compile must be true or false, got 'true' .*-p compile True or -y 'compile: true'"),
        ({"tf32": 1}, "tf32 must be true or false"),
    ],
)
def test_bad_speed_options_are_clear_errors(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping(values)


def test_a_run_may_resume_with_other_speed_options(tmp_path):
    config = TrainConfig.from_mapping({"output_dir": str(tmp_path / "run")})
    training.prepare_run_dir(config)
    training.prepare_run_dir(config.replace(channels_last="on", compile=True, tf32=False, data_on_device="off"))
    with pytest.raises(training.RunFolderConflictError):
        training.prepare_run_dir(config.replace(mixed_precision="bf16"))


# -- one training step on the CPU -------------------------------------------------------------------------------


@pytest.fixture
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def one_step(tmp_path, tiny_run, mixed_precision="no", **options):
    """(loss, weights after one step) of a tiny UNet on a fixed batch, with the given speed options."""
    config = TrainConfig.from_mapping({**tiny_run, "image_size": 16, "s0": -0.5, "mixed_precision": mixed_precision})
    plan = cpu_plan(mixed_precision=mixed_precision, **options)
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision=plan.mixed_precision, cpu=True)
    parts = training.build_step_parts(config, [1.0, 1.0, 1.0], accelerator, plan)
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss = training.training_step(parts, config, x0, step=0)
    return loss.detach(), {k: v.detach().clone() for k, v in parts.model.state_dict().items()}


def test_bf16_training_step_on_the_cpu_is_finite(tmp_path, tiny_run, fresh_accelerate_state):
    """bf16 autocast needs no loss scaler: one step gives a finite loss and finite, changed weights."""
    loss, after = one_step(tmp_path, tiny_run, "bf16")
    reference_loss, reference = one_step(tmp_path, tiny_run, "no")
    assert math.isfinite(loss.item()) and loss.dtype == torch.float32
    assert all(torch.isfinite(v).all() for v in after.values())
    assert abs(loss.item() - reference_loss.item()) < 0.05 * reference_loss.item()  # bf16's 8-bit mantissa
    assert not torch.equal(loss, reference_loss)  # autocast did run in bf16


def test_channels_last_step_equals_the_default_step_to_rounding(tmp_path, tiny_run, fresh_accelerate_state):
    loss, after = one_step(tmp_path, tiny_run, channels_last="on")
    reference_loss, reference = one_step(tmp_path, tiny_run)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6)
    for key in reference:
        torch.testing.assert_close(after[key], reference[key], rtol=1e-4, atol=1e-6)


def test_sampling_runs_the_network_in_the_runs_autocast_precision_and_the_sampler_in_fp32():
    """Evaluation samples under `sampling_autocast`: fp32 (a null context) for the CPU default, bf16 autocast of the
    network for a bf16 run, with every network output cast back so that the sampler's updates stay fp32."""
    from sdmlib.models import build_unet
    from sdmlib.pipeline import SqueezedDDPMPipeline
    from sdmlib.scheduler import SqueezedDDPMScheduler

    torch.manual_seed(0)
    pipeline = SqueezedDDPMPipeline(build_unet("tiny", 16).eval(), SqueezedDDPMScheduler(s0=-0.4))
    context, note = speed.sampling_autocast(CPU, "auto")
    assert note == "" and not isinstance(context, torch.autocast)
    network_dtypes, step_dtypes = [], []
    pipeline.unet.conv_out.register_forward_hook(lambda m, a, out: network_dtypes.append(out.dtype))
    step = pipeline.scheduler.step

    def recording_step(model_output, t, sample, **kwargs):
        step_dtypes.append((model_output.dtype, sample.dtype))
        return step(model_output, t, sample, **kwargs)

    pipeline.scheduler.step = recording_step

    def draw():
        return pipeline(batch_size=2, generator=torch.Generator().manual_seed(1), num_inference_steps=4,
                        output_type="pt").images

    with context:
        reference = draw()
    assert set(network_dtypes) == {torch.float32}
    network_dtypes.clear()
    context, note = speed.sampling_autocast(CPU, "bf16")
    assert note == "sampling with the network under bf16 autocast"
    with context:
        images = draw()
    assert set(network_dtypes) == {torch.bfloat16}  # the network ran in bf16 ...
    assert set(step_dtypes) == {(torch.float32, torch.float32)}  # ... and the sampler got fp32 throughout
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    difference = (images - reference).abs()
    # bf16 rounding of the network (8-bit mantissa) carried through 4 steps, not another sample: measured 0.0015 on
    # average and 0.064 at most (pixels in [0, 1]).
    assert 0 < difference.mean() < 0.01 and difference.max() < 0.2


@pytest.mark.parametrize("precision, expected", [("auto", None), ("bf16", torch.bfloat16)])
def test_evaluation_samples_under_the_runs_precision(tmp_path, tiny_run, monkeypatch, fresh_accelerate_state, precision,
                                                     expected):
    """evaluate_run draws its grid and its samples inside the run's autocast (none for the CPU default)."""
    import sdmlib.evaluate as evaluate

    config = TrainConfig.from_mapping({**tiny_run, "train_steps": 2, "mixed_precision": precision,
                                       "output_dir": str(tmp_path / "run")})
    training.train(config, progress=False)
    seen = []

    def precision_now(name, function):
        def wrapped(*args, **kwargs):
            enabled = torch.is_autocast_enabled("cpu")
            seen.append((name, torch.get_autocast_dtype("cpu") if enabled else None))
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(evaluate, "sample_grid", precision_now("grid", evaluate.sample_grid))
    monkeypatch.setattr(evaluate, "generate_samples", precision_now("samples", evaluate.generate_samples))
    evaluate.evaluate_run(config, progress=False)
    assert seen == [("grid", expected), ("samples", expected)]
