"""The exact law of any affine sampler's output, read off its real `step` (notebook 05).

For Gaussian data and the exact (affine) predictor, one step of every sampler here (the paper's whiten–DDPM–re-squeeze,
the exact posterior at η ∈ [0, 1], squeezed DDIM) is an affine map of the state plus Gaussian noise,

    x′ = A x + c + L z,   z ~ N(0, I),

so the generated samples are Gaussian with moments m′ = A m + c, P′ = A P Aᵀ + L Lᵀ, from the start x_T = c_T + L_T ε
of `initial_noise`. Rather than re-deriving A, c, L per sampler (as `drift_study.sampler_moments` does for the paper's),
`affine_sampler_moments` reads them off the scheduler's own `step`, so any new sampler is covered without new math.
One call of the step (and of the predictor) on 2n + 1 rows does it, with per-sample generators:

- rows 0…n: the inputs [0, e_1, …, e_n], all with generators of one seed, so every row gets the same z_0:
  A e_j = y_j − y_0, and y_0 = c + L z_0;
- rows n+1…2n: zero inputs with distinct seeds; each row's z_k is reproduced with `randn_tensor` on the same seed
  (as diffusers draws per-sample noise from a list of generators), so L (z_k − z_0) = y_{n+k} − y_0 gives L, and
  c = y_0 − L z_0.

The step must be stateless (a function of its arguments), as DDPM's, DDIM's and the exact one are. Float64 throughout.
This module imports torch and sdmlib's math only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from .ddim import SqueezedDDIMScheduler
from .drift_study import GaussianMoments, distribution_errors, make_scheduler
from .exact import SqueezedExactScheduler
from .gaussian import optimal_noise_predictor
from .squeeze import AxisLike, unit_axis

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def _reproduced_noise(seeds: list[int], n: int) -> torch.Tensor:
    """The z that `randn_tensor` draws for each row of a batch given per-row generators with `seeds`, (rows, n)."""
    return torch.cat(
        [randn_tensor((1, n, 1, 1), generator=g, dtype=torch.float64) for g in _generators(seeds)]
    ).flatten(1)


def _solve_noise_map(outputs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, c) of y = c + L z from n + 1 rows of outputs y_k (n + 1, n) and their noises z_k (n + 1, n)."""
    differences = (noise[1:] - noise[0]).T  # columns z_k − z_0, (n, n)
    noise_gain = (outputs[1:] - outputs[0]).T @ torch.linalg.inv(differences)  # L
    return noise_gain, outputs[0] - noise_gain @ noise[0]


def initial_noise_map(scheduler, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_T, c_T) with x_T = c_T + L_T ε the scheduler's `initial_noise` (call `set_timesteps` first), read on n + 1
    rows with distinct seeds."""
    seeds = [seed + k for k in range(n + 1)]
    outputs = scheduler.initial_noise((n + 1, n, 1, 1), generator=_generators(seeds), dtype=torch.float64)
    return _solve_noise_map(outputs.flatten(1), _reproduced_noise(seeds, n))


def affine_step_map(
    scheduler, predictor: Predictor, timestep, n: int, step_kwargs: dict | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, c, L) of one real step at `timestep`, x′ = A x + c + L z, with the network replaced by `predictor`."""
    basis = torch.cat([torch.zeros(1, n), torch.eye(n), torch.zeros(n, n)]).to(torch.float64)  # [0, e_1..e_n, 0…]
    inputs = basis.view(2 * n + 1, n, 1, 1)
    seeds = [seed] * (n + 1) + [seed + k for k in range(1, n + 1)]
    output = scheduler.step(
        predictor(inputs, timestep), timestep, inputs, generator=_generators(seeds), **(step_kwargs or {})
    )
    outputs = output.prev_sample.flatten(1).to(torch.float64)  # (2n + 1, n)
    gain = (outputs[1 : n + 1] - outputs[0]).T  # A, (n, n): rows 0…n share z_0
    rows = torch.cat([outputs[:1], outputs[n + 1 :]])  # zero inputs: y_k = c + L z_k
    noise_gain, offset = _solve_noise_map(rows, _reproduced_noise([seeds[0], *seeds[n + 1 :]], n))
    return gain, offset, noise_gain


def affine_sampler_moments(
    scheduler, predictor: Predictor, num_inference_steps: int, step_kwargs: dict | None = None
) -> GaussianMoments:
    """The exact mean and covariance of what the scheduler's sampler generates with an affine `predictor`:
    m′ = A m + c, P′ = A P Aᵀ + L Lᵀ over the steps, from m = c_T, P = L_T L_Tᵀ (module docstring)."""
    n = len(scheduler.principal_axis)
    scheduler.set_timesteps(num_inference_steps)
    noise_gain, mean = initial_noise_map(scheduler, n)
    covariance = noise_gain @ noise_gain.T
    for t in scheduler.timesteps:
        gain, offset, noise_gain = affine_step_map(scheduler, predictor, t, n, step_kwargs)
        mean = gain @ mean + offset
        covariance = gain @ covariance @ gain.T + noise_gain @ noise_gain.T
    return GaussianMoments(mean, (covariance + covariance.T) / 2)


def exact_predictor_errors(
    data: GaussianMoments, scheduler, num_inference_steps: int, step_kwargs: dict | None = None
) -> dict[str, float]:
    """`distribution_errors` of the sampler's exact output law with the exact predictor for N(μ, C): the variance
    bias along v̂ and v̂⊥, the Fréchet distance, …"""
    predictor = optimal_noise_predictor(data.mean, data.covariance, scheduler)
    moments = affine_sampler_moments(scheduler, predictor, num_inference_steps, step_kwargs)
    return distribution_errors(moments, data, scheduler.principal_axis)


def study_samplers(axis: AxisLike) -> dict[str, tuple[Callable, dict]]:
    """The samplers of notebook 05, by name: (a function of s0 returning a fresh scheduler, the step's kwargs).

    The paper's sampler with eq. (7)'s re-squeeze ("paper_previous") and the authors' ("paper_current"); squeezed
    DDIM (η = 0, the paper's marginal, re-squeezed with the next timestep's S as eq. 7); the exact posterior of
    forward="exact", ancestral (η = 1) and deterministic (η = 0). All without clipping (Gaussian data is
    unbounded). A new sampler joins the study by one entry here.
    """
    axis = unit_axis(axis).tolist()

    def ddim(s0: float) -> SqueezedDDIMScheduler:
        return SqueezedDDIMScheduler(s0=s0, principal_axis=axis, clip_sample=False)

    def exact(s0: float) -> SqueezedExactScheduler:
        return SqueezedExactScheduler(s0=s0, principal_axis=axis, clip_sample=False, forward="exact")

    return {
        "paper_previous": (lambda s0: make_scheduler(axis, s0, "previous"), {}),
        "paper_current": (lambda s0: make_scheduler(axis, s0, "current"), {}),
        "ddim": (ddim, {"eta": 0.0}),
        "exact_ancestral": (exact, {"eta": 1.0}),
        "exact_deterministic": (exact, {"eta": 0.0}),
    }


def split_bias(errors: dict[str, float], plain: dict[str, float]) -> dict[str, float]:
    """Each variance bias as (the same sampler's at s0 = 0, at the same number of steps) + (what s0 adds): the first
    part is the error of plugging a predicted x̂_0 into a posterior, which every such sampler has (plain DDPM for the
    ancestral samplers, plain DDIM for the deterministic one) and more steps shrink; the second is what the squeeze
    adds on top (for the paper's sampler, the telescoped drift of eq. 12)."""
    row = {}
    for name in ("variance_error_axis", "variance_error_perp"):
        row[f"{name}_plain"] = plain[name]
        row[f"{name}_from_s0"] = errors[name] - plain[name]
    return row


def bias_rows(
    data: GaussianMoments, samplers: dict[str, tuple[Callable, dict]], s0_values: list[float], step_counts: list[int]
) -> list[dict]:
    """One row per (sampler, steps, s0): `exact_predictor_errors` and its `split_bias` against the same sampler at
    s0 = 0 (computed once per sampler and step count)."""
    rows = []
    for name, (build, step_kwargs) in samplers.items():
        for steps in step_counts:
            plain = exact_predictor_errors(data, build(0.0), steps, step_kwargs)
            for s0 in s0_values:
                errors = plain if s0 == 0 else exact_predictor_errors(data, build(s0), steps, step_kwargs)
                rows.append(dict(sampler=name, steps=steps, s0=s0, **errors, **split_bias(errors, plain)))
    return rows


__all__ = [
    "affine_sampler_moments",
    "affine_step_map",
    "bias_rows",
    "exact_predictor_errors",
    "initial_noise_map",
    "split_bias",
    "study_samplers",
]
