"""Training: eq. (4) with diffusers' UNet2DModel, accelerate, EMA, atomic checkpoints and exact resume.

    python -m sdmlib.train -f params/cifar10.yaml -p s0 -0.3              # one GPU or the CPU
    accelerate launch -m sdmlib.train -f params/cifar10.yaml -p s0 -0.3   # several GPUs / nodes

Running the same command again resumes from the last checkpoint; a finished run is not retrained; a run folder that
holds different parameters is refused. Randomness is a pure function of (seed, step): the batch order of every epoch,
the flips, the noise and the timesteps are drawn from generators seeded by the step, so a run interrupted and resumed
ends with exactly the weights of an uninterrupted one (bit for bit on the CPU).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m sdmlib.train`: parse (and answer --help) before the heavy imports below
    from sdmlib.cli import train_main

    raise SystemExit(train_main())

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import parse_flag_from_env
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .config import EVALUATION_KEYS, PROJECT_ROOT, TrainConfig
from .data import build_dataset, cached_principal_axis, dataset_fingerprint
from .io import atomic_directory, save_json, save_text
from .models import build_jit, build_unet
from .prediction import scales_at, training_loss
from .pipeline import SqueezedDDPMPipeline
from .scheduler import SqueezedDDPMScheduler
from .speed import (
    DeviceImages,
    ForeachEMA,
    SpeedPlan,
    adamw_implementation,
    apply_tf32,
    dataset_bytes,
    plan_speed,
)


def cache_dir() -> Path:
    """Where per-dataset results (principal axis, pixel PCA, FID reference statistics) are cached:
    $SDM_CACHE_DIR, else outputs/cache/ in the repository."""
    return Path(os.environ.get("SDM_CACHE_DIR") or PROJECT_ROOT / "outputs" / "cache")


# Keys that may change between invocations of the same run without changing what it trains: the bookkeeping ones,
# and every evaluation parameter (sampler, η, steps, …): each evaluation is written under its own name and
# parameters (sdmlib.evaluate), so a trained run can be evaluated again in other ways without retraining.
HARMLESS_KEYS = (
    "num_workers",
    "eval_batch_size",
    "inception_weights",
    "vgg_weights",
    "output_dir",
    "log_every",
    *EVALUATION_KEYS,
    # The speed options change how a step is computed (kernels, layout, rounding on CUDA), not the run's batches,
    # noise or model: a run started with one setting may be resumed with another (on another machine, say).
    "tf32",
    "channels_last",
    "compile",
    "data_on_device",
)


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the last checkpoint on disk is still the last good state."""


class RunFolderConflictError(ValueError):
    """Raised when a run folder already holds a run with other parameters."""


# ----------------------------------------------------------------------------------------------------------------
# The run folder.


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create the run folder and record the config; refuse a folder that holds a run with other parameters."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if config_path.exists():
        # A field added after the run was recorded holds its default there: the run was made with it.
        recorded = {**TrainConfig().to_dict(), **json.loads(config_path.read_text())}
        current = config.to_dict()
        differing = sorted(
            key
            for key in set(recorded) | set(current)
            if key not in HARMLESS_KEYS and recorded.get(key) != current.get(key)
        )
        if differing:
            details = ", ".join(f"{k}: {recorded.get(k)!r} (recorded) vs {current.get(k)!r} (now)" for k in differing)
            raise RunFolderConflictError(
                f"run folder {run_dir} holds a run with other parameters ({details}); choose another output_dir "
                f"or delete that folder"
            )
    save_json(config_path, config.to_dict())
    return run_dir


def principal_axis_for(config: TrainConfig, dataset=None, progress: bool = True) -> dict:
    """v̂ of the training set (eq. 9), computed once per dataset and cached under outputs/cache/.

    `dataset`: the training set of `config` if already built (saves loading it twice)."""
    if dataset is None:
        dataset = build_dataset(config.dataset, config.data_dir, config.image_size, train=True, augment=False)
    key = dataset_fingerprint(config.dataset, config.data_dir, config.image_size)
    return cached_principal_axis(dataset, cache_dir() / f"principal-axis-{key}.json", progress=progress)


def build_scheduler(config: TrainConfig, axis: list[float]) -> SqueezedDDPMScheduler:
    return SqueezedDDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule="linear",
        s0=config.s0,
        variant=config.variant,
        squeeze_schedule=config.squeeze_schedule,
        forward=config.forward,
        principal_axis=axis,
        resqueeze=config.resqueeze,
        clip_sample=config.clip_box != "none",
        clip_space="data" if config.clip_box == "data" else "whitened",
        initial_squeeze=config.initial_squeeze,
        prediction_type=config.prediction_type,
    )


# ----------------------------------------------------------------------------------------------------------------
# Randomness as a function of (seed, step).


def seeded_generator(seed: int, *counters: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (seed, counters…): stream 1 is the batch order, 2 the training noise, 3 the samples."""
    value = seed
    for counter in counters:
        value = (value * 1_000_003 + counter) % (2**63)
    return torch.Generator(device=device).manual_seed(value)


def batch_indices(num_items: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The dataset indices of optimisation step `step`: epoch e is a fixed permutation, cut into full batches."""
    steps_per_epoch = num_items // batch_size
    epoch, position = divmod(step, steps_per_epoch)
    permutation = torch.randperm(num_items, generator=seeded_generator(seed, 1, epoch))
    return permutation[position * batch_size : (position + 1) * batch_size]


class StepBatchSampler(torch.utils.data.Sampler):
    """Index lists for steps start, start + 1, …, stop − 1: this process's share of each step's global batch.

    Being a function of the step alone, it makes a resumed run see exactly the batches it would have seen, and lets
    a DataLoader fetch and collate them in worker processes, ahead of the training loop.
    """

    def __init__(self, num_items, batch_size, seed, start, stop, process_index=0, num_processes=1):
        self.args = (num_items, batch_size, seed)
        self.start, self.stop = start, stop
        share = batch_size // num_processes
        self.slice = slice(process_index * share, (process_index + 1) * share)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield batch_indices(*self.args, step)[self.slice].tolist()

    def __len__(self):
        return self.stop - self.start


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: safetensors for tensors, JSON for the rest, written as one directory renamed into place.


@dataclass
class TrainState:
    step: int
    loss_history: list[tuple[int, float]]
    train_seconds: float


def save_checkpoint(path: Path, model, ema: EMAModel, optimizer, lr_scheduler, accelerator, state: TrainState) -> None:
    with atomic_directory(path) as tmp:
        save_file(accelerator.unwrap_model(model).state_dict(), tmp / "model.safetensors")
        save_file(
            {str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)}, tmp / "ema.safetensors"
        )
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")  # tensors and numbers only: loads weights_only
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        meta = {
            "step": state.step,
            "loss_history": state.loss_history,
            "train_seconds": state.train_seconds,
            "lr_scheduler": lr_scheduler.state_dict(),
            "ema": {k: v for k, v in ema.state_dict().items() if k != "shadow_params"},
            "scaler": scaler,
        }
        (tmp / "state.json").write_text(json.dumps(meta))


def load_checkpoint(path: Path, model, ema: EMAModel, optimizer, lr_scheduler, accelerator) -> TrainState:
    accelerator.unwrap_model(model).load_state_dict(load_file(path / "model.safetensors"))
    shadow = load_file(path / "ema.safetensors")
    meta = json.loads((path / "state.json").read_text())
    ema.load_state_dict({**meta["ema"], "shadow_params": [shadow[str(i)] for i in range(len(shadow))]})
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    lr_scheduler.load_state_dict(meta["lr_scheduler"])
    if meta["scaler"] is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(meta["scaler"])
    return TrainState(meta["step"], [tuple(x) for x in meta["loss_history"]], meta["train_seconds"])


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    return checkpoints[-1] if checkpoints else None


def _prune_checkpoints(run_dir: Path, keep: int = 2) -> None:
    for old in sorted((run_dir / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Training.


def resolve_mixed_precision(config: TrainConfig, device: torch.device | None = None) -> str:
    """The precision a run uses on `device` (default: this process's): see `sdmlib.speed.resolve_mixed_precision`."""
    from .speed import resolve_mixed_precision as resolve

    return resolve(config.mixed_precision, device or process_state().device)[0]


def process_state() -> PartialState:
    """This process's place in the launch (device, index, count), as the Accelerator created next will see it:
    `accelerate launch --cpu` (and ACCELERATE_USE_CPU) ask for the CPU, and for gloo between CPU processes."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def finish_trackers(accelerator: Accelerator) -> None:
    """Close the loggers; unlike `Accelerator.end_training`, keep the process group (destroyed at process exit), so
    that one launched process may train several runs (a sweep, a resume) under `accelerate launch`."""
    for tracker in accelerator.trackers:
        tracker.finish()


def check_process_split(batch_size: int, num_processes: int) -> int:
    """The per-process batch; each process takes an equal share of every step's global batch."""
    if batch_size % num_processes:
        raise ValueError(
            f"batch_size={batch_size} does not divide across {num_processes} processes: choose a batch_size that is "
            f"a multiple of {num_processes}, or launch a number of processes that divides it"
        )
    return batch_size // num_processes


# ----------------------------------------------------------------------------------------------------------------
# One optimisation step, and the batches that feed it.


@dataclass
class StepParts:
    """What one optimisation step touches; `forward` is `model` or its compiled wrapper (same parameters)."""

    accelerator: Accelerator
    model: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: EMAModel
    scheduler: SqueezedDDPMScheduler
    alphas_cumprod: torch.Tensor  # ᾱ_t on the device
    channels_last: bool = False


def build_step_parts(config: TrainConfig, axis: list[float], accelerator: Accelerator, plan: SpeedPlan) -> StepParts:
    """The model (initial weights from `config.seed`), its AdamW, learning-rate schedule and EMA, and the scheduler
    of eq. (4), laid out, compiled and prepared (accelerate: device, DDP) as `plan` says."""
    torch.manual_seed(config.seed)  # the initial weights
    if config.model == "jit":
        model = build_jit(config.model_size, config.image_size, config.patch_size, config.bottleneck_dim)
    else:
        model = build_unet(config.model_size, config.image_size)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scheduler = build_scheduler(config, axis)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
        **adamw_implementation(plan.fused_adamw),
    )
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.lr_warmup_steps, config.train_steps)
    ema = ForeachEMA(
        model.parameters(),
        decay=config.ema_decay,
        use_ema_warmup=True,
        inv_gamma=config.ema_inv_gamma,
        power=config.ema_power,
        model_cls=type(model),
        model_config=model.config,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema.to(accelerator.device)
    return StepParts(
        accelerator=accelerator,
        model=model,
        forward=torch.compile(model) if plan.compile else model,  # shares the parameters of `model`
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        ema=ema,
        scheduler=scheduler,
        alphas_cumprod=scheduler.alphas_cumprod.to(accelerator.device),  # ᾱ_t, for `scales_at`
        channels_last=plan.channels_last,
    )


def training_batches(dataset, config: TrainConfig, plan: SpeedPlan, start: int, accelerator: Accelerator):
    """(step, dataset indices, x_0 on the device (B/P, 3, S, S) in [−1, 1]) for steps start … train_steps − 1, this
    process's share of each global batch. Both paths take the indices from `StepBatchSampler`, so they give the same
    batches: on the device, a gather and a scale of the uint8 set held there (`DeviceImages`); otherwise a
    DataLoader with workers and pinned memory, fetching ahead of the loop."""
    sampler = StepBatchSampler(
        len(dataset),
        config.batch_size,
        config.seed,
        start,
        config.train_steps,
        accelerator.process_index,
        accelerator.num_processes,
    )
    device = accelerator.device
    steps = range(start, config.train_steps)
    if plan.data_on_device:
        images = DeviceImages(dataset, device)
        for step, indices in zip(steps, sampler):
            yield step, indices, images.batch(torch.tensor(indices))
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=config.num_workers, pin_memory=device.type == "cuda"
    )
    for step, indices, x0 in zip(steps, sampler, loader):
        yield step, indices, x0.to(device, non_blocking=True)


def step_randomness(
    config: TrainConfig, x0: torch.Tensor, step: int, process_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flipped x_0, ε, t) of step `step` on x_0's device, from one generator seeded by (seed, 2, step, process):
    a random horizontal flip per image, the noise ε ~ N(0, I) and the timesteps t ~ U{0, …, T − 1}, drawn in
    this order (the order is part of the run's (seed, step) → batch contract)."""
    device = x0.device
    generator = seeded_generator(config.seed, 2, step, process_index, device=device)
    flip = torch.rand(x0.shape[0], 1, 1, 1, generator=generator, device=device) < 0.5
    x0 = torch.where(flip, x0.flip(-1), x0)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    timesteps = torch.randint(0, config.num_train_timesteps, (x0.shape[0],), generator=generator, device=device)
    return x0, noise, timesteps


def training_step(parts: StepParts, config: TrainConfig, x0: torch.Tensor, step: int) -> torch.Tensor:
    """One optimisation step of eq. (4) on this process's x_0 (B/P, 3, S, S); returns the loss, on the device (never
    read back here: that would synchronise the host with the device every step)."""
    accelerator = parts.accelerator
    x0, noise, timesteps = step_randomness(config, x0, step, accelerator.process_index)
    # Eq. (4): x_t from add_noise, ε^sq = S_t ε; the loss of the output read as `prediction_type`, taken in
    # `loss_space` (ε/ε: F.mse_loss against ε^sq, the paper's loss).
    noisy, eps_sq = parts.scheduler.add_noise_and_target(x0, noise, timesteps)
    if parts.channels_last:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    with accelerator.autocast():
        prediction = parts.forward(noisy, timesteps).sample
    a, b = scales_at(parts.alphas_cumprod, timesteps)
    loss = training_loss(
        prediction, x0, eps_sq, a, b, config.prediction_type, config.loss_space, config.max_loss_weight
    )
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(parts.model.parameters(), config.grad_clip)
    parts.optimizer.step()
    parts.lr_scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    parts.ema.step(parts.model.parameters())
    return loss


class BatchLog:
    """With $SDM_BATCH_LOG set to a folder, each process appends its step's dataset indices to rank<i>.jsonl there,
    each checkpoint it writes, its own and its logged losses at each log point, and at the end a SHA-256 of its
    weights: how the data-parallel test sees each process's share and final state."""

    def __init__(self, folder: Path | None, process_index: int):
        self.path = folder / f"rank{process_index}.jsonl" if folder else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_environment(cls, process_index: int) -> BatchLog:
        folder = os.environ.get("SDM_BATCH_LOG")
        return cls(Path(folder) if folder else None, process_index)

    def _write(self, record: dict) -> None:
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def record(self, step: int, indices: list[int]) -> None:
        self._write({"step": step, "indices": list(indices)})

    def checkpoint(self, step: int) -> None:
        self._write({"checkpoint": step})

    def losses(self, steps: list[int], own: torch.Tensor, logged: list[float]) -> None:
        if self.path:  # this process's own losses (read back only here), and the global ones it logged
            self._write({"loss_steps": list(steps), "own": own.tolist(), "logged": logged})

    def finish(self, model: torch.nn.Module) -> None:
        if self.path:
            digest = hashlib.sha256()
            for name, tensor in sorted(model.state_dict().items()):
                digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
            self._write({"weights_sha256": digest.hexdigest()})


def is_trained(run_dir: Path) -> bool:
    return (run_dir / "model_index.json").exists() and (run_dir / "training.json").exists()


def train(config: TrainConfig, *, progress: bool = True, stop_after_step: int | None = None) -> Path:
    """Train (or resume, or skip if finished) the run of `config`; returns the run folder.

    `stop_after_step` ends the process's work after that step's checkpoint, as an interruption would (for tests
    and for splitting a run across job allocations).
    """
    if is_trained(config.run_dir):
        prepare_run_dir(config)  # still refuses a folder that holds other parameters
        print(f"{config.run_dir}: already trained, not retraining")
        return config.run_dir
    # The data first: a run whose dataset is missing fails before it creates its run folder.
    dataset = build_dataset(config.dataset, config.data_dir, config.image_size, train=True, augment=False)
    run_dir = prepare_run_dir(config)

    processes = process_state()
    device = processes.device
    # Before any work: the per-process batch, then the speed options resolved for this hardware (fallbacks logged).
    check_process_split(config.batch_size, processes.num_processes)
    plan = plan_speed(
        device,
        mixed_precision=config.mixed_precision,
        tf32=config.tf32,
        channels_last=config.channels_last,
        compile=config.compile,
        data_on_device=config.data_on_device,
        dataset_bytes=dataset_bytes(dataset),
    )
    accelerator = Accelerator(
        mixed_precision=plan.mixed_precision, log_with="tensorboard", project_dir=str(run_dir / "logs")
    )
    apply_tf32(plan.tf32)
    main = accelerator.is_main_process
    if main:
        print(f"device: {device} ({accelerator.num_processes} process(es)); {plan.describe()}")

    axis_info = principal_axis_for(config, dataset, progress=progress and main)
    if main:
        save_json(run_dir / "principal_axis.json", axis_info)
    if len(dataset) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} exceeds the dataset's {len(dataset)} images")

    parts = build_step_parts(config, axis_info["axis"], accelerator, plan)
    model, ema, optimizer, lr_scheduler = parts.model, parts.ema, parts.optimizer, parts.lr_scheduler

    state = TrainState(step=0, loss_history=[], train_seconds=0.0)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, ema, optimizer, lr_scheduler, accelerator)
        if main:
            print(f"resuming from {checkpoint.name} (step {state.step} of {config.train_steps})")
    if main:
        accelerator.init_trackers("sdm", config={k: str(v) for k, v in config.to_dict().items()})
    debug = BatchLog.from_environment(accelerator.process_index)

    # Losses stay on the device between log points: reading one back is a host-device synchronisation.
    pending = torch.zeros(config.log_every, device=device)
    pending_steps: list[int] = []
    bar = tqdm(
        total=config.train_steps,
        initial=state.step,
        desc="training",
        disable=not (progress and main),
        unit="step",
        mininterval=2.0,
    )
    t_start = time.perf_counter()
    seconds_at_start = state.train_seconds
    images_since_log, log_timer = 0, time.perf_counter()

    def flush_losses() -> None:
        nonlocal images_since_log, log_timer
        if not pending_steps:
            return
        own = pending[: len(pending_steps)]
        # The global batch's loss: the mean over the processes of each one's share (one collective per log point,
        # never per step), so every process holds the same history and a non-finite loss stops all of them alike.
        values = accelerator.reduce(own, reduction="mean").tolist()
        debug.losses(pending_steps, own, values)
        if not all(math.isfinite(v) for v in values):
            bad = next(s for s, v in zip(pending_steps, values) if not math.isfinite(v))
            last_good = latest_checkpoint(run_dir)
            resume = (
                f"the last good checkpoint is {last_good}, from which the same command resumes"
                if last_good is not None
                else "no checkpoint was written before it, so the same command starts again from step 0"
            )
            raise NonFiniteLossError(
                f"loss became {values[pending_steps.index(bad)]} at step {bad}; {resume} "
                f"(lower learning_rate, or check the data)"
            )
        state.loss_history.extend(zip(pending_steps, values))
        if main:
            accelerator.log(
                {"train/loss": sum(values) / len(values), "train/lr": lr_scheduler.get_last_lr()[0]},
                step=pending_steps[-1],
            )
            rate = images_since_log / (time.perf_counter() - log_timer)
            bar.set_postfix(loss=f"{values[-1]:.4f}", img_per_s=f"{rate:.0f}")
        pending_steps.clear()
        images_since_log, log_timer = 0, time.perf_counter()

    model.train()
    for step, indices, x0 in training_batches(dataset, config, plan, state.step, accelerator):
        loss = training_step(parts, config, x0, step)
        debug.record(step, indices)

        pending[len(pending_steps)] = loss.detach()
        pending_steps.append(step + 1)
        images_since_log += config.batch_size
        state.step = step + 1
        bar.update(1)
        if len(pending_steps) == config.log_every:
            flush_losses()
        if state.step % config.checkpoint_every == 0 or state.step == config.train_steps:
            flush_losses()  # never checkpoint a state whose losses were not checked
            state.train_seconds = seconds_at_start + time.perf_counter() - t_start
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(
                    run_dir / "checkpoints" / f"step-{state.step:08d}",
                    model,
                    ema,
                    optimizer,
                    lr_scheduler,
                    accelerator,
                    state,
                )
                debug.checkpoint(state.step)
                _prune_checkpoints(run_dir)
                write_loss_curve(run_dir, state.loss_history)
            if stop_after_step is not None and state.step >= stop_after_step and state.step < config.train_steps:
                debug.finish(accelerator.unwrap_model(model))
                bar.close()
                finish_trackers(accelerator)
                return run_dir
    debug.finish(accelerator.unwrap_model(model))
    bar.close()
    finish_trackers(accelerator)

    if main:
        # The sampler uses the EMA weights, as the paper does.
        unet = accelerator.unwrap_model(model)
        ema.copy_to(unet.parameters())
        pipeline = SqueezedDDPMPipeline(unet=unet, scheduler=parts.scheduler)
        pipeline.save_pretrained(run_dir)
        save_json(
            run_dir / "training.json",
            {
                "steps": state.step,
                "train_seconds": state.train_seconds,
                "train_images_per_second": state.step * config.batch_size / max(state.train_seconds, 1e-9),
                "device": str(device),
                "num_processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision,
                "num_parameters": sum(p.numel() for p in unet.parameters()),
                "final_loss": state.loss_history[-1][1] if state.loss_history else None,
            },
        )
    return run_dir


def write_loss_curve(run_dir: Path, loss_history: list[tuple[int, float]]) -> None:
    """loss.csv and loss.png in the run folder (a smoothed curve over the raw points)."""
    save_text(run_dir / "loss.csv", "step,loss\n" + "".join(f"{s},{v:.6g}\n" for s, v in loss_history))
    if not loss_history:
        return
    from .figures import plot_loss_curve, save_figure

    figure = plot_loss_curve(loss_history)
    save_figure(figure, run_dir / "loss.png")
    import matplotlib.pyplot as plt

    plt.close(figure)


# ----------------------------------------------------------------------------------------------------------------
# Command line: the same parameters as the notebook, papermill style (sdmlib.cli; `python -m sdmlib.train --help`).


def parse_args(argv: list[str] | None = None):
    """(TrainConfig, options) from `-f FILE … -p NAME VALUE …`; see `sdmlib.cli`."""
    from .cli import parse_train_args

    return parse_train_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .cli import train_main

    return train_main(argv)
