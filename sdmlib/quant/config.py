"""`QuantConfig`: every setting of one post-training quantization of a trained run, typed and validated once.

The three methods differ in their quantizers, their default calibration set and whether they split shortcuts and
reconstruct blocks (`docs/quant.md`):

| method     | weights (per output channel)      | activations (per tensor) | calibration | split | reconstruction |
| ---------- | --------------------------------- | ------------------------ | ----------- | ----- | -------------- |
| ptq4dm     | symmetric, MSE-searched clipping  | symmetric, MSE-searched  | ndtc        | off   | off            |
| qdiffusion | asymmetric, min-max               | asymmetric, min-max      | uniform     | on    | on             |
| minmax     | symmetric, abs-max                | symmetric, abs-max       | uniform     | off   | off            |

"auto" in `calibration`, `shortcut_split` and `reconstruction` means the method's own choice; anything else
overrides it (the ablations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import TypedConfig, _one_of
from ..samplers import SAMPLER_NAMES

METHODS = ("ptq4dm", "qdiffusion", "minmax")
WEIGHT_BITS = (4, 8)
ACTIVATION_BITS = (8, 16)  # 8 is the papers'; 16 isolates the weight error
CALIBRATIONS = ("ndtc", "uniform", "noised_real", "single_timestep")
NDTC_LABELLINGS = ("paper", "code")
SWITCHES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")
SAMPLERS = SAMPLER_NAMES  # sdmlib.samplers: ddpm (the run's), ddim (η = 0), exact, exact_ddim

METHOD_DEFAULTS = {
    "ptq4dm": {"calibration": "ndtc", "shortcut_split": False, "reconstruction": False},
    "qdiffusion": {"calibration": "uniform", "shortcut_split": True, "reconstruction": True},
    "minmax": {"calibration": "uniform", "shortcut_split": False, "reconstruction": False},
}


@dataclass(frozen=True)
class QuantConfig(TypedConfig):
    """One quantization setting. Field comments give the papers' values."""

    run_dir: str = ""  # the trained run folder to quantize (relative paths: from the repository root)
    output_dir: str = ""  # where the setting folders go; "" = <run_dir>/quant
    method: str = "qdiffusion"  # one of METHODS
    weight_bits: int = 8  # 4 or 8
    activation_bits: int = 8  # 8 (the papers'), or 16
    # calibration set (drawn from the full-precision model's own sampling trajectories)
    calibration: str = "auto"  # "auto" (the method's) or one of CALIBRATIONS
    calibration_size: int = 1024  # PTQ4DM's code: 1024; Q-Diffusion CIFAR-10: 20 steps × 256 = 5120
    ndtc_mean: float = 0.4  # NDTC: t ~ N(ndtc_mean·T, (ndtc_std·T)²), PTQ4DM's code: 0.4, 0.4
    ndtc_std: float = 0.4
    ndtc_labelling: str = "paper"  # "paper": x_t labelled t; "code": x_{T−1−t} labelled t, as PTQ4DM's script does
    uniform_interval: int = 5  # Q-Diffusion: every c-th step of the trajectory (c = 5 of 100 DDIM steps)
    single_timestep: int = 0  # the timestep of the "single_timestep" baseline (nearest step of the schedule)
    batch_size: int = 32  # network batch while sampling and calibrating
    mse_candidates: int = 100  # PTQ4DM: clipping ranges searched per quantizer (its code: 100)
    search_norm: float = 2.4  # PTQ4DM: the search minimises Σ|x − Q(x)|^p, p = 2.4 in its code (2: squared error)
    attention_matmuls: bool = False  # also quantize the inputs of the attention matmuls QKᵀ and AV (Q-Diffusion does)
    # Q-Diffusion's additions
    shortcut_split: str = "auto"  # "auto", "on", "off": separate quantizers for the two halves of up-block concats
    reconstruction: str = "auto"  # "auto", "on", "off": learned rounding per block, then activation step sizes
    reconstruction_iterations: int = 200  # AdaRound iterations per block (Q-Diffusion: 20 000 on a GPU)
    activation_iterations: int = 100  # step-size iterations per block after rounding (Q-Diffusion: 5000)
    reconstruction_batch_size: int = 32  # Q-Diffusion: 32
    rounding_weight: float = 0.01  # λ of the rounding regulariser (Q-Diffusion: 0.01)
    # sampling through the quantized network
    sampler: str = "ddpm"  # one of SAMPLERS
    num_inference_steps: int = 50
    num_eval_samples: int = 64  # samples drawn with the float and the quantized network from the same noise
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda": where calibration and sampling run

    def validate(self) -> None:
        _one_of("method", self.method, METHODS)
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, got {self.weight_bits!r}")
        if self.activation_bits not in ACTIVATION_BITS:
            raise ValueError(f"activation_bits must be one of {ACTIVATION_BITS}, got {self.activation_bits!r}")
        _one_of("calibration", self.calibration, ("auto",) + CALIBRATIONS)
        _one_of("ndtc_labelling", self.ndtc_labelling, NDTC_LABELLINGS)
        _one_of("shortcut_split", self.shortcut_split, SWITCHES)
        _one_of("reconstruction", self.reconstruction, SWITCHES)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("device", self.device, DEVICES)
        for name in ("calibration_size", "uniform_interval", "batch_size", "num_inference_steps",
                     "reconstruction_batch_size", "mse_candidates", "num_eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("reconstruction_iterations", "activation_iterations", "single_timestep", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.calibration_size < self.batch_size:
            raise ValueError(
                f"calibration_size must be at least batch_size={self.batch_size}, got {self.calibration_size}"
            )
        if not (math.isfinite(self.ndtc_std) and self.ndtc_std > 0 and math.isfinite(self.ndtc_mean)):
            raise ValueError(
                f"ndtc_std must be positive and ndtc_mean finite, got {self.ndtc_mean!r}, {self.ndtc_std!r}"
            )
        if not (math.isfinite(self.search_norm) and self.search_norm >= 1):
            raise ValueError(
                f"search_norm must be a number ≥ 1 (the p of the L_p clipping search), got {self.search_norm!r}"
            )
        if not (math.isfinite(self.rounding_weight) and self.rounding_weight >= 0):
            raise ValueError(f"rounding_weight must be a non-negative number, got {self.rounding_weight!r}")

    # -- the method's choices, with the overrides applied --------------------------------------------------------

    @property
    def calibration_set(self) -> str:
        return METHOD_DEFAULTS[self.method]["calibration"] if self.calibration == "auto" else self.calibration

    @property
    def splits_shortcuts(self) -> bool:
        return self._choice("shortcut_split")

    @property
    def reconstructs(self) -> bool:
        return self._choice("reconstruction")

    def _choice(self, name: str) -> bool:
        """An on/off switch: the method's own choice for "auto"."""
        value = getattr(self, name)
        return METHOD_DEFAULTS[self.method][name] if value == "auto" else value == "on"

    def setting_name(self) -> str:
        """The folder name of this setting under <run>/quant/: the choices a reader compares settings by. The
        folder records every parameter; a later call with other values of the rest is refused (`check_setting`)."""
        name = (
            f"{self.method}-w{self.weight_bits}a{self.activation_bits}-{self.calibration_set}{self.calibration_size}"
            f"-split_{'on' if self.splits_shortcuts else 'off'}"
            f"-recon_{f'{self.reconstruction_iterations}' if self.reconstructs else 'off'}"
        )
        if self.calibration_set == "ndtc" and self.ndtc_labelling == "code":
            name += "-codelabels"
        if self.method == "ptq4dm" and self.search_norm != 2.4:
            name += f"-p{self.search_norm:g}"
        if self.attention_matmuls:
            name += "-attn"
        if (self.sampler, self.num_inference_steps) != ("ddpm", 50):  # the trajectories calibrated and measured on
            name += f"-{self.sampler}{self.num_inference_steps}"
        return name
