"""The typed configuration of a training run: one frozen dataclass, validated once, in one place.

Papermill only warns about unknown parameters and passes any type through; YAML files in `params/` and `-p key value`
overrides all come through `TrainConfig.from_mapping`, which refuses an unknown key (naming the closest valid one), a
wrong type or an impossible value with an error that names the key, the value and what is allowed. Numbers are
numbers however they are written: YAML 1.1 (PyYAML) reads `1e-4` and `1e-08` as strings, papermill's `-p` reads
them as floats, and the converter accepts both. The resolved config is written next to the outputs of every run
(`config.json`), and `-f <run>/config.json` reads it back as the same config.

Defaults are the paper's CIFAR-10 run, as the authors' public code sets it (`docs/paper.md`, Appendix A);
the sampler and the precision/recall protocol default to the paper's text (`protocol="paper-text"`), and the grids
that reproduce the paper's figures set the authors' (`protocol: authors`, see PROTOCOLS).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .checks import one_of as _one_of
from .data import DATASETS
from .jit import check_patching
from .metrics import METRICS as METRIC_NAMES
from .prediction import PREDICTION_TYPES
from .samplers import check_sampling
from .scheduler import INITIAL_SQUEEZES, RESQUEEZE_MODES
from .squeezed import FORWARDS
from .squeeze import SCHEDULE_KINDS, VARIANTS

MODEL_SIZES = ("paper", "small", "tiny")
MODELS = ("unet", "jit")  # diffusers' UNet2DModel (the paper's) or the JiT-style transformer (sdmlib.jit)
CLIP_BOXES = ("data", "whitened", "none")

# The two readings of the paper a run can follow, each a setting of the four fields that the paper's text and the
# authors' public code (joe-singh/squeezing, squeezed_diffusion.py) resolve differently. A field given explicitly
# (not "" / -1) overrides the protocol's value; the run's name then says so (`TrainConfig.protocol_label`).
#   paper-text: eq. (7) re-squeezes with S_{t−1}; x̂_0 is clipped in the images' box [−1, 1] (eq. 6 is Ho et al.'s
#       step, whose x̂_0 is an image); sampling starts from S ε with S at the first sampling timestep, the one the
#       first step whitens with; precision/recall compares as many real images as generated (Kynkänniemi et al.).
#   authors: their code re-squeezes with S_t; diffusers' parent step clips the whitened S_t⁻¹x̂_0 (clip_sample=True);
#       the starting noise is squeezed at t = T − 1; precision/recall takes up to 50 000 training images (their
#       pr_n_real) against the generated ones. (They also pass real images as torch-fidelity's input1: the paper's
#       "precision" is our recall and vice versa; we keep torch-fidelity's orientation, see the README.)
PROTOCOLS = {
    "paper-text": {"resqueeze": "previous", "clip_box": "data", "initial_squeeze": "first_step", "prc_num_real": 0},
    "authors": {"resqueeze": "current", "clip_box": "whitened", "initial_squeeze": "t_max", "prc_num_real": 50000},
}
DEFAULT_PROTOCOL = "paper-text"
PROTOCOL_UNSET = {"resqueeze": "", "clip_box": "", "initial_squeeze": "", "prc_num_real": -1}  # "the protocol's"
# The paper's network and target keep run names as they were; any other value is appended to the name (run_name).
DEFAULT_TARGETS = {"prediction_type": "epsilon", "loss_space": "epsilon", "model": "unet"}
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
# The fields an evaluation's results depend on (sampler, steps, samples, metrics, …): they never change what a run
# trains, so a trained run may be evaluated again with other values (sdmlib.train, sdmlib.evaluate).
EVALUATION_KEYS = (
    "sampler",
    "eta",
    "num_inference_steps",
    "num_eval_samples",
    "metrics",
    "pca_components",
    "prc_num_real",
    "grid_seed",
    "num_grid_samples",
)
SWITCHES = ("auto", "on", "off")  # the speed options that "auto" turns on for CUDA

# Relative paths in a config are relative to the repository root (where pyproject.toml is), so a run means the
# same whether it is started from the repository root, from notebooks/ (JupyterLab, papermill --cwd) or elsewhere.
_PACKAGE_PARENT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else Path.cwd()


class UnknownParameterError(ValueError):
    """A parameter name the config does not have; the message names the closest valid one (difflib)."""

    def __init__(self, unknown: list[str], known):
        self.unknown, self.known = list(unknown), sorted(known)
        self.hint = closest_names(self.unknown, self.known)
        super().__init__(f"unknown parameter(s) {self.unknown}{self.hint}; allowed: {self.known}")


class TypedConfig:
    """Construction shared by the frozen config dataclasses (`TrainConfig`, `sdmlib.sweep.SweepConfig`, ...):
    from a mapping or a papermill namespace, with every key and type checked, then `validate()`."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]):
        """Build and validate a config from a mapping (YAML, papermill parameters); unknown keys are errors."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UnknownParameterError(unknown, known)
        hints = typing.get_type_hints(cls)
        converted = {name: _convert(name, value, hints[name]) for name, value in values.items()}
        config = cls(**converted)
        config.validate()
        return config

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any], names_before: set[str]):
        """The config of a papermill notebook: every name defined since `names_before` was taken.

        The notebook records `set(globals())` just before its parameters cell; the names added after it are the
        parameters cell's and those papermill injected. Taking all of them (not only known fields) is what turns a
        misspelt `-p` name, which papermill merely warns about, into an error.
        """
        values = {k: v for k, v in namespace.items() if k not in names_before and not k.startswith("_")}
        return cls.from_mapping(values)

    @classmethod
    def load(cls, *yaml_files: str | Path, **overrides: Any):
        """Defaults, updated by each YAML file in turn (yaml.safe_load), then by keyword overrides."""
        values: dict[str, Any] = {}
        for path in yaml_files:
            path = Path(path)
            if not path.is_absolute() and not path.exists():
                path = PROJECT_ROOT / path
            with open(path) as handle:
                loaded = yaml.safe_load(handle) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: a parameter file must be a mapping of names to values")
            values.update(loaded)
        values.update(overrides)
        return cls.from_mapping(values)

    def replace(self, **changes: Any):
        return type(self).from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain YAML/JSON values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:
        """Raise a ValueError naming the field, the value and what is allowed; subclasses add their checks."""


@dataclass(frozen=True)
class TrainConfig(TypedConfig):
    """Every knob of a training + sampling + evaluation run. Field comments give units and the paper's value."""

    # data
    dataset: str = "cifar10"  # one of DATASETS; "photos" is the offline set of crops from packaged photographs
    data_root: str = "data"  # where datasets live (downloaded there when a network is available)
    image_size: int = 32  # 32 for CIFAR, 64 for CelebA-64
    # squeezing (eq. 9 and Section 2)
    s0: float = 0.0  # squeeze strength; 0 is the DDPM baseline, the paper's best CIFAR-10 value is about -0.4
    variant: str = "sdm"  # "sdm" or "hdm"
    squeeze_schedule: str = "linear"  # s(t) = s0 β_t/β_max ("linear", the paper's) or s0 ("constant")
    forward: str = "paper"  # training marginal: "paper" √(1−ᾱ_t) S_t ε (authors' code) | "exact": eq. 3's Σ_t^½ ε
    # the reading of the paper (PROTOCOLS); each of the four fields after it: "" (or -1) = the protocol's value
    protocol: str = DEFAULT_PROTOCOL  # "paper-text" (eq. 7 as printed) or "authors" (their public code)
    resqueeze: str = ""  # "previous": S_{t−1}, eq. (7) | "current": S_t, the authors' code
    clip_box: str = ""  # x̂_0 clipped to [−1, 1] in "data" space, in the "whitened" chain (authors'), or "none"
    initial_squeeze: str = ""  # S of the starting noise: at the "first_step" of sampling, or at "t_max" = T − 1
    # diffusion
    num_train_timesteps: int = 1000  # T, the steps of the forward process (eq. 2)
    beta_start: float = 0.0001  # β_1 of the linear β schedule
    beta_end: float = 0.02  # β_T (= β_max of the squeeze schedule)
    # model
    model_size: str = "paper"  # "paper": UNet2D (128, 256, 512, 512) as in the authors' code; "small"/"tiny" for CPU
    model: str = "unet"  # "unet" (the paper's) or "jit": the JiT-style transformer on patches, sized by model_size
    patch_size: int = 4  # jit only: patch side p (must divide image_size); patch dimension 3p²
    bottleneck_dim: int = 0  # jit only: low-rank patch embedding 3p² → d′ → width (JiT's bottleneck); 0 = none
    # prediction target and loss (JiT's 3 × 3; epsilon/epsilon is the paper's eq. 4)
    prediction_type: str = "epsilon"  # what the network outputs: "epsilon" (ε^sq), "sample" (x_0), "v_prediction"
    loss_space: str = "epsilon"  # where the squared error is taken after converting the output (same names)
    max_loss_weight: float = 20.0  # bound on the conversion's weight where it divides by a_t or b_t (JiT's 1/0.05)
    # optimisation (the authors' code)
    seed: int = 0  # initial weights, batch order, flips, noise, timesteps and evaluation samples
    train_steps: int = 3910  # 10 epochs of CIFAR-10's 391 batches of 128, the authors' setting
    batch_size: int = 128  # images per optimisation step, over all processes
    learning_rate: float = 0.0001  # AdamW peak learning rate
    adam_beta1: float = 0.95  # AdamW β1
    adam_beta2: float = 0.999  # AdamW β2
    adam_weight_decay: float = 0.000001  # AdamW decoupled weight decay
    adam_epsilon: float = 0.00000001  # AdamW ε
    lr_warmup_steps: int = 500  # then cosine decay to 0 at train_steps
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.9999  # EMA with warm-up: decay_k = min(ema_decay, 1 − (1 + k/inv_gamma)^(−power))
    ema_inv_gamma: float = 1.0  # EMA warm-up time scale (inv_gamma above)
    ema_power: float = 0.75  # EMA warm-up exponent (power above)
    mixed_precision: str = "auto"  # "auto": fp16 on CUDA, fp32 ("no") on CPU
    num_workers: int = 4  # DataLoader workers (the path when the data is not held on the device)
    # speed (sdmlib.speed): how fast a step runs, not what it computes; the CPU defaults leave CPU runs bit for bit
    # as before
    tf32: bool = True  # TF32 matrix products and convolutions on CUDA; no effect on the CPU
    channels_last: str = "auto"  # NHWC layout of the UNet and its inputs: "on" | "off" | "auto" (on for CUDA)
    compile: bool = False  # torch.compile the network (training and sampling); eager with a logged note if unavailable
    data_on_device: str = "auto"  # training set as uint8 on the device: "on" | "off" | "auto" (CUDA, if it fits)
    # sampling and evaluation
    num_inference_steps: int = 50  # sampling steps (the paper: 50)
    sampler: str = "ddpm"  # one of sdmlib.samplers.SAMPLER_NAMES: ddpm (the paper's) | ddim | exact | exact_ddim
    eta: float = -1.0  # DDIM-style η of samplers that take one; -1 = the sampler's own (ddim 0, exact 1)
    num_eval_samples: int = 10000  # FID-10K
    eval_batch_size: int = 500  # images per sampling batch and per metric-extraction batch
    metrics: tuple[str, ...] = ("fid", "isc", "prc", "pca_fd", "pca_prc")  # a list, any of METRIC_NAMES
    pca_components: int = 64  # dimension of the offline metric's feature space
    prc_num_real: int = -1  # real images of precision/recall: 0 = as many as generated, N = up to N (authors: 50000)
    inception_weights: str = ""  # local path to torch-fidelity's Inception weights; "" = its default download
    vgg_weights: str = ""  # local path to the VGG16 weights precision/recall use; "" = default download
    num_grid_samples: int = 36  # images in the sample grid (Figure 3 uses 36)
    grid_seed: int = 1234  # fixed noise for the grid, so runs with different s0 compare image for image
    # bookkeeping
    output_dir: str = ""  # the run folder; "" = outputs/runs/<dataset>-<variant>-s0_<s0>-seed<seed>
    checkpoint_every: int = 500  # optimisation steps between checkpoints
    log_every: int = 10  # steps between loss records

    def __post_init__(self) -> None:
        """Fill the protocol's fields left unset ("" / -1) from `PROTOCOLS`; an unknown protocol is left to
        `validate` to report."""
        for name, value in PROTOCOLS.get(self.protocol, {}).items():
            if getattr(self, name) == PROTOCOL_UNSET[name]:
                object.__setattr__(self, name, value)

    def replace(self, **changes: Any):
        """A copy with `changes`; a new `protocol` resets its four fields to its own values unless they are given."""
        values = self.to_dict()
        if "protocol" in changes:
            values.update(PROTOCOL_UNSET)
        return type(self).from_mapping({**values, **changes})

    # -- validation ------------------------------------------------------------------------------------------

    def validate(self) -> None:
        _one_of("protocol", self.protocol, tuple(PROTOCOLS))
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("variant", self.variant, VARIANTS)
        _one_of("squeeze_schedule", self.squeeze_schedule, SCHEDULE_KINDS)
        _one_of("forward", self.forward, FORWARDS)
        _one_of("resqueeze", self.resqueeze, RESQUEEZE_MODES)
        _one_of("clip_box", self.clip_box, CLIP_BOXES)
        _one_of("initial_squeeze", self.initial_squeeze, INITIAL_SQUEEZES)
        if self.prc_num_real < 0:
            raise ValueError(
                f"prc_num_real must be 0 (as many real images as generated), a positive number of real images, or -1 "
                f"(the protocol's), got {self.prc_num_real!r}"
            )
        _one_of("model_size", self.model_size, MODEL_SIZES)
        _one_of("model", self.model, MODELS)
        _one_of("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _one_of("loss_space", self.loss_space, PREDICTION_TYPES)
        if not (math.isfinite(self.max_loss_weight) and self.max_loss_weight > 0):
            raise ValueError(f"max_loss_weight must be a positive finite number, got {self.max_loss_weight!r}")
        if self.model == "jit":
            check_patching(self.image_size, self.patch_size, self.bottleneck_dim)
        _one_of("mixed_precision", self.mixed_precision, MIXED_PRECISIONS)
        _one_of("channels_last", self.channels_last, SWITCHES)
        _one_of("data_on_device", self.data_on_device, SWITCHES)
        for metric in self.metrics:
            _one_of("metrics", metric, METRIC_NAMES)
        if not math.isfinite(self.s0):
            raise ValueError(f"s0 must be a finite number, got {self.s0!r}")
        for name in (
            "image_size",
            "num_train_timesteps",
            "train_steps",
            "batch_size",
            "num_inference_steps",
            "eval_batch_size",
            "pca_components",
            "checkpoint_every",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("num_eval_samples", "num_grid_samples", "num_workers", "lr_warmup_steps", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(
                f"need 0 < beta_start < beta_end < 1, got beta_start={self.beta_start!r}, beta_end={self.beta_end!r}"
            )
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be at most num_train_timesteps={self.num_train_timesteps}, "
                f"got {self.num_inference_steps}"
            )
        check_sampling(self.sampler, self.num_inference_steps, self.eta, self.num_train_timesteps)
        for name in ("learning_rate", "adam_epsilon", "grad_clip", "ema_inv_gamma", "ema_power"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
        if self.adam_weight_decay < 0:
            raise ValueError(f"adam_weight_decay must be non-negative, got {self.adam_weight_decay!r}")

    # -- derived values --------------------------------------------------------------------------------------

    @property
    def protocol_label(self) -> str:
        """The protocol and every field that overrides it: "authors", "paper-text", "authors-resqueeze_previous"."""
        preset = PROTOCOLS[self.protocol]
        overrides = [f"{name}_{getattr(self, name)}" for name in preset if getattr(self, name) != preset[name]]
        return "-".join([self.protocol, *overrides])

    @property
    def run_dir(self) -> Path:
        """The run folder, absolute; relative paths are taken from the repository root."""
        targets = {k: getattr(self, k) for k in DEFAULT_TARGETS}
        name = run_name(
            self.dataset, self.variant, self.s0, self.seed, self.protocol_label, **targets, forward=self.forward
        )
        return project_path(self.output_dir or f"outputs/runs/{name}")

    @property
    def data_dir(self) -> Path:
        return project_path(self.data_root)


def run_name(
    dataset: str,
    variant: str,
    s0: float,
    seed: int,
    protocol_label: str = DEFAULT_PROTOCOL,
    prediction_type: str = "epsilon",
    loss_space: str = "epsilon",
    model: str = "unet",
    forward: str = "paper",
) -> str:
    """The name of a run's folder: <dataset>-<variant>-s0_<s0>-seed<seed>, then -<model>-<prediction_type>-<loss_space>
    unless those are the paper's (UNet, ε/ε), then -forward_<forward> unless it is the paper's, then -<protocol_label>
    unless that is the default protocol unchanged (so the paper's runs in the default protocol keep the names they had
    before targets, forwards and protocols existed)."""
    name = f"{dataset}-{variant}-s0_{s0 + 0.0:g}-seed{seed}"  # + 0.0 turns −0.0 into 0.0
    targets = {"prediction_type": prediction_type, "loss_space": loss_space, "model": model}
    if targets != DEFAULT_TARGETS:
        name += f"-{model}-{prediction_type}-{loss_space}"
    if forward != "paper":
        name += f"-forward_{forward}"
    return name if protocol_label == DEFAULT_PROTOCOL else f"{name}-{protocol_label}"


def project_path(path: str | os.PathLike) -> Path:
    """An absolute path; a relative one is taken from the repository root, wherever the process was started."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def seeded_output_dir(output_dir: str | os.PathLike, seed: int) -> Path:
    """A derivation notebook's output folder for one seed, `<output_dir>/seed<seed>/` (created), relative paths taken
    from the repository root: `-p seed 1` does not overwrite the seed-0 results, wherever papermill was started."""
    folder = project_path(output_dir) / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def closest_names(unknown: list[str], known) -> str:
    """' (did you mean `s0`?)' for the valid names closest to the misspelt ones (difflib), or ''."""
    suggestions = [match for name in unknown for match in difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)]
    return f" (did you mean {', '.join(f'`{name}`' for name in suggestions)}?)" if suggestions else ""


# A decimal or scientific number as people write it (1e-4, 1E+3, .5, -3); not "nan", "inf" or "1_000".
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number_from_text(value: Any) -> float | int | None:
    """The number a string spells (an int when it has no point or exponent), else None."""
    if not isinstance(value, str) or not _NUMBER.fullmatch(value.strip()):
        return None
    text = value.strip()
    return int(text) if text.lstrip("+-").isdigit() else float(text)




def _convert(name: str, value: Any, hint: Any) -> Any:
    """Check a value's type against the field's annotation; accept ints for floats, lists for tuples, and numbers
    written as text (`'1e-4'`, which YAML 1.1 leaves a string) for numbers."""
    if hint in (float, int):
        value = _number_from_text(value) if _number_from_text(value) is not None else value
    if hint is bool:
        if not isinstance(value, bool):
            hint_text = ""
            if isinstance(value, str) and value.lower() in ("true", "false"):  # papermill's -p passes it as text
                hint_text = f"; papermill's command line: -p {name} {value.capitalize()} or -y '{name}: {value}'"
            raise ValueError(f"{name} must be true or false, got {value!r} ({type(value).__name__}){hint_text}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
        return value
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
        return value
    if typing.get_origin(hint) is tuple:  # tuple[T, ...]: a YAML list (or one bare value) of T
        (item_hint, _) = typing.get_args(hint)
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list of {item_hint.__name__}, got {value!r}")
        return tuple(_convert(f"{name}[{i}]", item, item_hint) for i, item in enumerate(value))
    if typing.get_origin(hint) is dict or hint is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")
        return dict(value)
    raise TypeError(f"no conversion for field {name} of type {hint}")  # a bug in this module, not in the input


__all__ = [
    "TrainConfig",
    "UnknownParameterError",
    "PROTOCOLS",
    "DEFAULT_PROTOCOL",
    "DEFAULT_TARGETS",
    "CLIP_BOXES",
    "project_path",
    "seeded_output_dir",
    "run_name",
    "TypedConfig",
    "DATASETS",
    "MODEL_SIZES",
    "MODELS",
    "MIXED_PRECISIONS",
    "SWITCHES",
    "METRIC_NAMES",
    "PROJECT_ROOT",
]
