"""`SqueezedDDPMPipeline`: sample from a trained denoiser with the squeezed sampler (eqs. 5–7).

A diffusers `DiffusionPipeline`, so `save_pretrained(run_folder)` writes the usual `model_index.json`, `unet/` and
`scheduler/`. Loading a run folder:
- `SqueezedDDPMPipeline.from_pretrained(run_folder)` needs no flag: the class is this one, and no code from the
  folder is run.
- `DiffusionPipeline.from_pretrained(run_folder, trust_remote_code=True)` works too (sdmlib must be installed):
  `save_pretrained` drops a one-line `pipeline_sdm.py` beside the weights and names it in `model_index.json`, which
  is how diffusers finds a pipeline class it does not ship; diffusers runs such a file only with
  `trust_remote_code=True`.

The scheduler must be a squeezed one (`sdmlib.scheduler_base.SqueezedSchedulerMixin`); any other is refused when it
is set, with the reason (a plain DDPM/DDIM scheduler would start from unsqueezed noise and step in the wrong
coordinates, silently).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from tqdm.auto import tqdm

from .checks import integer_in, one_of
from .jit import JiTDenoiser  # imported here so that from_pretrained finds a saved JiT model's class (sdmlib.jit)
from .scheduler import SqueezedDDPMScheduler
from .scheduler_base import require_squeezed_scheduler

SHIM_MODULE = "pipeline_sdm"


class SqueezedDDPMPipeline(DiffusionPipeline):
    """UNet (or JiT-style model) + `SqueezedDDPMScheduler`: start from S_T ε, then whiten–denoise–re-squeeze at every
    timestep. The denoiser's output is read as the scheduler's `prediction_type` (ε^sq, x_0 or v^sq)."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel | JiTDenoiser, scheduler: SqueezedDDPMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def __setattr__(self, name, value):
        if name == "scheduler":  # in __init__ (register_modules) and on `pipe.scheduler = …` alike
            require_squeezed_scheduler(value)
        super().__setattr__(name, value)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """diffusers' `load_config`, except that a run folder's `model_index.json` naming this very class through
        its import shim (`["pipeline_sdm", "SqueezedDDPMPipeline"]`, see `save_pretrained`) names it directly: the
        class is already here, so loading through it needs neither the shim nor `trust_remote_code`."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if list(config.get("_class_name") or []) == [SHIM_MODULE, cls.__name__]:
            config["_class_name"] = cls.__name__
        return loaded

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 50,
        output_type: str = "pil",
        return_dict: bool = True,
        progress: bool = False,
        eta: float | None = None,
        timesteps: list[int] | None = None,
    ):
        """Generate `batch_size` images. output_type: "pil", "np" (float in [0, 1], (B, H, W, C)), or "pt" (float
        in [0, 1], (B, C, H, W)). The same generator seed gives the same images for every s0 up to the squeeze.

        eta: passed to the scheduler's step where it takes one (DDIM, the exact samplers); None: the step's own
        default. timesteps: a custom decreasing list of timesteps, in place of `num_inference_steps` even ones.
        """
        one_of("output_type", output_type, ("pil", "np", "pt"))
        integer_in("batch_size", batch_size, 1)
        step_kwargs = {}
        if eta is not None:
            if "eta" not in inspect.signature(self.scheduler.step).parameters:
                raise ValueError(
                    f"eta={eta!r} was given, but {type(self.scheduler).__name__}.step takes no eta; leave it None or "
                    f"use a scheduler with one (sdmlib.samplers: ddim, exact)"
                )
            step_kwargs["eta"] = eta
        if timesteps is not None:
            self.scheduler.set_timesteps(timesteps=list(timesteps))
        else:
            integer_in("num_inference_steps", num_inference_steps, 1, self.scheduler.config.num_train_timesteps)
            self.scheduler.set_timesteps(num_inference_steps)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"generator must be one generator or a list of batch_size={batch_size}, got {len(generator)}"
            )
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, *size)
        # Noise is drawn on the generator's device (CPU for a CPU generator) and moved, as diffusers does, so a
        # seed means the same images on every machine.
        image = self.scheduler.initial_noise(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        # The network's timesteps go to the device once, not once a step, and without waiting (a blocking copy
        # holds the host until the device has caught up); the scheduler indexes its own tables with the host copy.
        # The output is cast to the sample's dtype, so under autocast the sampler's update stays in full precision.
        timesteps = self.scheduler.timesteps
        on_device = timesteps.to(self.device, non_blocking=True)
        for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
            model_output = self.unet(image, on_device[i]).sample.to(image.dtype)
            image = self.scheduler.step(model_output, t, image, generator=generator, **step_kwargs).prev_sample
        image = (image / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            images = image.float()
        else:
            images = image.float().cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        super().save_pretrained(save_directory, **kwargs)
        directory = Path(save_directory)
        (directory / f"{SHIM_MODULE}.py").write_text(
            '"""Lets diffusers\' DiffusionPipeline.from_pretrained find the pipeline class (needs sdmlib)."""\n'
            "from sdmlib.pipeline import SqueezedDDPMPipeline  # noqa: F401\n"
        )
        index_path = directory / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = [SHIM_MODULE, type(self).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
