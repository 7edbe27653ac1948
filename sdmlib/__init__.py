"""sdmlib: Squeezed Diffusion Models (Singh, Khanna, Burgess 2025) as a small tested library.

Layers, by file: `squeeze` (eqs. 3, 9, 11, 12: pure torch), `pca` (the principal axis v̂), `scheduler`
(`SqueezedDDPMScheduler`, the diffusers subclass of Appendix A.1), `gaussian` (closed-form references for Gaussian
data, used by the derivation notebooks and tests), `figures` (plots).
"""

from .pca import PrincipalAxis, principal_axis
from .scheduler import SqueezedDDPMScheduler
from .squeeze import (
    MarginalVariances,
    SqueezeEigenvalues,
    apply_squeeze,
    drift,
    inverse_squeeze_matrix,
    marginal_covariance,
    marginal_variances,
    squeeze_eigenvalues,
    squeeze_matrix,
    squeeze_schedule,
    unit_axis,
)

__version__ = "0.1.0"

__all__ = [
    "MarginalVariances",
    "PrincipalAxis",
    "SqueezeEigenvalues",
    "SqueezedDDPMScheduler",
    "apply_squeeze",
    "drift",
    "inverse_squeeze_matrix",
    "marginal_covariance",
    "marginal_variances",
    "principal_axis",
    "squeeze_eigenvalues",
    "squeeze_matrix",
    "squeeze_schedule",
    "unit_axis",
]
