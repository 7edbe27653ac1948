"""The samplers that calibration sets and quantized samples are drawn with, by name.

A sampler here is a diffusers scheduler with `set_timesteps`, `initial_noise` and `step`: the run's own
`SqueezedDDPMScheduler` ("ddpm"), or a `SqueezedDDIMScheduler` with the run's squeeze ("ddim", stepped with η = 0,
Q-Diffusion's setting). Another plugs in by adding its name to `config.SAMPLERS` and a constructor to
`SAMPLER_BUILDERS`.
"""

from __future__ import annotations

import copy
import inspect
from typing import Callable, Iterator

import torch

from ..ddim import SqueezedDDIMScheduler
from .config import SAMPLERS

# name -> function(the run's scheduler) -> a fresh scheduler of that kind
SAMPLER_BUILDERS: dict[str, Callable] = {
    "ddpm": copy.deepcopy,
    "ddim": lambda run_scheduler: SqueezedDDIMScheduler.from_config(run_scheduler.config),
}


def build_sampler(name: str, run_scheduler):
    if name not in SAMPLERS or name not in SAMPLER_BUILDERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    return SAMPLER_BUILDERS[name](run_scheduler)


@torch.no_grad()
def trajectory(
    unet, sampler, num_samples: int, num_inference_steps: int, generator: torch.Generator
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (step index, timestep t, x_t) along one batch of reverse trajectories, from the noisy end; after the
    last step yields (num_inference_steps, −1, x_0). x_t: (num_samples, C, H, W); the noise is drawn on the CPU."""
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    shape = (num_samples, unet.config.in_channels, size, size)
    # Deterministic DDIM (η = 0) for a scheduler whose step takes η; looked up once, not per step.
    step_kwargs = {"eta": 0.0} if "eta" in inspect.signature(sampler.step).parameters else {}
    sampler.set_timesteps(num_inference_steps)
    x = sampler.initial_noise(shape, generator=generator).to(device)
    for index, t in enumerate(sampler.timesteps):
        yield index, t, x
        x = sampler.step(unet(x, t).sample, t, x, generator=generator, **step_kwargs).prev_sample
    yield len(sampler.timesteps), torch.tensor(-1), x
