"""CUDA correctness (run on a GPU machine: `pytest -m cuda`; skipped without CUDA).

No host-device synchronisation inside the squeeze, the training step and each sampler's step
(`torch.cuda.set_sync_debug_mode("error")` turns any synchronising call into an error); the schedulers on CUDA equal
to the CPU within float32 tolerance; fp16 and bf16 training steps finite; a checkpoint written on CUDA resumed bit for
bit. The fp16 step is left out of the synchronisation check on purpose: its loss scaler (GradScaler) reads back
whether the gradients overflowed once per step, by design; bf16 and fp32 need no scaler.
"""

import contextlib

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

import sdmlib.train as training
from sdmlib.config import TrainConfig
from sdmlib.samplers import SAMPLER_NAMES, build_scheduler, step_kwargs
from sdmlib.speed import DeviceImages, plan_speed

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on the GPU machine: pytest -m cuda)"),
]
CUDA = torch.device("cuda")
AXIS = [0.6, 0.56, 0.57]


@contextlib.contextmanager
def no_synchronisation():
    """Every synchronising CUDA call inside raises (cudaStreamSynchronize, blocking copies, .item(), nonzero())."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


class RandomImages:
    """A stand-in training set: 32 uint8 images (3, 16, 16), as `ImageDataset` exposes them."""

    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def pixels(self, index):
        return self.images[index]


@pytest.fixture
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def run_config(**changes) -> TrainConfig:
    values = {"model_size": "tiny", "image_size": 16, "s0": -0.4, "num_inference_steps": 10, "batch_size": 8}
    return TrainConfig.from_mapping({**values, **changes})


def step_parts(config: TrainConfig, mixed_precision: str):
    AcceleratorState._reset_state(reset_partial_state=True)
    plan = plan_speed(
        CUDA,
        mixed_precision=mixed_precision,
        tf32=True,
        channels_last="auto",
        compile=False,
        data_on_device="on",
        dataset_bytes=0,
    )
    accelerator = Accelerator(mixed_precision=plan.mixed_precision)
    return training.build_step_parts(config, AXIS, accelerator, plan), plan


# -- no synchronisation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_training_step_does_not_synchronise(fresh_accelerate_state, mixed_precision):
    config = run_config()
    parts, plan = step_parts(config, mixed_precision)
    assert plan.channels_last and plan.fused_adamw
    images = DeviceImages(RandomImages(), CUDA)
    indices = [3, 1, 4, 15, 9, 2, 6, 5]
    training.training_step(parts, config, images.batch(torch.tensor(indices)), step=0)  # allocates AdamW's state
    with no_synchronisation():
        x0 = images.batch(torch.tensor(indices))
        loss = training.training_step(parts, config, x0, step=1)
    assert torch.isfinite(loss).item()


def test_squeeze_does_not_synchronise():
    config = run_config()
    scheduler = training.build_scheduler(config, AXIS)
    x0 = torch.randn(8, 3, 16, 16, device=CUDA)
    noise = torch.randn_like(x0)
    timesteps = torch.randint(0, 1000, (8,), device=CUDA)
    scheduler.add_noise_and_target(x0, noise, timesteps)  # caches the squeeze's tables on the device
    with no_synchronisation():
        noisy, target = scheduler.add_noise_and_target(x0, noise, timesteps)
        squeezed = scheduler._squeeze_at(x0, 500)
        whitened = scheduler._squeeze_at(squeezed, 500, inverse=True)
    torch.testing.assert_close(whitened, x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_sampling_step_does_not_synchronise(name):
    config = run_config()
    scheduler = build_scheduler(name, training.build_scheduler(config, AXIS).config)
    # As in training: the parent's add_noise moves `alphas_cumprod` to the GPU; the step must still not read it back.
    zeros = torch.zeros(1, 3, 4, 4, device=CUDA)
    scheduler.add_noise(zeros, zeros, torch.tensor([5], device=CUDA))
    scheduler.set_timesteps(config.num_inference_steps)
    generator = torch.Generator(device=CUDA).manual_seed(0)
    x = scheduler.initial_noise((4, 3, 16, 16), generator=generator, device=CUDA, dtype=torch.float32)
    kwargs = step_kwargs(name, None)
    timesteps = list(scheduler.timesteps)
    x = scheduler.step(0.5 * x, timesteps[0], x, generator=generator, **kwargs).prev_sample  # warm-up
    with no_synchronisation():
        for t in timesteps[1:4]:
            x = scheduler.step(0.5 * x, t, x, generator=generator, **kwargs).prev_sample
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("mixed_precision", ["no", "fp16", "bf16"])
def test_sampling_loop_does_not_synchronise(mixed_precision):
    """The whole pipeline call, as evaluation makes it (device generator, the run's autocast): the network, its
    timesteps (moved to the device once, before the loop) and every sampler step, with no read-back."""
    from sdmlib.models import build_unet
    from sdmlib.pipeline import SqueezedDDPMPipeline
    from sdmlib.speed import sampling_autocast

    config = run_config()
    unet = build_unet(config.model_size, config.image_size).eval()
    pipeline = SqueezedDDPMPipeline(unet, training.build_scheduler(config, AXIS))
    pipeline.to(CUDA)
    autocast, _ = sampling_autocast(CUDA, mixed_precision)

    def draw(steps):
        generator = torch.Generator(device=CUDA).manual_seed(0)
        return pipeline(batch_size=4, generator=generator, num_inference_steps=steps, output_type="pt").images

    with autocast:
        draw(2)  # warm-up: cuDNN's algorithm choice and the first allocations may synchronise
        with no_synchronisation():
            images = draw(config.num_inference_steps)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


# -- CUDA equals the CPU -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_schedulers_on_cuda_equal_the_cpu(name):
    """The whole sampling loop with a fixed linear "network", the same noise (a CPU generator on both devices)."""
    config = run_config()
    base = training.build_scheduler(config, AXIS)
    results = {}
    for device in (torch.device("cpu"), CUDA):
        scheduler = build_scheduler(name, base.config)
        scheduler.set_timesteps(config.num_inference_steps)
        generator = torch.Generator().manual_seed(0)
        x = scheduler.initial_noise((4, 3, 16, 16), generator=generator, device=device, dtype=torch.float32)
        for t in scheduler.timesteps:
            x = scheduler.step(0.3 * x + 0.1, t, x, generator=generator, **step_kwargs(name, None)).prev_sample
        results[device.type] = x.cpu()
    torch.testing.assert_close(results["cuda"], results["cpu"], rtol=1e-4, atol=1e-4)


# -- mixed precision and checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("mixed_precision", ["fp16", "bf16"])
def test_mixed_precision_training_steps_are_finite(fresh_accelerate_state, mixed_precision):
    config = run_config()
    parts, plan = step_parts(config, mixed_precision)
    assert plan.mixed_precision == mixed_precision
    generator = torch.Generator().manual_seed(0)
    for step in range(3):
        x0 = (torch.rand(8, 3, 16, 16, generator=generator) * 2 - 1).to(CUDA)
        loss = training.training_step(parts, config, x0, step)
        assert torch.isfinite(loss).item(), (mixed_precision, step)
    assert all(torch.isfinite(p).all() for p in parts.model.parameters())
    assert all(torch.isfinite(p).all() for p in parts.ema.shadow_params)


def test_checkpoint_written_on_cuda_resumes_bit_for_bit(tmp_path, tiny_run, fresh_accelerate_state, monkeypatch):
    """fp16 (the paper's precision, with its loss scaler's state in the checkpoint), deterministic kernels."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        common = {**tiny_run, "image_size": 16, "s0": -0.5, "mixed_precision": "fp16", "train_steps": 4}
        whole = TrainConfig.from_mapping({**common, "output_dir": str(tmp_path / "whole")})
        split = TrainConfig.from_mapping({**common, "output_dir": str(tmp_path / "split")})
        training.train(whole, progress=False)
        AcceleratorState._reset_state(reset_partial_state=True)
        training.train(split, progress=False, stop_after_step=2)
        AcceleratorState._reset_state(reset_partial_state=True)
        training.train(split, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = (load_file(c.run_dir / "unet" / "diffusion_pytorch_model.safetensors") for c in (whole, split))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
