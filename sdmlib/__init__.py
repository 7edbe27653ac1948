"""sdmlib: Squeezed Diffusion Models (Singh, Khanna, Burgess 2025) as a small tested library.

Layers, by file:
- math (torch only): `squeeze` (eqs. 3, 9, 11, 12), `pca` (the principal axis v̂), `gaussian` (closed-form
  references for Gaussian data), `drift_study` (the exact moments of the sampler, notebook 03), `sampler_study` (the
  exact output law of any affine sampler, read off its step; notebook 05);
- diffusers: `squeezed` (`SqueezeMixin`: the squeeze and the forward process, "paper" or "exact"), `scheduler`
  (`SqueezedDDPMScheduler`, the subclass of Appendix A.1), `ddim` (`SqueezedDDIMScheduler`), `exact`
  (`SqueezedExactScheduler`, the exact posterior of the squeezed process), `timesteps` (custom schedules),
  `samplers` (the samplers by name), `models` (UNet2DModel),
  `pipeline` (`SqueezedDDPMPipeline`);
- I/O and runs: `io` (atomic writes), `data` (datasets), `metrics` (FID/IS/PR through torch-fidelity; offline, the
  Fréchet distance and precision/recall in pixel-PCA space), `config` (`TrainConfig`), `train` (training with
  accelerate), `evaluate` (sampling and metrics.json), `sweep` (grids of runs through submitit, the results table);
- `analysis` (curves over s, the quadratic fit of the optimum, the paper-vs-ours table) and `figures` (plots).
"""

import importlib

# The public names, imported on first use (PEP 562): `import sdmlib` and `python -m sdmlib.train --help` then need
# neither torch nor diffusers, which take seconds to import.
_EXPORTS = {
    "PrincipalAxis": "pca",
    "principal_axis": "pca",
    "SqueezedDDPMScheduler": "scheduler",
    "SqueezedDDIMScheduler": "ddim",
    "SqueezedExactScheduler": "exact",
    "quadratic_timesteps": "timesteps",
    **{
        name: "squeeze"
        for name in (
            "MarginalVariances",
            "SqueezeEigenvalues",
            "apply_squeeze",
            "drift",
            "inverse_squeeze_matrix",
            "marginal_covariance",
            "marginal_variances",
            "squeeze_eigenvalues",
            "squeeze_matrix",
            "squeeze_schedule",
            "unit_axis",
        )
    },
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_EXPORTS})


__version__ = "0.1.0"

__all__ = [
    "MarginalVariances",
    "PrincipalAxis",
    "SqueezeEigenvalues",
    "SqueezedDDIMScheduler",
    "SqueezedDDPMScheduler",
    "SqueezedExactScheduler",
    "apply_squeeze",
    "drift",
    "inverse_squeeze_matrix",
    "marginal_covariance",
    "marginal_variances",
    "principal_axis",
    "quadratic_timesteps",
    "squeeze_eigenvalues",
    "squeeze_matrix",
    "squeeze_schedule",
    "unit_axis",
]
