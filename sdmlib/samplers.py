"""The samplers a trained run can be sampled with, by name: one registry for evaluation, sweeps, quantization and
the benchmarks.

Every sampler is a squeezed diffusers scheduler (`SqueezeMixin`) built from the run's own scheduler config
(`scheduler/scheduler_config.json`), so it keeps the run's squeeze, its forward process and its prediction type;
only the update between whitening and re-squeezing changes:

| name         | scheduler (module: class)                | η           | what it is                                  |
| ------------ | ---------------------------------------- | ----------- | ------------------------------------------- |
| `ddpm`       | `scheduler`: `SqueezedDDPMScheduler`     | —           | the paper's sampler (eqs. 5–7), ancestral   |
| `ddim`       | `ddim`: `SqueezedDDIMScheduler`          | 0 (any ≥ 0) | whiten, DDIM (Song et al.), re-squeeze      |
| `exact`      | `exact`: `SqueezedExactScheduler`        | 1 (0 to 1)  | the exact per-direction posterior           |
| `exact_ddim` | `exact`: `SqueezedExactScheduler`        | 0           | deterministic, from the exact marginals     |

`eta = None` (or −1 in a config) means the sampler's own η. The classes are imported when first built, so this
table costs nothing to import.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

from .checks import integer_in


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler: str  # "module:Class", imported on first use
    default_eta: float | None  # None: the step takes no η
    eta_settable: bool  # whether another η may be asked for
    description: str
    max_eta: float | None = None  # the largest η the step accepts, if bounded

    def scheduler_class(self):
        module, name = self.scheduler.split(":")
        return getattr(importlib.import_module(module), name)


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("ddpm", "sdmlib.scheduler:SqueezedDDPMScheduler", None, False, "the paper's squeezed DDPM (eqs. 5-7)"),
        Sampler("ddim", "sdmlib.ddim:SqueezedDDIMScheduler", 0.0, True, "squeezed DDIM"),
        Sampler("exact", "sdmlib.exact:SqueezedExactScheduler", 1.0, True, "exact per-direction posterior", 1.0),
        Sampler("exact_ddim", "sdmlib.exact:SqueezedExactScheduler", 0.0, False, "exact marginals, deterministic"),
    )
}
SAMPLER_NAMES = tuple(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {name!r}")
    return SAMPLERS[name]


def resolve_eta(name: str, eta: float | None) -> float | None:
    """The η a sampler runs with: its own for `eta` None or −1, else `eta` (≥ 0, for samplers that take one)."""
    sampler = get_sampler(name)
    if eta is None or eta == -1:
        return sampler.default_eta
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number ≥ 0 (or -1: the sampler's own), got {eta!r}")
    if not sampler.eta_settable and eta != sampler.default_eta:
        own = "takes no eta" if sampler.default_eta is None else f"has eta = {sampler.default_eta:g} by definition"
        settable = [s.name for s in SAMPLERS.values() if s.eta_settable]
        raise ValueError(f"eta={eta!r} was asked of sampler {name!r}, which {own}; samplers with an eta: {settable}")
    if sampler.max_eta is not None and eta > sampler.max_eta:
        raise ValueError(
            f"eta must lie in [0, {sampler.max_eta:g}] for sampler {name!r} (1 is its exact posterior), got {eta!r}"
        )
    return float(eta)


def check_sampling(name: str, num_inference_steps: int, eta: float | None, num_train_timesteps: int) -> None:
    """Every sampling setting valid, before any work starts: a clear error naming the parameter otherwise."""
    get_sampler(name)
    integer_in("num_inference_steps", num_inference_steps, 1, num_train_timesteps)
    resolve_eta(name, eta)


def build_scheduler(name: str, run_scheduler_config):
    """A fresh scheduler of sampler `name` with the run's configuration (squeeze, forward, prediction type):
    `Class.from_config(run_config)`, as diffusers users swap schedulers."""
    return get_sampler(name).scheduler_class().from_config(run_scheduler_config)


def step_kwargs(name: str, eta: float | None = None) -> dict:
    """The keyword arguments of the sampler's `step` beyond diffusers' usual ones: {"eta": η} where it has one."""
    resolved = resolve_eta(name, eta)
    return {} if resolved is None else {"eta": resolved}


def evaluation_label(name: str, num_inference_steps: int, eta: float | None = None) -> str:
    """The folder name of one evaluation: `ddim-steps20`, and `-eta0.5` where η is not the sampler's own."""
    resolved = resolve_eta(name, eta)
    label = f"{name}-steps{num_inference_steps}"
    if resolved is not None and resolved != get_sampler(name).default_eta:
        label += f"-eta{resolved:g}"
    return label
