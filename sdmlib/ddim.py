"""`SqueezedDDIMScheduler`: diffusers' `DDIMScheduler` on the whitened chain of a squeezed model.

Why a subclass: as for `SqueezedDDPMScheduler` (Appendix A.1), every pipeline and tool that takes a `DDIMScheduler`
takes this one, `SqueezedDDIMScheduler.from_config(pipe.scheduler.config)` swaps it into a saved squeezed pipeline,
and with s0 = 0 it *is* a `DDIMScheduler`, number for number. The update is the parent's; this class whitens before
it and re-squeezes after it.

The DDIM update (Song et al. 2021, eq. 12) of the whitened chain x̃_t = S_t⁻¹x_t = a_t x̃_0 + b_t ε, with
a_t = √ᾱ_t, b_t = √(1−ᾱ_t) and t′ the next timestep of the schedule:

    x̃_t′ = √ᾱ_t′ x̃̂_0 + √(1 − ᾱ_t′ − σ_t²) ε̂ + σ_t z,   σ_t = η √((1−ᾱ_t′)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_t′),

with x̃̂_0 = S_t⁻¹x̂_0 and ε̂ the whitened predictions, z ~ N(0, I). Then x_t′ = S_t′ x̃_t′. The re-squeeze uses the
squeeze of the NEXT timestep because the next step whitens with S_t′⁻¹: the two cancel, so the whitened states
are exactly the chain that `DDIMScheduler` runs on a model of the whitened process, and x_t′ has the marginal's
noise matrix S_t′ (eq. 7's S_{t−1}). `resqueeze="current"` re-squeezes with S_t instead, as the authors' DDPM code.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers import DDIMScheduler, SchedulerMixin  # noqa: F401  (SchedulerMixin: see the note below)
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

from .checks import integer_in
from .prediction import convert
from .squeezed import SqueezeMixin
from .timesteps import check_timesteps

# diffusers' pipeline loader finds a component that it does not ship by importing its module and looking there for
# the base class that says how to load it (SchedulerMixin): the import above lets DiffusionPipeline.from_pretrained
# load a pipeline saved with this scheduler.


class SqueezedDDIMScheduler(SqueezeMixin, DDIMScheduler):
    """DDIM (η ≥ 0) with noise squeezed along the data's principal axis v̂.

    Every argument of `DDIMScheduler` is accepted and means the same; the squeeze's (`s0`, `variant`,
    `squeeze_schedule`, `principal_axis`, `resqueeze`, `clip_space`, `initial_squeeze`) mean what they mean for
    `sdmlib.scheduler.SqueezedDDPMScheduler`, with the same defaults, and are saved and loaded with the config, so
    `from_config` turns either scheduler into the other with the same squeeze.

    `set_timesteps(timesteps=[…])` takes a custom schedule (`sdmlib.timesteps.quadratic_timesteps`, say); each step
    then goes to the next listed timestep. With `set_timesteps(n)` the step is the parent's, which goes to
    t − T // n whatever the list says (the same thing for "leading" spacing and for "trailing" when n divides T; not
    for "linspace"). The re-squeeze always uses the next listed timestep, the one the next step whitens with, so the
    whitened states are the parent's chain even where its stride and the list disagree.

    `clip_space="data"` clips x̂_0 in the images' box (block 2b of `step`); like `SqueezedDDPMScheduler`, it leaves
    `thresholding=True` to the parent, in whitened coordinates.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
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
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
            clip_sample=clip_sample,
            set_alpha_to_one=set_alpha_to_one,
            steps_offset=steps_offset,
            prediction_type=prediction_type,
            thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range,
            sample_max_value=sample_max_value,
            timestep_spacing=timestep_spacing,
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
        self.custom_timesteps = False
        self._next_timestep: dict[int, int] = {}

    # -- the schedule ------------------------------------------------------------------------------------------

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """The parent's `set_timesteps(num_inference_steps)`, or a custom descending list `timesteps` (as
        `DDPMScheduler.set_timesteps` takes one): strictly decreasing integers in [0, num_train_timesteps)."""
        T = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError(
                f"pass exactly one of num_inference_steps and timesteps, got num_inference_steps="
                f"{num_inference_steps!r} and timesteps={timesteps!r}"
            )
        if timesteps is not None:
            listed = check_timesteps(timesteps, T)
            self.timesteps = torch.tensor(listed, dtype=torch.int64, device=device)
            self.num_inference_steps = len(listed)
            self.custom_timesteps = True
        else:
            integer_in("num_inference_steps", num_inference_steps, 1, T)
            super().set_timesteps(num_inference_steps, device)
            listed = self.timesteps.tolist()
            self.custom_timesteps = False
        # Host-side map t → t′ so that a step never reads the (maybe on-device) timesteps tensor.
        self._next_timestep = dict(zip(listed, listed[1:] + [-1]))

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """t′, the timestep after `timestep` in the schedule (−1 after the last): the one the next step whitens
        with. Off the schedule (the parent allows it), the parent's own t − T // n."""
        t = int(timestep)
        if t in self._next_timestep:
            return self._next_timestep[t]
        if self.custom_timesteps:
            raise ValueError(f"timestep must be one of the custom schedule's {list(self._next_timestep)}, got {t}")
        return t - self.config.num_train_timesteps // self.num_inference_steps

    def _alpha_bar_target(self, timestep: int) -> float:
        """ᾱ at the end of the parent's step from `timestep`: at the next listed timestep for a custom schedule, at
        t − T // n otherwise; `final_alpha_cumprod` past the end."""
        t = int(timestep)
        if self.custom_timesteps:
            target = self._next_timestep[t]
        else:
            target = t - self.config.num_train_timesteps // self.num_inference_steps
        return self.alpha_bar_at(target) if target >= 0 else float(self.final_alpha_cumprod)

    @contextmanager
    def _parent_steps_to_next_listed(self, timestep: int):
        """Make the parent's step end at the next listed timestep t′ of a custom schedule.

        The parent ends at t − T // n, reading ᾱ there, or `final_alpha_cumprod` once that is negative. With n = 1 it
        is always negative, so setting `final_alpha_cumprod` to ᾱ_t′ for the step makes the parent take the stride
        t → t′ with its own arithmetic (the variance σ_t included). Past the end (t′ = −1) the final ᾱ stays.
        """
        if not self.custom_timesteps:
            yield
            return
        saved = self.num_inference_steps, self.final_alpha_cumprod
        target = self._next_timestep[int(timestep)]
        self.num_inference_steps = 1
        if target >= 0:
            self.final_alpha_cumprod = self.alphas_cumprod[target]
        try:
            yield
        finally:
            self.num_inference_steps, self.final_alpha_cumprod = saved

    # -- sampling ----------------------------------------------------------------------------------------------

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDIMSchedulerOutput | tuple:
        """One reverse step: whiten (eq. 5), the parent's DDIM step (Song et al. eq. 12), re-squeeze with S_t′.

        Args:
            model_output: the prediction of kind `prediction_type` (ε̂^sq = S_t ε, x̂_0 or v̂^sq), data coordinates.
            timestep: the current timestep t of the schedule.
            sample: x_t^sq, (B, n, H, W).
            eta: η ≥ 0, the weight of the noise σ_t z (0: deterministic DDIM; 1: DDPM's posterior variance).
            use_clipped_model_output: re-derive ε̂ from the clipped x̂_0, as the parent does.
            generator: for z when η > 0.
            variance_noise: z itself, in whitened coordinates (instead of `generator`).
            return_dict: return a `DDIMSchedulerOutput` rather than a tuple.

        Returns:
            `prev_sample` x_t′^sq and `pred_original_sample` x̂_0, both in data coordinates.
        """
        if not eta >= 0:
            raise ValueError(f"eta must be a number ≥ 0 (0: deterministic DDIM, 1: DDPM's variance), got {eta!r}")
        t = timestep
        t_next = t if self.config.resqueeze == "current" else self.previous_timestep(t)

        # 1. Eq. (5): whiten the state and the prediction. Every relation between ε, x_0 and v is linear with
        #    scalar coefficients (`sdmlib.prediction`), so S_t⁻¹ of each prediction type is the whitened chain's own.
        sample_white = self._squeeze_at(sample, t, inverse=True)
        prediction_white = self._squeeze_at(model_output, t, inverse=True)

        # 2. Song et al. eq. (12) on the whitened chain: the parent's step, over the custom stride t → t′ if any.
        with self._parent_steps_to_next_listed(t):
            white = super().step(
                prediction_white,
                t,
                sample_white,
                eta=eta,
                use_clipped_model_output=use_clipped_model_output,
                generator=generator,
                variance_noise=variance_noise,
                return_dict=True,
            )
        prev_white, x0_white = white.prev_sample, white.pred_original_sample

        # 2b. Clipping in the images' box: eq. (12) is √ᾱ_t′ x̂_0 + c ε̂ + σ_t z with c = √(1 − ᾱ_t′ − σ_t²), linear
        #     in (x̂_0, ε̂). Clipping x̂_0 = S_t x̂_0^white in data space and swapping it in changes x̃_t′ by
        #     √ᾱ_t′ (new − old), plus c (ε̂(new) − ε̂(old)) when ε̂ is re-derived from the clipped x̂_0.
        if self.config.clip_sample and not self.config.thresholding and self.config.clip_space == "data":
            if not self.is_identity_at(t):
                prev_white, x0_white = self._clip_in_data_space(
                    t, eta, use_clipped_model_output, prediction_white, sample_white, prev_white, x0_white
                )

        # 3. Re-squeeze with the squeeze of t′ (S_t with resqueeze="current"); past the end S_0 (I, linear schedule).
        prev_sample = self._squeeze_at(prev_white, t_next)
        # 4. The whitened chain's clean signal is S_t⁻¹ x_0: map it back.
        pred_original_sample = self._squeeze_at(x0_white, t)

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def _clip_in_data_space(self, t, eta, use_clipped_model_output, prediction_white, sample_white, prev_white, x0_white):
        """Block 2b of `step`: (x̃_t′, x̃̂_0) with x̂_0 clipped to ±clip_sample_range in data coordinates."""
        alpha_bar = self.alpha_bar_at(t)
        alpha_bar_next = self._alpha_bar_target(t)
        a_t, b_t = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
        variance = (1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next)  # σ_t² / η² (eq. 16)
        direction = max(1 - alpha_bar_next - eta**2 * variance, 0.0) ** 0.5  # c of eq. (12)
        kind = self.config.prediction_type
        unclipped = convert(prediction_white, kind, "sample", sample_white, a_t, b_t)
        bound = self.config.clip_sample_range
        clipped = self._squeeze_at(self._squeeze_at(unclipped, t).clamp(-bound, bound), t, inverse=True)
        prev_white = prev_white + alpha_bar_next**0.5 * (clipped - x0_white)
        if use_clipped_model_output:
            eps_new = convert(clipped, "sample", "epsilon", sample_white, a_t, b_t)
            eps_old = convert(x0_white, "sample", "epsilon", sample_white, a_t, b_t)
            prev_white = prev_white + direction * (eps_new - eps_old)
        return prev_white, clipped
