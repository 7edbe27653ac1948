"""`SqueezeMixin`: what every squeezed scheduler shares, whatever update it takes between whitening and re-squeezing.

The squeeze's configuration (s0, variant, schedule, principal axis, and the reading of eqs. 5–7), the squeeze S(s) and
its inverse as rank-1 updates along the channel axis, the forward process of eqs. (3)–(4) (`add_noise`,
`squeeze_noise`, `get_velocity`) and the starting noise S_T ε (`initial_noise`). A squeezed scheduler is this mixin
first, then the diffusers scheduler it extends (`class SqueezedDDPMScheduler(SqueezeMixin, DDPMScheduler)`); its
`__init__` calls the parent's, then `_setup_squeeze`, and its `step` whitens, takes the parent's step and
re-squeezes. `super()` here reaches that diffusers parent, so `add_noise` is the parent's with S_t ε for ε.

Two forward processes (`forward`), both of the form x_t = √ᾱ_t x_0 + √(1−ᾱ_t) M_t ε with a noise matrix M_t that
shares the squeeze's eigenvectors v̂, v̂⊥:
- "paper" (the default): M_t = S_t, the marginal the authors' code trains on (not eq. 3's);
- "exact": M_t = D_t = Σ_t^{1/2}/√(1−ᾱ_t), eq. (3)'s exact marginal of the chain of eq. (2). Eq. (2) is two scalar
  diffusions, so Σ_t has eigenvalues σ²_t∥, σ²_t⊥ (`marginal_variances`) and D_t has d_t = σ_t/√(1−ᾱ_t) on each.
  Since √(1−ᾱ_t) is σ_t at s0 = 0, d²_t = σ²_t(s) / σ²_t(0): both from `marginal_variances`, so that at s0 = 0 the
  ratio is exactly 1 and the two forwards agree bit for bit.
Every relation of `sdmlib.prediction` holds with ε^sq = M_t ε, and whitening by M_t⁻¹ gives the DDPM chain's
marginals, so the whiten–step–re-squeeze samplers need no change: they read M_t through `_squeeze_at`.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from .prediction import check_prediction_type
from .scheduler_base import SqueezedSchedulerMixin
from .squeeze import (
    SCHEDULE_KINDS,
    VARIANTS,
    SqueezeEigenvalues,
    marginal_variances,
    rank_one_update,
    squeeze_eigenvalues,
    unit_axis,
)
from .squeeze import squeeze_schedule as make_squeeze_schedule

RESQUEEZE_MODES = ("previous", "current")
CLIP_SPACES = ("whitened", "data")
INITIAL_SQUEEZES = ("first_step", "t_max")
FORWARDS = ("paper", "exact")


def exact_noise_eigenvalues(s_schedule: torch.Tensor, betas: torch.Tensor, n: int, variant: str) -> SqueezeEigenvalues:
    """The eigenvalues d_t = σ_t/√(1−ᾱ_t) of D_t = Σ_t^{1/2}/√(1−ᾱ_t), eq. (3)'s exact marginal, at every timestep.

    d²_t = σ²_t(s)/σ²_t(0) with both variances from `marginal_variances` (σ²_t(0) = 1 − ᾱ_t is DDPM's): the same
    float64 cumulative sums, so a direction the squeeze never touched (s0 = 0, or v̂⊥ under SDM) gets exactly 1.
    """
    squeezed = marginal_variances(s_schedule, betas, n, variant)
    plain = marginal_variances(torch.zeros_like(torch.as_tensor(s_schedule, dtype=torch.float64)), betas, n, variant)
    return SqueezeEigenvalues((squeezed.parallel / plain.parallel).sqrt(), (squeezed.perpendicular / plain.perpendicular).sqrt())


class SqueezeMixin(SqueezedSchedulerMixin):
    """The squeeze of a diffusers scheduler: configuration, S(s) and S(s)⁻¹, the squeezed forward process and
    the starting noise. See `sdmlib.scheduler.SqueezedDDPMScheduler` for the meaning of each configuration field."""

    def _setup_squeeze(
        self,
        *,
        prediction_type: str,
        s0: float,
        variant: str,
        squeeze_schedule: str,
        principal_axis: list[float] | None,
        resqueeze: str,
        clip_space: str,
        initial_squeeze: str,
        forward: str = "paper",
    ) -> None:
        """Validate the squeeze's configuration and precompute s(t) and the noise matrix M_t of the forward process;
        call after the parent's `__init__` (which sets `betas`) and with `register_to_config` already applied."""
        check_prediction_type("prediction_type", prediction_type)
        if forward not in FORWARDS:
            raise ValueError(
                f"forward must be one of {FORWARDS} (the paper's training marginal √(1−ᾱ_t) S_t ε, or eq. 3's exact "
                f"Σ_t^(1/2) ε), got {forward!r}"
            )
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if squeeze_schedule not in SCHEDULE_KINDS:
            raise ValueError(f"squeeze_schedule must be one of {SCHEDULE_KINDS}, got {squeeze_schedule!r}")
        if resqueeze not in RESQUEEZE_MODES:
            raise ValueError(f"resqueeze must be one of {RESQUEEZE_MODES}, got {resqueeze!r}")
        if clip_space not in CLIP_SPACES:
            raise ValueError(f"clip_space must be one of {CLIP_SPACES}, got {clip_space!r}")
        if initial_squeeze not in INITIAL_SQUEEZES:
            raise ValueError(f"initial_squeeze must be one of {INITIAL_SQUEEZES}, got {initial_squeeze!r}")
        if principal_axis is None:
            principal_axis = [1.0, 1.0, 1.0]
        axis = unit_axis(principal_axis, name="principal_axis")
        if variant == "hdm" and axis.shape[0] < 2:
            raise ValueError(f"variant='hdm' needs at least 2 channels, got principal_axis of length {axis.shape[0]}")

        # s(t) for every training timestep, float64 on the host; `strengths` is a plain list so that reading one
        # value in the sampling loop never touches a device.
        self.squeeze_strengths = make_squeeze_schedule(s0, self.betas, squeeze_schedule)
        self._strengths = self.squeeze_strengths.tolist()
        # ᾱ_t as host floats (the same values as float(alphas_cumprod[t])): the parent's add_noise moves
        # `alphas_cumprod` to the training device, after which reading it in a sampling step would synchronise.
        self._alpha_bars = self.alphas_cumprod.tolist()
        self.principal_axis = axis
        # The noise matrix M_t's eigenvalues per timestep (float64), and as host lists for the sampling steps.
        # Held as an attribute, not read from the config: a subclass whose __init__ predates `forward` still works.
        self._forward = forward
        n = axis.shape[0]
        if forward == "exact":
            self.noise_eigenvalues = exact_noise_eigenvalues(self.squeeze_strengths, self.betas, n, variant)
        else:
            self.noise_eigenvalues = squeeze_eigenvalues(self.squeeze_strengths, n, variant)
        self._noise_parallel = self.noise_eigenvalues.parallel.tolist()
        self._noise_perpendicular = self.noise_eigenvalues.perpendicular.tolist()
        self._on_device: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        # The config keeps what was given; record the normalised axis and s0 as a float so the JSON is canonical.
        self.register_to_config(s0=float(s0), principal_axis=axis.tolist())


    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """v̂, and per timestep the rank-1 coefficient λ∥ − λ⊥ and the scale λ⊥ of the noise matrix M_t (S_t, or D_t
        with forward="exact"), on `device` in `dtype`.

        Computed in float64 once per (device, dtype) and cached, like the parent caches `alphas_cumprod`, so that
        squeezing a batch in the training loop is a gather and two passes over the data.
        """
        key = (device, dtype)
        if key not in self._on_device:
            lam = self.noise_eigenvalues
            self._on_device[key] = tuple(
                t.to(device=device, dtype=dtype)
                for t in (self.principal_axis, lam.parallel - lam.perpendicular, lam.perpendicular)
            )
        return self._on_device[key]

    def alpha_bar_at(self, timestep: int | torch.Tensor) -> float:
        """ᾱ_t at one training timestep, as a host float (never a device read)."""
        return self._alpha_bars[int(timestep)]

    def strength_at(self, timestep: int | torch.Tensor) -> float:
        """s(t) at one timestep, as a host float.

        Past the last step (t < 0, the paper's S_0 in eq. 7) the schedule is read at β = 0: the identity under the
        linear schedule, so the sampler ends in data space; S(s0) under the constant one, where the whitened chain's
        clean signal is S(s0)⁻¹x_0 and must be mapped back by S(s0).
        """
        index = int(timestep)
        if index >= 0:
            return self._strengths[index]
        return 0.0 if self.config.squeeze_schedule == "linear" else float(self.config.s0)

    def _check_channels(self, x: torch.Tensor) -> None:
        n = len(self.principal_axis)
        if x.ndim < 2 or x.shape[1] != n:
            raise ValueError(
                f"principal_axis has length {n} but the data has n={x.shape[1] if x.ndim > 1 else None} channels "
                f"(shape {tuple(x.shape)}); they must match"
            )

    def _squeeze(self, x: torch.Tensor, s: float, inverse: bool = False) -> torch.Tensor:
        """S(s) x (or S(s)⁻¹ x) for one host-float strength s, as in every sampling step."""
        self._check_channels(x)
        axis, _, _ = self._on(x.device, x.dtype)
        lam = squeeze_eigenvalues(-s if inverse else s, len(axis), self.config.variant)  # eq. (11): S⁻¹ = S(−s)
        parallel, perpendicular = float(lam.parallel), float(lam.perpendicular)
        return rank_one_update(x, axis, parallel - perpendicular, perpendicular)

    def noise_eigenvalues_at(self, timestep: int | torch.Tensor) -> tuple[float, float]:
        """(m∥, m⊥): the eigenvalues of the noise matrix M_t at `timestep`, as host floats.

        forward="paper": those of S_t = S(`strength_at(t)`), so S_0 past the last step (see `strength_at`).
        forward="exact": those of D_t. Past the last step (t < 0) D_t is continued by its limit at the data end,
        D_0 (diffusers' timestep 0, the paper's t = 1): d²_0 = β_0 λ(s_0)²/β_0, so D_0 = S(s(0)), and D_t → D_0 as
        the step shrinks. The whiten/re-squeeze step whitens its last step's x̂_0 with D_{t_last}⁻¹ and re-squeezes
        with this matrix, so it ends in data space exactly when the schedule ends at timestep 0 (every "leading"
        and "linspace" schedule); a schedule ending at t_last > 0 ("trailing") is left with D_0 D_{t_last}⁻¹,
        within e^{±|s(t_last) − s(0)|} of the identity, as the paper's sampler is (its S_0 is the identity).
        Under the constant schedule D_t = S(s0) at every t, the same as the paper's S_0 there.
        """
        index = int(timestep)
        if self._forward == "exact":
            index = max(index, 0)
            return self._noise_parallel[index], self._noise_perpendicular[index]
        if index >= 0:
            return self._noise_parallel[index], self._noise_perpendicular[index]
        lam = squeeze_eigenvalues(self.strength_at(index), len(self.principal_axis), self.config.variant)
        return float(lam.parallel), float(lam.perpendicular)

    def _squeeze_at(self, x: torch.Tensor, timestep: int | torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """The noise matrix M_t of the marginal at `timestep` applied to x (its inverse with `inverse=True`): S_t of
        `strength_at(timestep)` (S_0 past the last step, t < 0), or D_t with forward="exact" (see
        `noise_eigenvalues_at`). Every step whitens and re-squeezes through this one method, with host-side
        scalars only."""
        if self._forward != "exact":
            return self._squeeze(x, self.strength_at(timestep), inverse)
        self._check_channels(x)
        parallel, perpendicular = self.noise_eigenvalues_at(timestep)
        if inverse:
            parallel, perpendicular = 1 / parallel, 1 / perpendicular
        axis, _, _ = self._on(x.device, x.dtype)
        return rank_one_update(x, axis, parallel - perpendicular, perpendicular)

    def is_identity_at(self, timestep: int | torch.Tensor) -> bool:
        """Whether the noise matrix at `timestep` is the identity (then whitening changes nothing)."""
        if self._forward != "exact":
            return self.strength_at(timestep) == 0
        return self.noise_eigenvalues_at(timestep) == (1.0, 1.0)

    # -- training: eqs. (3)–(4) --------------------------------------------------------------------------------

    def squeeze_noise(self, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Eq. (4)'s target ε^sq = M_t ε (S_t ε, or D_t ε with forward="exact"), M_t at each sample's own timestep.
        noise: (B, n, H, W). Under SDM m⊥ = 1 for both forwards, so the update skips the scale."""
        self._check_channels(noise)
        axis, coefficient, scale = self._on(noise.device, noise.dtype)
        timesteps = timesteps.to(noise.device)
        per_sample = (-1,) + (1,) * (noise.ndim - 1) if timesteps.ndim == 1 else ()  # (B, 1, 1, 1)
        return rank_one_update(
            noise,
            axis,
            coefficient[timesteps].view(per_sample),
            1.0 if self.config.variant == "sdm" else scale[timesteps].view(per_sample),
        )

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.IntTensor
    ) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) M_t ε, M_t at each sample's own t (diffusers' contract: returns x_t only).

        forward="paper": M_t = S_t, the marginal the authors' code trains on; eq. (3)'s exact marginal has covariance
        Σ_t instead of (1−ᾱ_t) S_t², and the derivation notebook `01_forward_marginal` measures how far apart they
        are. forward="exact": M_t = D_t, so x_t = √ᾱ_t x_0 + Σ_t^{1/2} ε, eq. (3) itself.
        """
        return super().add_noise(original_samples, self.squeeze_noise(noise, timesteps), timesteps)

    def add_noise_and_target(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, ε^sq) of eq. (4) together: `add_noise` and `squeeze_noise` with the squeeze computed once."""
        target = self.squeeze_noise(noise, timesteps)
        return super().add_noise(original_samples, target, timesteps), target

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.IntTensor) -> torch.Tensor:
        """diffusers' v-target for the squeezed marginal: v^sq = a_t M_t ε − b_t x_0 (`sdmlib.prediction.velocity`).

        `noise` is the unsqueezed ε passed to `add_noise`, as in the parent's contract; at s0 = 0 this is the parent's.
        """
        return super().get_velocity(sample, self.squeeze_noise(noise, timesteps), timesteps)

    # -- sampling ----------------------------------------------------------------------------------------------

    def initial_noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """M_T ε (S_T ε, or D_T ε with forward="exact"), the squeezed starting point of sampling: M_T at the first
        timestep of the current schedule, or at the last training timestep T − 1 with `initial_squeeze="t_max"`
        (the authors' code). Like DDPM's N(0, I), it leaves out the signal √ᾱ_T x_0 and the factor √(1−ᾱ_T) ≈ 1.

        ε is drawn exactly as diffusers' `DDPMPipeline` draws its starting noise, so with s0 = 0 the two agree.
        """
        device = torch.device(device) if device is not None else None
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        first = self.config.num_train_timesteps - 1 if self.config.initial_squeeze == "t_max" else self.timesteps[0]
        return self._squeeze_at(noise, first)
