"""The samplers that calibration sets and quantized samples are drawn with, by name: `sdmlib.samplers`' registry
(ddpm, the run's own; ddim, stepped with η = 0 as Q-Diffusion; exact; exact_ddim), each built from the run's
scheduler config, so it keeps the run's squeeze, forward process and prediction type.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .. import samplers


def build_sampler(name: str, run_scheduler):
    """A fresh scheduler of sampler `name` with the run's configuration; it remembers its name, so `trajectory`
    steps it with that sampler's own η."""
    sampler = samplers.build_scheduler(name, run_scheduler.config)
    sampler.sampler_name = name
    return sampler


@torch.no_grad()
def trajectory(
    unet, sampler, num_samples: int, num_inference_steps: int, generator: torch.Generator
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (step index, timestep t, x_t) along one batch of reverse trajectories, from the noisy end; after the
    last step yields (num_inference_steps, −1, x_0). x_t: (num_samples, C, H, W); the noise is drawn on the CPU."""
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    shape = (num_samples, unet.config.in_channels, size, size)
    # Each sampler with its own η (ddim: 0, deterministic as in Q-Diffusion; exact: 1); looked up once, not per step.
    step_kwargs = samplers.step_kwargs(getattr(sampler, "sampler_name", "ddpm"))
    sampler.set_timesteps(num_inference_steps)
    x = sampler.initial_noise(shape, generator=generator).to(device)
    for index, t in enumerate(sampler.timesteps):
        yield index, t, x
        x = sampler.step(unet(x, t).sample, t, x, generator=generator, **step_kwargs).prev_sample
    yield len(sampler.timesteps), torch.tensor(-1), x
