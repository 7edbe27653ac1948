"""What makes a scheduler able to sample a squeezed model: the interface every squeezed scheduler implements.

A model trained on eq. (4) predicts squeezed noise S_t ε. Sampling it needs a start from squeezed noise S_T ε
(`initial_noise`) and, at every step, the whitening of eq. (5) before the DDPM (or DDIM, …) update and the
re-squeeze of eq. (7) after it (`step`). A plain diffusers scheduler does neither: swapped into a squeezed pipeline
it would start from unsqueezed noise and step in the wrong coordinates. So `SqueezedDDPMPipeline` accepts exactly the
schedulers that derive from `SqueezedSchedulerMixin` (a new squeezed scheduler joins by deriving from it; no list to
edit), and refuses any other with a message that says why.
"""

from __future__ import annotations


class SqueezedSchedulerMixin:
    """Marks a diffusers scheduler as squeezed: it implements `initial_noise(shape, generator, device, dtype)`,
    returning S_T ε at the first timestep of the current schedule, and a `step` that whitens and re-squeezes
    (eqs. 5–7). Derive a squeezed scheduler from this mixin first, then from the diffusers scheduler it extends."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not callable(getattr(cls, "initial_noise", None)):
            raise TypeError(f"{cls.__name__} derives from SqueezedSchedulerMixin but defines no initial_noise (S_T ε)")


def require_squeezed_scheduler(scheduler) -> None:
    """Raise a TypeError, saying why and what to do, unless `scheduler` can sample a squeezed model."""
    if isinstance(scheduler, SqueezedSchedulerMixin):
        return
    name = type(scheduler).__name__
    raise TypeError(
        f"scheduler must be a squeezed scheduler (one deriving from sdmlib.scheduler_base.SqueezedSchedulerMixin, "
        f"such as sdmlib.SqueezedDDPMScheduler), got {name}. A model trained on squeezed noise (eq. 4) must be "
        f"sampled from S_T ε and whitened and re-squeezed at every step (eqs. 5–7); {name} does neither, so its "
        f"samples would be wrong without any error. Keep the squeeze when changing schedulers, e.g. "
        f"SqueezedDDPMScheduler.from_config(pipe.scheduler.config)."
    )
