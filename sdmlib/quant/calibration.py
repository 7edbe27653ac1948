"""Calibration sets: (x_t, t) pairs on which the quantizers' ranges are set and blocks are reconstructed.

All but the real-image baseline come from the full-precision model's own reverse trajectories, sampled with the
configured sampler (PTQ4DM's finding: generated samples calibrate far better than real ones):

- `ndtc`: PTQ4DM's normally distributed time-step calibration (Algorithm 1): t_i ~ N(μ, σ²) (the code: μ = 0.4T,
  σ = 0.4T), rounded and clipped to [0, T−1], x_{t_i} taken from trajectory i at the schedule's step nearest t_i.
  Option `ndtc_labelling="code"`: PTQ4DM's script counts its loop index from the noisy end, so its kept image sits
  near T−1−t_i while it is labelled t_i; this reproduces that labelling so its effect can be measured.
- `uniform`: Q-Diffusion's time-step-aware set: every c-th step of the trajectory, n = size / steps samples each.
- `single_timestep`: all samples at one step (the step nearest `single_timestep`).
- `noised_real`: training images noised to uniformly random t with the run's (squeezed) forward process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import QuantConfig
from .sampling import build_sampler, trajectory


@dataclass
class CalibrationSet:
    x: torch.Tensor  # (N, C, H, W), x_t
    t: torch.Tensor  # (N,), int64 timestep labels given to the network

    def __len__(self) -> int:
        return len(self.t)

    def batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.x.split(batch_size), self.t.split(batch_size)))


def ndtc_timesteps(size: int, num_train_timesteps: int, mean: float, std: float, generator) -> torch.Tensor:
    """Algorithm 1 of PTQ4DM: t ~ N(mean·T, (std·T)²), rounded and clipped to [0, T−1]. float64 draw, int64 out."""
    T = num_train_timesteps
    draws = torch.randn(size, generator=generator, dtype=torch.float64) * (std * T) + mean * T
    return draws.round().clamp(0, T - 1).long()


def nearest_steps(timesteps: torch.Tensor, schedule: torch.Tensor) -> torch.Tensor:
    """Index into `schedule` (descending timesteps of the sampler) of the entry nearest each timestep."""
    return (timesteps[:, None] - schedule[None, :].long()).abs().argmin(dim=1)


def uniform_steps(num_inference_steps: int, interval: int) -> torch.Tensor:
    """Q-Diffusion: every `interval`-th step of the trajectory, counted from the noisy end (step 0)."""
    return torch.arange(0, num_inference_steps, interval)


@torch.no_grad()
def _from_trajectories(unet, sampler, config: QuantConfig, wanted: torch.Tensor, labels: torch.Tensor | None):
    """x at step wanted[i] of trajectory i (trajectories sampled in batches); labels default to the step's t."""
    xs, ts = [], []
    generator = torch.Generator().manual_seed(config.seed)
    for start in range(0, len(wanted), config.batch_size):
        steps = wanted[start : start + config.batch_size]
        x_kept = None
        t_kept = torch.empty(len(steps), dtype=torch.long)
        for index, t, x in trajectory(unet, sampler, len(steps), config.num_inference_steps, generator):
            chosen = steps == index
            if chosen.any():
                x_kept = torch.zeros_like(x) if x_kept is None else x_kept
                x_kept[chosen] = x[chosen]
                t_kept[chosen] = int(t)
            if index >= int(steps.max()):
                break
        xs.append(x_kept.cpu())
        ts.append(t_kept)
    x, t = torch.cat(xs), torch.cat(ts)
    return CalibrationSet(x, t if labels is None else labels.long())


def calibration_set(unet, run_scheduler, config: QuantConfig, real_images=None) -> CalibrationSet:
    """The calibration set `config.calibration_set` of `config.calibration_size` pairs for the float `unet`, in a
    seeded random order (so that every calibration batch mixes timesteps)."""
    pairs = _calibration_pairs(unet, run_scheduler, config, real_images)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(config.seed + 2))
    return CalibrationSet(pairs.x[order], pairs.t[order])


def _calibration_pairs(unet, run_scheduler, config: QuantConfig, real_images=None) -> CalibrationSet:
    kind = config.calibration_set
    size = config.calibration_size
    generator = torch.Generator().manual_seed(config.seed + 1)
    T = run_scheduler.config.num_train_timesteps
    if kind == "noised_real":
        if real_images is None:
            raise ValueError("calibration='noised_real' needs the run's training images (real_images)")
        index = torch.randint(len(real_images), (size,), generator=generator)
        x0 = torch.stack([real_images[i] for i in index.tolist()])  # (N, C, H, W) in [−1, 1]
        t = torch.randint(T, (size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        return CalibrationSet(run_scheduler.add_noise(x0, noise, t), t)

    sampler = build_sampler(config.sampler, run_scheduler)
    sampler.set_timesteps(config.num_inference_steps)
    schedule = sampler.timesteps.clone()
    if kind == "ndtc":
        drawn = ndtc_timesteps(size, T, config.ndtc_mean, config.ndtc_std, generator)
        if config.ndtc_labelling == "paper":
            return _from_trajectories(unet, sampler, config, nearest_steps(drawn, schedule), None)
        return _from_trajectories(unet, sampler, config, nearest_steps(T - 1 - drawn, schedule), drawn)
    if kind == "single_timestep":
        step = nearest_steps(torch.tensor([config.single_timestep]), schedule)
        return _from_trajectories(unet, sampler, config, step.repeat(size), None)
    if kind == "uniform":
        steps = uniform_steps(config.num_inference_steps, config.uniform_interval)
        per_step = size // len(steps)
        if per_step < 1:
            raise ValueError(
                f"calibration_size must be at least the number of calibrated steps ({len(steps)}), got {size}"
            )
        # n trajectories, each kept at every chosen step (Q-Diffusion keeps all samples of each kept step).
        return _uniform(unet, sampler, config, steps, per_step)
    raise ValueError(f"unknown calibration set {kind!r}")


@torch.no_grad()
def _uniform(unet, sampler, config: QuantConfig, steps: torch.Tensor, per_step: int) -> CalibrationSet:
    xs, ts = [], []
    keep = set(steps.tolist())
    generator = torch.Generator().manual_seed(config.seed)
    for start in range(0, per_step, config.batch_size):
        n = min(config.batch_size, per_step - start)
        for index, t, x in trajectory(unet, sampler, n, config.num_inference_steps, generator):
            if index in keep:
                xs.append(x.cpu())
                ts.append(torch.full((n,), int(t), dtype=torch.long))
            if index >= max(keep):
                break
    return CalibrationSet(torch.cat(xs), torch.cat(ts))
