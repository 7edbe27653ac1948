"""The pipeline: loading a run folder with and without diffusers' remote-code flag, refusing schedulers that cannot
sample a squeezed model (and accepting every squeezed one), and its arguments checked before any work."""

import subprocess
import sys

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline

from sdmlib.models import build_unet
from sdmlib.pipeline import SqueezedDDPMPipeline
from sdmlib.scheduler import SqueezedDDPMScheduler
from sdmlib.scheduler_base import SqueezedSchedulerMixin


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    SqueezedDDPMPipeline(unet=build_unet("tiny", 32), scheduler=SqueezedDDPMScheduler(s0=-0.4)).save_pretrained(folder)
    return folder


def test_our_class_loads_a_run_folder_without_any_flag_in_a_fresh_process(saved_pipeline):
    code = (
        "from sdmlib.pipeline import SqueezedDDPMPipeline\n"
        f"pipe = SqueezedDDPMPipeline.from_pretrained({str(saved_pipeline)!r})\n"
        "print(type(pipe).__name__, type(pipe.scheduler).__name__, pipe.scheduler.config.s0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SqueezedDDPMPipeline SqueezedDDPMScheduler -0.4" in result.stdout


def test_our_class_runs_no_code_from_the_folder(saved_pipeline, tmp_path):
    """Loading through our class never executes the folder's pipeline_sdm.py (so it cannot need the flag)."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(saved_pipeline, folder)
    (folder / "pipeline_sdm.py").write_text("raise RuntimeError('the shim was executed')\n")
    pipe = SqueezedDDPMPipeline.from_pretrained(folder)
    assert type(pipe) is SqueezedDDPMPipeline


def test_diffusion_pipeline_loads_it_with_the_remote_code_flag_and_refuses_without(saved_pipeline):
    assert type(DiffusionPipeline.from_pretrained(saved_pipeline, trust_remote_code=True)) is SqueezedDDPMPipeline
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(saved_pipeline)


@pytest.mark.parametrize("other", [DDIMScheduler, DDPMScheduler])
def test_a_scheduler_that_cannot_sample_a_squeezed_model_is_refused(saved_pipeline, other):
    pipe = SqueezedDDPMPipeline.from_pretrained(saved_pipeline)
    with pytest.raises(TypeError, match=rf"got {other.__name__}\. A model trained on squeezed noise"):
        pipe.scheduler = other.from_config(pipe.scheduler.config)
    assert type(pipe.scheduler) is SqueezedDDPMScheduler  # the refused one was not set
    with pytest.raises(TypeError, match="must be a squeezed scheduler"):
        SqueezedDDPMPipeline(unet=pipe.unet, scheduler=other())
    with pytest.raises(TypeError, match="must be a squeezed scheduler"):
        SqueezedDDPMPipeline.from_pretrained(saved_pipeline, scheduler=other())


def test_every_squeezed_scheduler_is_accepted_without_a_list_to_edit(saved_pipeline):
    """A later squeezed scheduler (the samplers issue adds DDIM) joins by deriving from the mixin."""

    class SqueezedDDIMLike(SqueezedSchedulerMixin, DDIMScheduler):
        def initial_noise(self, shape, generator=None, device=None, dtype=None):
            return torch.zeros(shape, device=device, dtype=dtype)

    pipe = SqueezedDDPMPipeline.from_pretrained(saved_pipeline)
    pipe.scheduler = SqueezedDDIMLike.from_config(pipe.scheduler.config)
    pipe.scheduler = SqueezedDDPMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(TypeError, match="defines no initial_noise"):

        class Forgetful(SqueezedSchedulerMixin, DDIMScheduler):
            pass


@pytest.mark.parametrize(
    "arguments, match",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer between 1 and 1000, got 0"),
        ({"num_inference_steps": 1001}, "num_inference_steps must be an integer between 1 and 1000, got 1001"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be an integer, got 2.5"),
        ({"batch_size": 0}, "batch_size must be an integer at least 1, got 0"),
        ({"output_type": "latent"}, r"output_type must be one of \('pil', 'np', 'pt'\), got 'latent'"),
        ({"batch_size": 2, "generator": [torch.Generator()]}, "generator must be one generator or a list of"),
    ],
)
def test_pipeline_arguments_are_checked_before_sampling(saved_pipeline, arguments, match):
    pipe = SqueezedDDPMPipeline.from_pretrained(saved_pipeline)
    with pytest.raises(ValueError, match=match):
        pipe(**arguments)


def test_pipeline_equals_the_loop_written_out_and_feeds_each_timestep_in_order():
    """The pipeline's loop is the network at each scheduled timestep, then the scheduler's step, nothing else: the
    same images as that loop written out, with the network seeing the schedule's timesteps one by one."""
    torch.manual_seed(0)
    unet = build_unet("tiny", 16).eval()
    scheduler = SqueezedDDPMScheduler(s0=-0.4)
    pipeline = SqueezedDDPMPipeline(unet, scheduler)
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1])))
    images = pipeline(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5,
                      output_type="pt").images
    handle.remove()
    scheduler.set_timesteps(5)
    assert seen == scheduler.timesteps.tolist()
    generator = torch.Generator().manual_seed(3)
    x = scheduler.initial_noise((2, 3, 16, 16), generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
    torch.testing.assert_close(images, (x / 2 + 0.5).clamp(0, 1), rtol=0, atol=0)
