"""What quantization costs, measured without downloaded weights: the relative error of the quantized network's
output at each timestep, and the distance between quantized and full-precision samples from the same noise."""

from __future__ import annotations

import torch

from .sampling import trajectory


@torch.no_grad()
def timestep_errors(float_unet, quant_unet, sampler, num_samples: int, num_inference_steps: int, seed: int,
                    batch_size: int) -> dict[int, float]:
    """{t: ‖ε̂_q(x_t, t) − ε̂(x_t, t)‖ / ‖ε̂(x_t, t)‖} along the full-precision trajectories (both networks see the
    same x_t), pooled over `num_samples` samples."""
    squared_error: dict[int, float] = {}
    squared_norm: dict[int, float] = {}
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        for index, t, x in trajectory(float_unet, sampler, n, num_inference_steps, generator):
            if index == num_inference_steps:
                break
            reference = float_unet(x, t).sample
            difference = quant_unet(x, t).sample - reference
            key = int(t)
            squared_error[key] = squared_error.get(key, 0.0) + float(difference.pow(2).sum())
            squared_norm[key] = squared_norm.get(key, 0.0) + float(reference.pow(2).sum())
    return {t: (squared_error[t] / squared_norm[t]) ** 0.5 for t in sorted(squared_error, reverse=True)}


@torch.no_grad()
def sample(unet, sampler, num_samples: int, num_inference_steps: int, seed: int, batch_size: int) -> torch.Tensor:
    """`num_samples` images in [−1, 1], (N, C, H, W); the same seed gives the same noise for every network."""
    images = []
    for batch_index, start in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - start)
        generator = torch.Generator().manual_seed(seed * 100_003 + batch_index)
        for index, _, x in trajectory(unet, sampler, n, num_inference_steps, generator):
            pass
        images.append(x.clamp(-1, 1).cpu())
    return torch.cat(images)


def sample_distance(quantized: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Per-image RMS distance (in [−1, 1] units) between quantized and full-precision samples from the same noise."""
    rms = (quantized - reference).pow(2).flatten(1).mean(1).sqrt()
    return {"rms_mean": float(rms.mean()), "rms_max": float(rms.max())}
