"""`SqueezedExactScheduler`: the exact posterior of the squeezed process, ancestral (η = 1) or deterministic (η = 0).

Why another scheduler: the paper's sampler (`SqueezedDDPMScheduler`) whitens, takes DDPM's posterior and re-squeezes,
which is the exact posterior only when the noise matrix does not depend on t; otherwise the whitened chain drifts
(eq. 12) and the drifts telescope into an e^{±s0}-sized variance error that more steps do not remove (notebook 03).
But every matrix of the process shares the eigenvectors v̂, v̂⊥, so eq. (2) is two independent scalar diffusions, and
their posteriors are closed-form at any stride. Per direction, with marginal x_t = √ᾱ_t x_0 + σ_t ε and
r = √(ᾱ_t/ᾱ_t′) over the stride t → t′ (t′ < t; ᾱ_t′ = 1, σ_t′ = 0 past the end):

    Cov(x_t′, x_t | x_0) = r σ²_t′,   so   q(x_t′ | x_t, x_0) = N(√ᾱ_t′ x_0 + (r σ²_t′/σ²_t)(x_t − √ᾱ_t x_0), c²),
    c² = σ²_t′ (1 − r² σ²_t′/σ²_t),   and r σ²_t′/σ²_t = √(σ²_t′ − c²)/σ_t.

The generalised step (Song et al.'s DDIM family, per direction) keeps the marginals for any η ∈ [0, 1]:

    x_t′ = √ᾱ_t′ x̂_0 + √(σ²_t′ − η²c²) (x_t − √ᾱ_t x̂_0)/σ_t + η c z,

η = 1 the exact ancestral posterior, η = 0 the deterministic sampler of the same marginals. At s0 = 0 (σ²_t = 1 − ᾱ_t)
η = 1 is DDPM's posterior step ("fixed_small") and η = 0 is DDIM's step with ᾱ = 1 past the end.

σ_t is the marginal of the configured `forward` (`SqueezeMixin`): √(1−ᾱ_t) m_t per direction, m_t the eigenvalue of
the noise matrix M_t. With forward="exact" (M_t = D_t = Σ_t^{1/2}/√(1−ᾱ_t)) these are the exact posteriors of eq. (2).
With forward="paper" (M_t = S_t) the same step runs on the paper's marginals, which are no Markov chain's: it is then
a marginal-preserving step of the DDIM family, not a posterior of eq. (2).

The class subclasses diffusers' `DDPMScheduler` for its β/ᾱ schedule, `set_timesteps` (custom timesteps included) and
`previous_timestep`, and `SqueezeMixin` for the squeeze and the forward process, so `SqueezedDDPMPipeline` accepts it
and `from_config` of a `SqueezedDDPMScheduler`'s config gives the same squeeze and forward.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, SchedulerMixin  # noqa: F401  (SchedulerMixin: found by the pipeline loader)
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from .prediction import convert
from .squeeze import rank_one_update
from .squeezed import SqueezeMixin


def exact_step_coefficients(
    alpha_bar: float, alpha_bar_prev: float, sigma: float, sigma_prev: float, eta: float
) -> tuple[float, float, float]:
    """The generalised posterior step over t → t′ for one direction, as x_t′ = k_x x_t + k_0 x̂_0 + k_z z.

    c² = σ²_t′ (1 − r² σ²_t′/σ²_t), r² = ᾱ_t/ᾱ_t′;  k_x = √(σ²_t′ − η²c²)/σ_t,  k_0 = √ᾱ_t′ − k_x √ᾱ_t,  k_z = η c.
    Returns host floats (k_x, k_0, k_z). c² is clamped at 0 against rounding (it is ≥ 0 for any forward process,
    whose noise between t′ and t is ≥ 0).
    """
    ratio = alpha_bar / alpha_bar_prev
    c_squared = max(sigma_prev**2 * (1 - ratio * sigma_prev**2 / sigma**2), 0.0)
    state = max(sigma_prev**2 - eta**2 * c_squared, 0.0) ** 0.5 / sigma
    return state, alpha_bar_prev**0.5 - state * alpha_bar**0.5, eta * c_squared**0.5


class SqueezedExactScheduler(SqueezeMixin, DDPMScheduler):
    """The exact per-direction posterior step of the squeezed process, at any stride, ancestral or deterministic.

    Takes every argument of `SqueezedDDPMScheduler` (so `from_config` of its config works) and means the same by
    each; `step` adds `eta`. Not supported, refused with a ValueError: `thresholding=True` (diffusers' dynamic
    thresholding is a per-sample quantile, defined for DDPM's whitened prediction) and any `variance_type` but
    "fixed_small" (the variance is the process's own, c² above). `resqueeze` is read by the paper's sampler only:
    nothing is re-squeezed here. `clip_sample` clips x̂_0 in the images' box (clip_space="data") or its whitened
    M_t⁻¹x̂_0 (clip_space="whitened", as the paper's sampler does). `forward` defaults to "paper", as for
    `SqueezedDDPMScheduler`, so that a saved config without the field keeps its run's training marginal; pass
    forward="exact" for the exact process.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        s0: float = 0.0,
        variant: str = "sdm",
        squeeze_schedule: str = "linear",
        principal_axis: list[float] | None = None,
        resqueeze: str = "previous",
        clip_space: str = "whitened",
        initial_squeeze: str = "first_step",
        forward: str = "paper",
    ):
        if thresholding:
            raise ValueError(
                "thresholding must be False for SqueezedExactScheduler (dynamic thresholding is not supported; use "
                "clip_sample with clip_space='data' or 'whitened'), got True"
            )
        if variance_type != "fixed_small":
            raise ValueError(
                f"variance_type must be 'fixed_small' for SqueezedExactScheduler (the step's variance is the exact "
                f"posterior's, η²c²), got {variance_type!r}"
            )
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
            variance_type=variance_type,
            clip_sample=clip_sample,
            prediction_type=prediction_type,
            thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range,
            sample_max_value=sample_max_value,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self._setup_squeeze(
            prediction_type=prediction_type,
            s0=s0,
            variant=variant,
            squeeze_schedule=squeeze_schedule,
            principal_axis=principal_axis,
            resqueeze=resqueeze,
            clip_space=clip_space,
            initial_squeeze=initial_squeeze,
            forward=forward,
        )
        self._alphas_cumprod = self.alphas_cumprod.to(torch.float64).tolist()  # host floats for the steps
        self._coefficients: dict[tuple[int, int, float], tuple[tuple[float, float], ...]] = {}

    # -- the schedule, per direction (host floats) -----------------------------------------------------------------

    def marginal_std_at(self, timestep: int) -> tuple[float, float]:
        """(σ_t∥, σ_t⊥) = √(1−ᾱ_t) (m∥, m⊥) of the forward marginal at `timestep`; (0, 0) past the end (x_{−1} = x_0)."""
        t = int(timestep)
        if t < 0:
            return 0.0, 0.0
        scale = (1 - self._alphas_cumprod[t]) ** 0.5
        parallel, perpendicular = self.noise_eigenvalues_at(t)
        return scale * parallel, scale * perpendicular

    def step_coefficients(self, timestep: int, previous: int, eta: float) -> tuple[tuple[float, float], ...]:
        """((k_x∥, k_x⊥), (k_0∥, k_0⊥), (k_z∥, k_z⊥)) of `exact_step_coefficients` over t → t′, computed once per
        (t, t′, η) in float64 and cached, so a step reads host floats only."""
        key = (int(timestep), int(previous), float(eta))
        if key not in self._coefficients:
            t, t_prev, eta = key
            alpha_bar = self._alphas_cumprod[t]
            alpha_bar_prev = self._alphas_cumprod[t_prev] if t_prev >= 0 else 1.0
            per_direction = [
                exact_step_coefficients(alpha_bar, alpha_bar_prev, sigma, sigma_prev, eta)
                for sigma, sigma_prev in zip(self.marginal_std_at(t), self.marginal_std_at(t_prev))
            ]
            self._coefficients[key] = tuple(zip(*per_direction))  # (k_x, k_0, k_z), each (∥, ⊥)
        return self._coefficients[key]

    def _per_direction(self, x: torch.Tensor, coefficients: tuple[float, float]) -> torch.Tensor:
        """k∥ on v̂ and k⊥ on v̂⊥: one rank-1 update."""
        axis, _, _ = self._on(x.device, x.dtype)
        parallel, perpendicular = coefficients
        return rank_one_update(x, axis, parallel - perpendicular, perpendicular)

    # -- sampling ------------------------------------------------------------------------------------------------

    def initial_noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Σ_T^{1/2} ε = √(1−ᾱ_T) M_T ε: the noise of the forward marginal at the first timestep of the schedule (at
        T − 1 with initial_squeeze="t_max"), what the process reaches there but for the signal √ᾱ_T x_0 ≈ 0."""
        device = torch.device(device) if device is not None else None
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        self._check_channels(noise)
        first = self.config.num_train_timesteps - 1 if self.config.initial_squeeze == "t_max" else self.timesteps[0]
        return self._per_direction(noise, self.marginal_std_at(first))

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> DDPMSchedulerOutput | tuple:
        """One step t → t′ (the previous timestep of the schedule; past the end after the last) of the generalised
        exact posterior.

        Args:
            model_output: the network's prediction of the kind `prediction_type` names (ε^sq = M_t ε, x_0 or
                v^sq = a_t ε^sq − b_t x_0), in data coordinates, (B, n, H, W).
            timestep: the current timestep t of the sampling schedule.
            sample: x_t, (B, n, H, W).
            eta: η ∈ [0, 1]: 1 the exact ancestral posterior, 0 deterministic.
            generator: for z; a list gives each sample its own generator (diffusers' `randn_tensor`).
            return_dict: return a `DDPMSchedulerOutput` rather than a tuple.

        Returns:
            `prev_sample` x_t′ and `pred_original_sample` x̂_0, in data coordinates.
        """
        if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
            raise ValueError(f"eta must be a number in [0, 1] (1: ancestral, 0: deterministic), got {eta!r}")
        self._check_channels(sample)
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output must have the shape of sample {tuple(sample.shape)}, got {tuple(model_output.shape)}"
            )
        t = int(timestep)
        t_prev = int(self.previous_timestep(t))
        alpha_bar = self._alphas_cumprod[t]
        a_t, b_t = alpha_bar**0.5, (1 - alpha_bar) ** 0.5

        # 1. x̂_0 from the prediction, through the training marginal x_t = a_t x_0 + b_t ε^sq. Its relations are
        #    linear with scalar coefficients (`sdmlib.prediction`), so whitening by M_t⁻¹, converting and mapping
        #    back gives the same x̂_0 as converting in data coordinates, which is what is done (two fewer passes).
        x0 = convert(model_output, self.config.prediction_type, "sample", sample, a_t, b_t)

        # 2. Clipping x̂_0, in the images' box or in the whitened chain's (as the paper's sampler does).
        if self.config.clip_sample:
            bound = self.config.clip_sample_range
            if self.config.clip_space == "data":
                x0 = x0.clamp(-bound, bound)
            else:
                x0 = self._squeeze_at(self._squeeze_at(x0, t, inverse=True).clamp(-bound, bound), t)

        # 3. The generalised exact posterior, per direction: x_t′ = k_x x_t + k_0 x̂_0 + k_z z (module docstring).
        state, signal, noise = self.step_coefficients(t, t_prev, eta)
        prev_sample = self._per_direction(sample, state) + self._per_direction(x0, signal)
        if noise != (0.0, 0.0):
            z = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = prev_sample + self._per_direction(z, noise)

        if not return_dict:
            return (prev_sample, x0)
        return DDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


__all__ = ["SqueezedExactScheduler", "exact_step_coefficients"]
