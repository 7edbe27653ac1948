"""Sampling and evaluation of a trained run: the sample grid, N generated images, metrics.json.

Everything is written into the run folder and is resumable: generated images are stored in chunks (one safetensors
file per sampling batch, written atomically), so an interrupted evaluation continues where it stopped, and a run
whose metrics.json matches its evaluation parameters is not evaluated again.

One trained run, many samplers: the paper's sampler (`sampler="ddpm"`) writes into the run folder itself, as it
always has; any other sampler (`sdmlib.samplers`: ddim, exact, exact_ddim, any η) writes its grid, samples and
metrics.json into `evaluations/<sampler>-steps<N>[-eta<η>]/` inside it (`evaluation_dir`), so evaluations never
overwrite one another and a re-run skips the finished ones. `separate=True` puts a ddpm evaluation there too
(`evaluations/ddpm-steps<N>`), which a sweep with evaluation axes does so that its points never share a folder.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from diffusers.utils import make_image_grid
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import EVALUATION_KEYS, TrainConfig
from .data import build_dataset, dataset_fingerprint
from .io import save_json, save_safetensors, write_atomically
from .metrics import PixelPCA, compute_metrics, images_to_uint8
from .pipeline import SqueezedDDPMPipeline
from .samplers import build_scheduler, evaluation_label, step_kwargs
from .speed import compile_for_sampling, sampling_autocast
from .train import cache_dir, is_trained, seeded_generator



def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pipeline(run_dir: Path, device: torch.device | None = None) -> SqueezedDDPMPipeline:
    pipeline = SqueezedDDPMPipeline.from_pretrained(run_dir)  # runs no code from the folder (see sdmlib.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device or _device())


def check_prediction_type_matches(pipeline: SqueezedDDPMPipeline, config: TrainConfig) -> None:
    """A saved run samples with the conversion it was trained for: refuse a config that asks for another one."""
    saved = pipeline.scheduler.config.prediction_type
    if saved != config.prediction_type:
        raise ValueError(
            f"prediction_type={config.prediction_type!r} was asked for, but the run in {config.run_dir} was trained "
            f"with prediction_type={saved!r} (recorded in scheduler/scheduler_config.json); ask for {saved!r}"
        )


def evaluation_dir(config: TrainConfig, separate: bool = False) -> Path:
    """Where an evaluation's grid, samples and metrics.json go: the run folder for the paper's sampler (unless
    `separate`), `evaluations/<label>` inside it for every other (`sdmlib.samplers.evaluation_label`)."""
    if config.sampler == "ddpm" and not separate:
        return config.run_dir
    return config.run_dir / "evaluations" / evaluation_label(config.sampler, config.num_inference_steps, config.eta)


def evaluation_parameters(config: TrainConfig) -> dict:
    """The parameters an evaluation's results depend on, as metrics.json records them; sampler and η only when not
    the paper's sampler, so that runs evaluated before samplers existed still match and are not evaluated again."""
    values = {k: config.to_dict()[k] for k in EVALUATION_KEYS}
    if config.sampler == "ddpm":
        del values["sampler"], values["eta"]
    return values


def with_sampler(pipeline: SqueezedDDPMPipeline, config: TrainConfig) -> SqueezedDDPMPipeline:
    """The run's pipeline with the scheduler of `config.sampler`, built from the run's own scheduler config (its
    squeeze, forward process and prediction type), as `Scheduler.from_config(pipe.scheduler.config)` does."""
    if config.sampler != "ddpm":
        pipeline.scheduler = build_scheduler(config.sampler, pipeline.scheduler.config)
    return pipeline


def sample_grid(pipeline: SqueezedDDPMPipeline, config: TrainConfig, path: Path) -> Path:
    """The grid of `num_grid_samples` images from fixed noise (CPU generator: the same noise on every machine)."""
    generator = torch.Generator().manual_seed(config.grid_seed)
    images = pipeline(
        batch_size=config.num_grid_samples,
        generator=generator,
        num_inference_steps=config.num_inference_steps,
        output_type="pil",
        **step_kwargs(config.sampler, config.eta),
    ).images
    columns = max(1, int(round(config.num_grid_samples**0.5)))
    while config.num_grid_samples % columns:
        columns -= 1
    grid = make_image_grid(images, rows=config.num_grid_samples // columns, cols=columns)
    grid = grid.resize((grid.width * 3, grid.height * 3), resample=0)  # nearest: 32×32 samples are tiny
    return write_atomically(path, lambda file: grid.save(file, format="PNG"))


def generate_samples(
    pipeline: SqueezedDDPMPipeline, config: TrainConfig, folder: Path, progress: bool = True
) -> tuple[torch.Tensor, float]:
    """`num_eval_samples` images as uint8 (N, 3, H, W), generated in resumable chunks; returns (images, seconds
    spent generating in this call)."""
    batch = config.eval_batch_size
    folder = folder / f"batch{batch}-steps{config.num_inference_steps}"
    folder.mkdir(parents=True, exist_ok=True)
    num_batches = -(-config.num_eval_samples // batch)
    device = pipeline.device
    sampler_kwargs = step_kwargs(config.sampler, config.eta)
    chunks, seconds = [], 0.0
    for index in tqdm(range(num_batches), desc="sampling", disable=not progress, unit="batch"):
        path = folder / f"{index:05d}.safetensors"
        if not path.exists():
            size = min(batch, config.num_eval_samples - index * batch)
            generator = seeded_generator(config.seed, 3, index, device=device)
            start = time.perf_counter()
            images = pipeline(
                batch_size=size,
                generator=generator,
                num_inference_steps=config.num_inference_steps,
                output_type="pt",
                **sampler_kwargs,
            ).images
            images = images_to_uint8(images * 2 - 1).cpu()  # [0, 1] → [−1, 1] → uint8; one transfer per batch
            seconds += time.perf_counter() - start
            save_safetensors(path, {"images": images})
        chunks.append(load_file(path)["images"])
    return torch.cat(chunks), seconds


def pixel_pca_for(config: TrainConfig, dataset, key: str, progress: bool = True) -> PixelPCA:
    """The offline metric's PCA basis of the training images (`key`: their fingerprint), fitted once and cached."""
    path = cache_dir() / f"pixel-pca-{key}-k{config.pca_components}.safetensors"
    if path.exists():
        return PixelPCA.from_state_dict(load_file(path))
    loader = DataLoader(dataset, batch_size=500, shuffle=False)
    batches = tqdm(loader, desc="pixel PCA", disable=not progress, leave=False)
    pca = PixelPCA.fit(batches, num_components=config.pca_components)
    save_safetensors(path, pca.state_dict())
    return pca


def prc_reference_size(config: TrainConfig, num_real: int) -> int | None:
    """How many training images form the precision/recall reference set: None (as many as generated) for
    prc_num_real = 0, else prc_num_real or the whole set if smaller, as the authors' loop over their real images."""
    return min(config.prc_num_real, num_real) if config.prc_num_real else None


def versions() -> dict[str, str]:
    import accelerate
    import diffusers
    import torch_fidelity

    from . import __version__

    return {
        "sdmlib": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "python": platform.python_version(),
    }


def evaluate_run(config: TrainConfig, *, progress: bool = True, separate: bool = False) -> dict:
    """Grid, samples and metrics for a trained run with `config.sampler`; returns (and writes) the content of
    metrics.json in `evaluation_dir(config, separate)`."""
    run_dir = config.run_dir
    if not is_trained(run_dir):
        raise RuntimeError(f"{run_dir} holds no finished training run; train it first (sdmlib.train.train)")
    evaluation = evaluation_parameters(config)
    out_dir = evaluation_dir(config, separate)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists():
        recorded = json.loads(metrics_path.read_text())
        if recorded.get("evaluation") == evaluation:
            print(f"{metrics_path}: already evaluated with these parameters")
            return recorded

    start = time.perf_counter()
    device = _device()
    pipeline = load_pipeline(run_dir, device)
    check_prediction_type_matches(pipeline, config)
    pipeline = with_sampler(pipeline, config)
    note = compile_for_sampling(pipeline, config.compile)
    autocast, precision_note = sampling_autocast(device, config.mixed_precision)
    for line in (note, precision_note):
        if line:
            print(line)
    with autocast:
        sample_grid(pipeline, config, out_dir / "samples_grid.png")
        samples, sampling_seconds = generate_samples(pipeline, config, out_dir / "samples", progress)

    real = build_dataset(config.dataset, config.data_dir, config.image_size, train=True, augment=False)
    key = dataset_fingerprint(config.dataset, config.data_dir, config.image_size)
    uses_pca = any(name in config.metrics for name in ("pca_fd", "pca_prc"))
    pca = pixel_pca_for(config, real, key, progress) if uses_pca else None
    values = compute_metrics(
        samples,
        real,
        metrics=config.metrics,
        cache_dir=cache_dir() / "torch-fidelity",
        reference_name=f"train-{key}",
        pca=pca,
        inception_weights=config.inception_weights or None,
        vgg_weights=config.vgg_weights or None,
        batch_size=config.eval_batch_size,
        device=device,
        prc_num_real=prc_reference_size(config, len(real)),
    )
    for name, reason in values.get("unavailable", {}).items():
        print(f"metric {name} unavailable: {reason}")

    training = json.loads((run_dir / "training.json").read_text())
    result = {
        "metrics": values,
        "evaluation": evaluation,
        "parameters": config.to_dict(),
        "principal_axis": json.loads((run_dir / "principal_axis.json").read_text()),
        "training": training,
        "sampling": {
            "device": str(device),
            "seconds": sampling_seconds,
            "images_per_second": (len(samples) / sampling_seconds) if sampling_seconds else None,
            "num_inference_steps": config.num_inference_steps,
            "sampler": config.sampler,
            "scheduler": type(pipeline.scheduler).__name__,
            "step_kwargs": step_kwargs(config.sampler, config.eta),
        },
        "wall_seconds": {"training": training["train_seconds"], "evaluation": time.perf_counter() - start},
        "versions": versions(),
    }
    save_json(metrics_path, result)
    return result
