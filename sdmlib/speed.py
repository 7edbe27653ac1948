"""The speed options of a training run, resolved once for the hardware before training starts.

Each option changes how fast a step runs, never which batches, noise or timesteps it sees; on the CPU every default
computes what the code computed before the options existed, bit for bit (the exact-resume test holds there):

- `mixed_precision`: "bf16" autocast needs no loss scaler (bf16 has fp32's exponent range); "fp16" does (accelerate's
  GradScaler). A precision the hardware cannot do falls back, with a logged message, before training starts.
- `tf32`: TF32 tensor-core matrix products and convolutions on CUDA (10-bit mantissa inputs, fp32 accumulation);
  a no-op on the CPU.
- `channels_last`: NHWC memory layout of the UNet's weights and inputs, which cuDNN's tensor-core convolutions want;
  "auto" = on for CUDA only (on the CPU it changes oneDNN's kernels, hence rounding, and is measured slower).
- `compile`: `torch.compile` of the network (training, and the network call of sampling); falls back to eager, with a
  logged message, where the compiler is unavailable.
- AdamW: the fused CUDA kernel on CUDA (one launch for every parameter); PyTorch's default elsewhere.
- EMA: `ForeachEMA`, diffusers' EMAModel (its state and warm-up decay) with the update as three foreach operations.
- `data_on_device`: the training set as uint8 on the device, batches gathered, scaled and flipped there
  (`DeviceImages`), the same batches as the DataLoader path.
- Sampling (evaluation) runs the network under the run's autocast precision (`sampling_autocast`); the sampler's
  arithmetic stays in fp32.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass

import torch
from diffusers.training_utils import EMAModel

# Hold the training set on the device when its uint8 bytes are below this fraction of the free device memory: the
# rest is for the model, the optimizer state and the activations of a batch.
DEVICE_DATA_FRACTION = 0.25


@dataclass(frozen=True)
class SpeedPlan:
    """The options as resolved for one device; `notes` are the fallbacks and choices worth logging."""

    mixed_precision: str
    tf32: bool
    channels_last: bool
    compile: bool
    fused_adamw: bool
    data_on_device: bool
    notes: tuple[str, ...]

    def describe(self) -> str:
        flags = (
            f"mixed precision {self.mixed_precision}, tf32 {'on' if self.tf32 else 'off'}, channels_last "
            f"{'on' if self.channels_last else 'off'}, compile {'on' if self.compile else 'off'}, AdamW "
            f"{'fused' if self.fused_adamw else 'default'}, "
            f"data {'on the device' if self.data_on_device else 'by DataLoader'}"
        )
        return "; ".join((flags, *self.notes))


def resolve_mixed_precision(
    requested: str, device: torch.device, bf16_supported: bool | None = None
) -> tuple[str, str]:
    """(precision to use, note): "auto" is fp16 on CUDA and fp32 ("no") elsewhere; bf16 on a GPU without it falls
    back to fp16; fp16 on the CPU falls back to fp32 (accelerate would silently run fp32 while recording "fp16")."""
    cuda = device.type == "cuda"
    if requested == "auto":
        return ("fp16", "") if cuda else ("no", "fp32 on CPU: fp16 autocast there is slow and unhelpful")
    if requested == "bf16" and cuda:
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        if not supported:
            return "fp16", "mixed_precision='bf16' requested but this GPU has no bf16: using fp16 (with loss scaling)"
    if requested == "fp16" and not cuda:
        return "no", f"mixed_precision='fp16' requested on {device.type}: fp16 autocast needs CUDA, using fp32 ('no')"
    return requested, ""


def compiler_unavailable(device: torch.device) -> str:
    """Why `torch.compile` cannot run on `device` ("" when it can): dynamo must support this Python, and inductor
    needs Triton on CUDA and a C++ compiler on the CPU."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile (dynamo) does not support this Python"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return "" if has_triton() else "Triton is not installed"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "no C++ compiler found for inductor's CPU kernels"
    return ""


def plan_speed(
    device: torch.device,
    *,
    mixed_precision: str,
    tf32: bool,
    channels_last: str,
    compile: bool,
    data_on_device: str,
    dataset_bytes: int,
) -> SpeedPlan:
    """Resolve the options of a run for `device` (see the module docstring); `dataset_bytes` is the training set's
    uint8 size, for `data_on_device="auto"`."""
    cuda = device.type == "cuda"
    notes = []
    precision, note = resolve_mixed_precision(mixed_precision, device)
    notes += [note] if note else []
    if tf32 and not cuda:
        notes.append("tf32 has no effect on the CPU")
    use_compile = compile
    if compile:
        reason = compiler_unavailable(device)
        if reason:
            use_compile = False
            notes.append(f"compile=true but {reason}: running the network eagerly")
    if data_on_device == "auto":
        fits = cuda and dataset_bytes < DEVICE_DATA_FRACTION * torch.cuda.mem_get_info(device)[0]
    else:
        fits = data_on_device == "on"
    return SpeedPlan(
        mixed_precision=precision,
        tf32=tf32 and cuda,
        channels_last=channels_last == "on" or (channels_last == "auto" and cuda),
        compile=use_compile,
        fused_adamw=cuda,
        data_on_device=fits,
        notes=tuple(notes),
    )


def apply_tf32(enabled: bool) -> None:
    """TF32 for CUDA matrix products and cuDNN convolutions (process-wide switches)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def adamw_implementation(fused: bool) -> dict:
    """AdamW keyword arguments: the fused kernel on CUDA; PyTorch's default (unchanged numerics) elsewhere."""
    return {"fused": True} if fused else {}


# ----------------------------------------------------------------------------------------------------------------
# EMA.


class ForeachEMA(EMAModel):
    """diffusers' EMAModel (state, warm-up decay, save/load unchanged) whose update is three foreach operations.

    The EMA with warm-up: θ̄ ← θ̄ − (1 − d_k)(θ̄ − θ), d_k = min(decay, 1 − (1 + k/inv_gamma)^(−power)) (`get_decay`).
    EMAModel's default step loops in Python over the parameters (three kernel launches each: ~400 for the paper's
    UNet); its own `foreach=True` computes θ̄ − α(θ̄ − θ) with `alpha=`, which rounds differently (one fused
    multiply-add). This step does the loop's three operations in the loop's order, on all tensors at once:
    δ = θ̄ − θ; δ ← (1 − d)·δ; θ̄ ← θ̄ − δ; so it equals the loop bit for bit (a test checks it).
    """

    @torch.no_grad()
    def step(self, parameters) -> None:
        parameters = list(parameters)
        self.optimization_step += 1
        decay = self.get_decay(self.optimization_step)
        self.cur_decay_value = decay
        trained = [(s, p) for s, p in zip(self.shadow_params, parameters) if p.requires_grad]
        frozen = [(s, p) for s, p in zip(self.shadow_params, parameters) if not p.requires_grad]
        if frozen:
            torch._foreach_copy_([s for s, _ in frozen], [p for _, p in frozen])
        if trained:
            shadow = [s for s, _ in trained]
            delta = torch._foreach_sub(shadow, [p for _, p in trained])  # θ̄ − θ
            torch._foreach_mul_(delta, 1 - decay)
            torch._foreach_sub_(shadow, delta)


# ----------------------------------------------------------------------------------------------------------------
# The training set on the device.


def dataset_bytes(dataset) -> int:
    """The uint8 size of a training set of (3, S, S) images, without loading it."""
    image = dataset.pixels(0)
    return len(dataset) * image.numel() * image.element_size()


class DeviceImages:
    """The training set as one uint8 tensor (N, 3, S, S) on the device; a batch is a gather and a scale there.

    `batch(indices)` returns exactly what the DataLoader path collates from `ImageDataset.__getitem__` for the same
    indices, moved to the device: x = u / 127.5 − 1 in float32 (the same operations, so the same bits). The flips,
    noise and timesteps are drawn afterwards by the training step, identically on both paths.
    """

    def __init__(self, dataset, device: torch.device | str):
        pixels = getattr(dataset, "images", None)
        if pixels is None or tuple(pixels.shape[-2:]) != tuple(dataset.pixels(0).shape[-2:]):
            pixels = torch.stack([dataset.pixels(i) for i in range(len(dataset))])
        self.images = pixels.to(device)  # (N, 3, S, S) uint8
        self.device = self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 in [−1, 1] for dataset indices (B,)."""
        chosen = self.images.index_select(0, indices.to(self.device, non_blocking=True))
        return chosen.to(torch.float32) / 127.5 - 1


def sampling_autocast(device: torch.device, requested: str):
    """(context, note) for sampling in the run's precision: the network under fp16 or bf16 autocast where the run
    trains so (`resolve_mixed_precision`: "auto" is fp16 on CUDA, fp32 on the CPU), a null context for fp32. The
    pipeline casts each network output back to the sample's fp32, so the sampler's updates are not rounded."""
    precision, _ = resolve_mixed_precision(requested, device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext(), ""
    return torch.autocast(device.type, dtype=dtype), f"sampling with the network under {precision} autocast"


def compile_for_sampling(pipeline, compile: bool) -> str:
    """Compile the pipeline's network in place (`nn.Module.compile`: the module and its config stay as they are,
    its calls go through torch.compile) when `compile` is set and the compiler is available; returns the note to log
    ("" when nothing was asked)."""
    if not compile:
        return ""
    reason = compiler_unavailable(pipeline.device)
    if reason:
        return f"compile=true but {reason}: sampling with the eager network"
    pipeline.unet.compile()
    return "sampling with the compiled network"
