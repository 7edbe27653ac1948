"""Quantize one trained run for one setting and measure it; everything goes to <run>/quant/<setting>/.

Written there: `quantizer.safetensors` + `quantizer.json` (the quantized model, loadable without recalibrating),
`metrics.json` (full-precision and quantized metrics, the per-timestep error, the sample distance, timings) and
`grid_fp.png` / `grid_quant.png`. A setting whose metrics.json exists is skipped; a setting whose quantizer was
saved but not yet measured is loaded rather than recalibrated. Full-precision samples are shared by all settings
of a run (`<run>/quant/fp-samples-*.safetensors`).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import torch
from diffusers.utils import make_image_grid
from safetensors.torch import load_file

from ..config import TrainConfig, project_path
from ..io import save_json, save_safetensors, write_atomically
from ..metrics import images_to_uint8
from .calibration import calibration_set
from .config import QuantConfig
from .measure import sample, sample_distance, timestep_errors
from .model import quantize_unet
from .sampling import build_sampler
from .state import RECORD_FILE, STATE_FILE, load_quant_state, save_quant_state

QUANT_FOLDER = "quant"


def check_run(config: QuantConfig) -> Path:
    """The run folder, after checking that it holds a trained model (before any work starts)."""
    from ..train import is_trained

    if not config.run_dir:
        raise ValueError("run_dir must name a trained run folder, got ''")
    run_dir = project_path(config.run_dir)
    if not is_trained(run_dir):
        raise ValueError(
            f"run_dir={config.run_dir!r} holds no trained model (no model_index.json and training.json in {run_dir}); "
            f"train it first (notebooks/train.ipynb or python -m sdmlib.train)"
        )
    return run_dir


def quant_root(config: QuantConfig) -> Path:
    """The folder holding this run's setting folders: output_dir, or <run_dir>/quant by default."""
    return project_path(config.output_dir) if config.output_dir else check_run(config) / QUANT_FOLDER


def setting_folder(config: QuantConfig) -> Path:
    return quant_root(config) / config.setting_name()


PLACE_FIELDS = ("run_dir", "output_dir", "device")  # where a setting lives and runs, not what it is


def check_setting(folder: Path, recorded: dict, config: QuantConfig) -> None:
    """Refuse to reuse a setting folder made with other parameters (the name holds only the main choices): a
    re-run must skip only work that is the same, never hand back results of another calibration or sampler."""
    wanted = config.to_dict()
    # Fields added since the folder was written count as their defaults, so older folders stay usable.
    defaults = QuantConfig().to_dict()
    differ = {
        name: (recorded.get(name, defaults[name]), value)
        for name, value in wanted.items()
        if name not in PLACE_FIELDS and recorded.get(name, defaults[name]) != value
    }
    if differ:
        listed = ", ".join(f"{name}={old!r} there, {new!r} now" for name, (old, new) in differ.items())
        raise ValueError(
            f"the setting folder {folder} was made with other parameters ({listed}); pass another output_dir, "
            f"or delete the folder to redo it"
        )


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _grid(images: torch.Tensor, path: Path) -> None:
    from torchvision.transforms.functional import to_pil_image

    pictures = [to_pil_image(image) for image in images_to_uint8(images)]
    columns = max(1, int(len(pictures) ** 0.5))
    rows = len(pictures) // columns
    grid = make_image_grid(pictures[: rows * columns], rows=rows, cols=columns)
    grid = grid.resize((grid.width * 3, grid.height * 3), resample=0)
    write_atomically(path, lambda file: grid.save(file, format="PNG"))


def _metrics(images: torch.Tensor, train_config: TrainConfig, real, key: str) -> dict:
    from ..evaluate import pixel_pca_for
    from ..metrics import compute_metrics
    from ..train import cache_dir

    # FID/IS/PR only where their weights can be had (given locally, or a GPU machine that can download them):
    # offline, torch-fidelity's download attempt would only cost a timeout per call.
    has_inception = bool(train_config.inception_weights) or torch.cuda.is_available()
    has_vgg = bool(train_config.vgg_weights) or torch.cuda.is_available()
    allowed = {"pca_fd": True, "pca_prc": True, "fid": has_inception, "isc": has_inception, "prc": has_vgg}
    names = tuple(name for name in train_config.metrics if allowed.get(name, False))
    uses_pca = any(name in names for name in ("pca_fd", "pca_prc"))
    return compute_metrics(
        images_to_uint8(images), real, metrics=names, cache_dir=cache_dir() / "torch-fidelity",
        reference_name=f"train-{key}", pca=pixel_pca_for(train_config, real, key, False) if uses_pca else None,
        inception_weights=train_config.inception_weights or None, vgg_weights=train_config.vgg_weights or None,
        batch_size=train_config.eval_batch_size,
    )


def quantize_run(config: QuantConfig, progress: bool = False) -> dict:
    """Quantize the run `config.run_dir` with `config`, measure it, write <run>/quant/<setting>/; returns metrics."""
    from ..data import build_dataset, dataset_fingerprint
    from ..evaluate import load_pipeline

    check_run(config)
    folder = setting_folder(config)
    metrics_path = folder / "metrics.json"
    if metrics_path.exists():
        finished = json.loads(metrics_path.read_text())
        check_setting(folder, finished["parameters"], config)
        print(f"{folder}: finished, skipped")
        return finished
    run_dir = check_run(config)
    train_config = TrainConfig.from_mapping(json.loads((run_dir / "config.json").read_text()))
    pipeline = load_pipeline(run_dir, run_device(config))
    unet, run_scheduler = pipeline.unet.eval(), pipeline.scheduler
    sampler = build_sampler(config.sampler, run_scheduler)
    real = None
    if config.calibration_set == "noised_real" or any(m in train_config.metrics for m in ("pca_fd", "pca_prc")):
        real = build_dataset(train_config.dataset, train_config.data_dir, train_config.image_size, train=True)

    timings = {}
    if (folder / STATE_FILE).exists() and (folder / RECORD_FILE).exists():
        check_setting(folder, json.loads((folder / RECORD_FILE).read_text())["config"], config)
        model, _ = load_quant_state(folder, unet)
        report = {"loaded": True}
    else:
        start = time.perf_counter()
        calibration = calibration_set(unet, run_scheduler, config, real_images=real)
        timings["calibration_set"] = time.perf_counter() - start
        start = time.perf_counter()
        model, splits, report = quantize_unet(unet, config, calibration, progress=progress)
        timings["quantization"] = time.perf_counter() - start
        save_quant_state(folder, model, unet, config, splits)

    start = time.perf_counter()
    errors = timestep_errors(unet, model, sampler, min(config.num_eval_samples, config.batch_size),
                             config.num_inference_steps, config.seed + 10, config.batch_size)
    fp_path = quant_root(config) / (
        f"fp-samples-{config.sampler}-{config.num_inference_steps}-{config.num_eval_samples}-seed{config.seed}.safetensors"
    )
    if fp_path.exists():
        fp_images = load_file(fp_path)["images"]
    else:
        fp_images = sample(unet, sampler, config.num_eval_samples, config.num_inference_steps, config.seed,
                           config.batch_size)
        save_safetensors(fp_path, {"images": fp_images})
    quant_images = sample(model, sampler, config.num_eval_samples, config.num_inference_steps, config.seed,
                          config.batch_size)
    timings["measurement"] = time.perf_counter() - start
    _grid(fp_images[:16], folder / "grid_fp.png")
    _grid(quant_images[:16], folder / "grid_quant.png")

    metrics = {"full_precision": {}, "quantized": {}}
    if real is not None:
        key = dataset_fingerprint(train_config.dataset, train_config.data_dir, train_config.image_size)
        metrics = {"full_precision": _metrics(fp_images, train_config, real, key),
                   "quantized": _metrics(quant_images, train_config, real, key)}
    result = {
        "setting": config.setting_name(),
        "parameters": config.to_dict(),
        "run": {"s0": train_config.s0, "variant": train_config.variant, "dataset": train_config.dataset},
        "metrics": metrics,
        "timestep_relative_error": {str(t): e for t, e in errors.items()},
        "mean_relative_error": sum(errors.values()) / len(errors),
        "sample_distance": sample_distance(quant_images, fp_images),
        "reconstruction": report,
        "seconds": timings,
        "peak_memory_mb": _peak_memory_mb(),
    }
    save_json(metrics_path, result)
    return result


SPLIT_FILE = "shortcut_split.json"


def run_device(config: QuantConfig) -> torch.device:
    """Where calibration, quantization and sampling run: `config.device` ("auto": CUDA when available)."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")


def shortcut_report(config: QuantConfig, max_samples: int = 64) -> dict[str, dict]:
    """Shortcut splitting on the run's trained UNet with this setting's quantizers (`shortcut.split_errors`):
    per split layer, the ranges of h and skip and the layer's output error with one quantizer and split, on a
    uniform calibration set of at most `max_samples` samples. Written to <setting>/shortcut_split.json; read
    back on a re-run."""
    from ..evaluate import load_pipeline
    from .shortcut import concat_splits, split_errors

    path = setting_folder(config) / SPLIT_FILE
    if path.exists():
        return json.loads(path.read_text())
    device = run_device(config)
    pipeline = load_pipeline(check_run(config), device)
    unet = pipeline.unet.eval()
    size = min(config.calibration_size, max_samples)
    small = config.replace(calibration="uniform", calibration_size=size, batch_size=min(config.batch_size, size),
                           uniform_interval=max(1, config.num_inference_steps // max(1, min(size, 10))))
    calibration = calibration_set(unet, pipeline.scheduler, small)  # kept on the host
    batches = [(x.to(device), t.to(device)) for x, t in calibration.batches(small.batch_size)]
    splits = concat_splits(unet, *batches[0])
    report = split_errors(unet, splits, batches, config)
    save_json(path, report)
    return report


def load_settings(config: QuantConfig) -> dict[str, dict]:
    """{setting name: metrics.json} of every finished setting in the quant folder of `config`."""
    folder = quant_root(config)
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))}
