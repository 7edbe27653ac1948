"""`SqueezedDDPMScheduler`: diffusers' `DDPMScheduler` with squeezed noise (paper, Appendix A.1).

Why a subclass: the paper keeps the UNet and all training and sampling code standard and "subclasses
DDPMScheduler, overriding the add-noise and step methods". Doing the same here means every pipeline, training
script and config tool that accepts a `DDPMScheduler` accepts this one, and with s0 = 0 it *is* a
`DDPMScheduler`, number for number. The arithmetic lives in `sdmlib.squeeze`; this class only wires it into
diffusers' contract.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, SchedulerMixin  # noqa: F401  (SchedulerMixin: see RESQUEEZE_MODES below)
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput

from .prediction import convert
from .squeezed import CLIP_SPACES, INITIAL_SQUEEZES, RESQUEEZE_MODES, SqueezeMixin  # noqa: F401  (re-exported)
from .timesteps import check_timesteps

# diffusers' pipeline loader finds a component that it does not ship by importing the module named in
# model_index.json ("sdmlib.scheduler") and looking there for the base class that says how to load it
# (SchedulerMixin); the import above is what lets DiffusionPipeline.from_pretrained load this scheduler.


class SqueezedDDPMScheduler(SqueezeMixin, DDPMScheduler):
    """DDPM with noise squeezed along the data's principal axis v̂ (eqs. 2–9).

    Every argument of `DDPMScheduler` is accepted and means the same; the extra ones, all saved by
    `save_pretrained` and restored by `from_pretrained`, are:

    Args:
        s0 (`float`, defaults to 0.0):
            Squeeze strength. s0 > 0 squeezes (less noise along v̂), s0 < 0 anti-squeezes; 0 is plain DDPM.
        variant (`"sdm"` or `"hdm"`, defaults to `"sdm"`):
            Eq. (9): SDM scales v̂ alone; HDM also scales v̂⊥ by e^{s/(n−1)} so that det S = 1.
        squeeze_schedule (`"linear"` or `"constant"`, defaults to `"linear"`):
            s(t) = s0·β_t/β_max (the paper's), or s0 at every t.
        principal_axis (`list[float]`, *optional*):
            v̂, one entry per channel; normalised on construction. Defaults to (1, 1, 1)/√3, the luminance
            direction that the first principal component of natural RGB images is close to; pass the axis of your
            data (`sdmlib.principal_axis`).
        resqueeze (`"previous"` or `"current"`, defaults to `"previous"`):
            The matrix of the re-squeeze after each reverse step: S_{t−1} as in eq. (7), or S_t as in the
            authors' public code.
        clip_space (`"whitened"` or `"data"`, defaults to `"whitened"`):
            Where `clip_sample=True` clips the prediction x̂_0 to ±`clip_sample_range`: the whitened chain's
            S_t⁻¹x̂_0 (what diffusers' parent step does, and the authors' code), or x̂_0 itself, the images' box.
        initial_squeeze (`"first_step"` or `"t_max"`, defaults to `"first_step"`):
            The S of the starting noise S ε: at the first timestep of the sampling schedule (the one the first
            step whitens with), or at the last training timestep T − 1 as in the authors' code.
        forward (`"paper"` or `"exact"`, defaults to `"paper"`):
            The forward marginal `add_noise` draws and the network learns: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) S_t ε (the
            authors' code), or eq. (3)'s exact x_t = √ᾱ_t x_0 + Σ_t^{1/2} ε = √ᾱ_t x_0 + √(1−ᾱ_t) D_t ε. The step
            whitens and re-squeezes with that marginal's noise matrix (S_t or D_t; see `SqueezeMixin`).

    Timesteps follow diffusers (0 … T−1): the paper's S_t is the squeeze at diffusers timestep t − 1, and
    "S_{t−1}" in the sampler means the squeeze at the previous timestep of the sampling schedule.
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

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """The parent's, with a custom list checked first: strictly decreasing integers in [0, T), each step going
        to the next listed timestep (`sdmlib.timesteps.quadratic_timesteps`, say)."""
        if timesteps is not None:
            timesteps = check_timesteps(timesteps, self.config.num_train_timesteps)
        super().set_timesteps(num_inference_steps, device, timesteps)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _x0_coefficient(self, timestep: int) -> float:
        """The weight of x̂_0 in the DDPM posterior mean over the stride t → t′: √ᾱ_{t′} β / (1 − ᾱ_t), with
        β = 1 − ᾱ_t/ᾱ_{t′} and ᾱ_{t′} = 1 past the end (diffusers' `pred_original_sample_coeff`)."""
        t = int(timestep)
        previous = int(self.previous_timestep(t))
        alpha_bar = self.alpha_bar_at(t)
        alpha_bar_prev = self.alpha_bar_at(previous) if previous >= 0 else 1.0
        return alpha_bar_prev**0.5 * (1 - alpha_bar / alpha_bar_prev) / (1 - alpha_bar)

    # -- sampling: eqs. (5)–(7); the squeeze helpers, the forward process and initial_noise are SqueezeMixin's

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DDPMSchedulerOutput | tuple:
        """One reverse step: whiten (eq. 5), DDPM posterior step (eq. 6), re-squeeze (eq. 7).

        Args:
            model_output: the network's prediction of the kind `prediction_type` names: ε̂^sq = S_t ε ("epsilon"),
                x̂_0 ("sample") or v̂^sq = a_t ε^sq − b_t x_0 ("v_prediction"), in data coordinates, (B, n, H, W)
                (or (B, 2n, H, W) with a learned variance, whose second half is passed through untouched).
            timestep: the current timestep t of the sampling schedule.
            sample: x_t^sq, (B, n, H, W).
            generator: for the posterior noise z of eq. (6).
            return_dict: return a `DDPMSchedulerOutput` rather than a tuple.

        Returns:
            `prev_sample` x_{t−1}^sq and `pred_original_sample` x̂_0, both in data coordinates.

        With `clip_sample=True` and `clip_space="whitened"` (diffusers' parent step, and the authors' code) the
        prediction of the *whitened* chain, S_t⁻¹x̂_0, is clipped to the clip range. That box differs from the
        images' box most at large t, where s(t) is largest, and that is also where x̂_0 = (x_t − √(1−ᾱ_t)ε̂)/√ᾱ_t
        is least certain and clipping acts (notebook 03 measures both). With `clip_space="data"` x̂_0 itself is
        clipped, in the images' box; at s(t) = 0 the two boxes coincide and the step is the parent's, bit for bit.
        """
        t = timestep
        t_next = t if self.config.resqueeze == "current" else self.previous_timestep(t)  # whose squeeze re-squeezes

        # 1. Eq. (5): whiten the state and the prediction, x̃_t = S_t⁻¹ x_t and S_t⁻¹ of ε̂^sq, x̂_0 or v̂^sq: these are
        #    the whitened chain's own ε, x̃_0 and ṽ (x̃_t = a_t x̃_0 + b_t ε), since every relation of
        #    `sdmlib.prediction` is linear with scalar coefficients. So the parent handles each prediction type.
        n = sample.shape[1]
        sample_white = self._squeeze_at(sample, t, inverse=True)
        if model_output.shape[1] == 2 * n and self.variance_type in ("learned", "learned_range"):
            prediction, predicted_variance = model_output.split(n, dim=1)
            prediction_white = torch.cat([self._squeeze_at(prediction, t, inverse=True), predicted_variance], dim=1)
        else:
            prediction_white = self._squeeze_at(model_output, t, inverse=True)

        # 2. Eq. (6): the DDPM posterior step of Ho et al. in whitened coordinates, the parent's own code (which
        #    converts an x̂_0 or v̂ prediction to x̃_0 with the same relations as `sdmlib.prediction`).
        white = super().step(prediction_white, t, sample_white, generator=generator, return_dict=True)
        prev_white, x0_white = white.prev_sample, white.pred_original_sample

        # 2b. Clipping in the images' box: the posterior mean of eq. (6) is c0 x̂_0 + c_t x̃_t, linear in x̂_0, so
        #     clipping x̂_0 = S_t x̂_0^white in data space and swapping it in changes x̃_{t−1} by c0 (new − old).
        if self.config.clip_sample and not self.config.thresholding and self.config.clip_space == "data" and not self.is_identity_at(t):
            alpha_bar_t = self.alpha_bar_at(t)
            a_t, b_t = alpha_bar_t**0.5, (1 - alpha_bar_t) ** 0.5
            unclipped = convert(prediction_white[:, :n], self.config.prediction_type, "sample", sample_white, a_t, b_t)
            bound = self.config.clip_sample_range
            clipped = self._squeeze_at(self._squeeze_at(unclipped, t).clamp(-bound, bound), t, inverse=True)
            prev_white = prev_white + self._x0_coefficient(t) * (clipped - x0_white)
            x0_white = clipped

        # 3. Eq. (7): re-squeeze, x_{t−1}^sq = S_{t−1} x̃_{t−1} (S_t with resqueeze="current"). After the last step
        #    S_{t−1} = S_0: the identity under the linear schedule, so the sampler ends in data space.
        prev_sample = self._squeeze_at(prev_white, t_next)

        # 4. The whitened chain's clean signal is S_t⁻¹ x_0 (from x̃_t = √ᾱ_t S_t⁻¹ x_0 + √(1−ᾱ_t) ε): map back.
        pred_original_sample = self._squeeze_at(x0_white, t)

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
