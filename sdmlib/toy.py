"""JiT's toy experiment: 2-D data embedded in D dimensions, an MLP denoiser, the nine prediction × loss choices.

JiT (`docs/prediction_targets.md`) embeds a 2-D distribution in D dimensions by a random orthogonal map and trains a small
MLP (256 hidden units) to denoise it: ε- and v-prediction fail once D is large (D = 512) while x-prediction still
recovers the data. Here the forward process is this repository's DDPM (x_t = a_t x_0 + b_t ε, linear β, T = 1000),
the losses are `sdmlib.prediction.training_loss`, and the sampler is diffusers' `DDIMScheduler` (deterministic,
η = 0) fed with ε̂ converted from whatever the network predicts (`sdmlib.prediction.convert`).

Every model of a study (9 combinations × seeds) trains at once: the MLPs are stacked along a leading model axis and
applied with batched matrix products, so a step is a handful of `baddbmm` calls, not a Python loop over models.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from .prediction import PREDICTION_TYPES, convert, scales_at, training_loss

COMBINATIONS = tuple(itertools.product(PREDICTION_TYPES, PREDICTION_TYPES))  # (prediction_type, loss_space) × 9


def spiral(num_points: int, generator: torch.Generator) -> torch.Tensor:
    """A 2-D spiral (non-Gaussian, one-dimensional, curved), scaled to unit variance per axis: (N, 2)."""
    u = torch.rand(num_points, generator=generator, dtype=torch.float64)
    theta = 3 * math.pi * u.sqrt()
    points = torch.stack([theta * theta.cos(), theta * theta.sin()], dim=1)
    points = points + 0.05 * torch.randn(num_points, 2, generator=generator, dtype=torch.float64)
    return ((points - points.mean(0)) / points.std(0)).float()


def random_embedding(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A random D × 2 matrix with orthonormal columns (the QR factor of a Gaussian matrix)."""
    if dim < 2:
        raise ValueError(f"dim must be at least 2, got {dim}")
    q, r = torch.linalg.qr(torch.randn(dim, 2, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


class StackedMLP(torch.nn.Module):
    """M independent MLPs (D + time embedding → hidden → hidden → hidden → D, SiLU) applied to (M, B, D) at once."""

    def __init__(self, num_models: int, dim: int, hidden: int, time_dim: int = 16):
        super().__init__()
        sizes = [dim + time_dim, hidden, hidden, hidden, dim]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per model
            self.weights.append(torch.nn.Parameter(torch.empty(num_models, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(torch.nn.Parameter(torch.empty(num_models, 1, fan_out).uniform_(-bound, bound)))
        self.register_buffer("frequencies", torch.exp(-math.log(1000.0) * torch.arange(time_dim // 2) / (time_dim // 2)))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x: (M, B, D); timesteps: (M, B) integers in [0, T)."""
        angles = timesteps.unsqueeze(-1).float() * self.frequencies  # (M, B, time_dim/2)
        hidden = torch.cat([x, angles.sin(), angles.cos()], dim=-1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if i < last:
                hidden = torch.nn.functional.silu(hidden)
        return hidden


@dataclass(frozen=True)
class ToyResult:
    """Per model (combination-major, then seed): the in-plane distance and the off-plane energy of its samples."""

    combinations: tuple[tuple[str, str], ...]
    seeds: int
    distance: torch.Tensor  # (9, seeds): symmetric Chamfer distance of the samples' 2-D projection to the data
    off_plane: torch.Tensor  # (9, seeds): mean squared norm of the samples' component outside the data's plane


def chamfer_distance(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean nearest-neighbour distance samples → reference plus reference → samples: (M, N, 2), (R, 2) → (M,)."""
    distances = torch.cdist(samples, reference.expand(samples.shape[0], -1, -1))  # (M, N, R)
    return distances.min(dim=2).values.mean(dim=1) + distances.min(dim=1).values.mean(dim=1)


def run_toy(
    dim: int,
    *,
    hidden: int = 256,
    seeds: int = 3,
    train_steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    num_samples: int = 1000,
    num_inference_steps: int = 50,
    seed: int = 0,
) -> ToyResult:
    """Train the nine combinations × `seeds` MLPs on the spiral embedded in `dim` dimensions; sample and score them.

    Seed k of every combination shares its embedding, data and noise with the other combinations (paired
    comparisons); seeds differ in all of them and in the initial weights.
    """
    if seeds < 2:
        raise ValueError(f"seeds must be at least 2 (the error bars are standard errors over seeds), got {seeds}")
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.stack([random_embedding(dim, generator) for _ in range(seeds)])  # (seeds, D, 2)
    num_models = len(COMBINATIONS) * seeds
    torch.manual_seed(seed)
    model = StackedMLP(num_models, dim, hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = DDPMScheduler()
    alphas_cumprod = schedule.alphas_cumprod

    def per_model(t: torch.Tensor) -> torch.Tensor:  # (seeds, …) → (M, …): the same tensor for every combination
        return t.repeat(len(COMBINATIONS), *([1] * (t.ndim - 1)))

    for _ in range(train_steps):
        z = torch.stack([spiral(batch_size, generator) for _ in range(seeds)])  # (seeds, B, 2)
        x0 = per_model(torch.bmm(z, embeddings.transpose(1, 2)))  # (M, B, D)
        eps = per_model(torch.randn(seeds, batch_size, dim, generator=generator))
        timesteps = per_model(torch.randint(0, 1000, (seeds, batch_size), generator=generator))
        a, b = scales_at(alphas_cumprod, timesteps.reshape(-1), ndim=2)
        a, b = a.view(num_models, batch_size, 1), b.view(num_models, batch_size, 1)
        output = model(a * x0 + b * eps, timesteps)
        loss = sum(
            training_loss(
                output[k * seeds : (k + 1) * seeds],
                x0[k * seeds : (k + 1) * seeds],
                eps[k * seeds : (k + 1) * seeds],
                a[k * seeds : (k + 1) * seeds],
                b[k * seeds : (k + 1) * seeds],
                prediction_type,
                loss_space,
            )
            for k, (prediction_type, loss_space) in enumerate(COMBINATIONS)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    samples = sample_toy(model, dim, num_samples, num_inference_steps, seeds, generator)  # (M, N, D)
    projection = per_model(embeddings)  # (M, D, 2)
    in_plane = torch.bmm(samples, projection)  # (M, N, 2)
    off_plane = (samples - torch.bmm(in_plane, projection.transpose(1, 2))).square().sum(-1).mean(-1)
    reference = spiral(2000, torch.Generator().manual_seed(seed + 1))
    distance = chamfer_distance(in_plane, reference)
    shape = (len(COMBINATIONS), seeds)
    return ToyResult(COMBINATIONS, seeds, distance.view(shape), off_plane.view(shape))


@torch.no_grad()
def sample_toy(model, dim, num_samples, num_inference_steps, seeds, generator) -> torch.Tensor:
    """Deterministic DDIM (diffusers) from the same starting noise for every combination, fed ε̂ = convert(output)."""
    sampler = DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    sampler.set_timesteps(num_inference_steps)
    x = torch.randn(seeds, num_samples, dim, generator=generator).repeat(len(COMBINATIONS), 1, 1)  # (M, N, D)
    for t in sampler.timesteps:
        timesteps = torch.full(x.shape[:2], int(t))
        output = model(x, timesteps)
        a, b = scales_at(sampler.alphas_cumprod, timesteps[:1, :1].reshape(-1), ndim=3)
        eps = torch.cat(
            [
                convert(output[k * seeds : (k + 1) * seeds], prediction_type, "epsilon", x[k * seeds : (k + 1) * seeds], a, b)
                for k, (prediction_type, _) in enumerate(COMBINATIONS)
            ]
        )
        x = sampler.step(eps, t, x).prev_sample
    return x


def toy_frame(results: dict[int, ToyResult]):
    """The scores of every model as a DataFrame: dim, prediction_type, loss_space, seed, distance, off_plane."""
    import pandas as pd

    rows = [
        {
            "dim": dim,
            "prediction_type": prediction_type,
            "loss_space": loss_space,
            "seed": seed,
            "distance": float(result.distance[k, seed]),
            "off_plane": float(result.off_plane[k, seed]),
        }
        for dim, result in results.items()
        for k, (prediction_type, loss_space) in enumerate(result.combinations)
        for seed in range(result.seeds)
    ]
    return pd.DataFrame(rows)


def paired_z(frame, dim: int, score: str, better: str, worse: str):
    """Per loss space: mean over seeds of score(worse) − score(better) at `dim`, its standard error and their
    ratio z (seeds are paired: the same data, embedding and noise for every combination)."""
    import pandas as pd

    at_dim = frame[frame.dim == dim].pivot_table(index=["loss_space", "seed"], columns="prediction_type", values=score)
    difference = at_dim[worse] - at_dim[better]
    grouped = difference.groupby(level="loss_space")
    mean, standard_error = grouped.mean(), grouped.std() / grouped.count() ** 0.5
    return pd.DataFrame({"difference": mean, "standard_error": standard_error, "z": mean / standard_error})
