"""Throughput of the paper's UNet on one device: training, the squeeze's share, the matmul ceiling, sampling.

    python benchmarks/gpu/throughput.py --out OUT/throughput.json            # the GPU check (CUDA, paper UNet)
    python benchmarks/gpu/throughput.py --out OUT/throughput.json --tiny     # the dry run: tiny UNet, a few steps

Measured, each in the same process (written to the JSON after each measurement, so a timeout keeps what ran):
  training    images/s of one full training step (sdmlib.train's work: add_noise_and_target, UNet forward and
              backward under autocast, gradient clipping, AdamW, EMA) for fp16 and bf16 autocast, each with and
              without channels_last and torch.compile of the UNet; achieved TFLOP/s = 3 F B / t, with F the counted
              FLOPs of one image's forward pass (benchmarks/estimate_gpu_time.py; backward ≈ 2× forward) and B the batch
  ratio       median SDM step time / median DDPM step time (diffusers' DDPMScheduler), steps alternated so that
              machine noise hits both alike
  ceiling     TFLOP/s of a long loop of n×n bf16 matrix products (2n³ each): what the device's tensor cores give
  sampling    images/s of the 50-step squeezed sampler at a large batch under autocast; TFLOP/s = F B S / t
  profile     torch.profiler over 3 eager training steps: the operator table by self device time (profile.txt
              beside the JSON) and the top operators' shares in the JSON, which say what limits a missed target

On the CPU (the dry run) fp16 autocast and torch.compile are skipped and the JSON says so: they are CUDA paths.
Timings never go into tests; tests/test_gpu_check.py checks the arithmetic below.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: estimate_gpu_time's FLOP counting
from estimate_gpu_time import forward_flops  # noqa: E402

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def training_tflops(forward_flops_per_image: float, batch_size: int, step_seconds: float) -> float:
    """Achieved TFLOP/s of a training step: forward + backward ≈ 3 forward passes of every image of the batch."""
    return 3.0 * forward_flops_per_image * batch_size / step_seconds / 1e12


def sampling_tflops(forward_flops_per_image: float, batch_size: int, steps: int, seconds: float) -> float:
    """Achieved TFLOP/s of sampling: one forward pass per image per step."""
    return forward_flops_per_image * batch_size * steps / seconds / 1e12


def matmul_tflops(n: int, iterations: int, seconds: float) -> float:
    """TFLOP/s of `iterations` products of two n×n matrices (2n³ multiply-adds counted as FLOPs each)."""
    return 2.0 * n**3 * iterations / seconds / 1e12


class Timer:
    """Wall time of a callable, synchronising the device around it (CUDA kernels run asynchronously)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def build_training_step(model_size, image_size, batch_size, precision, channels_last, compile_unet, device):
    """(sdm_step, ddpm_step): closures running one full training step with the squeezed or the plain scheduler."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from sdmlib import SqueezedDDPMScheduler
    from sdmlib.models import build_unet

    torch.manual_seed(0)
    unet = build_unet(model_size, image_size).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    unet = unet.to(memory_format=memory_format)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=cuda)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, foreach=True)
    ema.to(device)
    forward = torch.compile(unet) if compile_unet else unet
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    squeezed = SqueezedDDPMScheduler(s0=-0.3, principal_axis=[0.57, 0.59, 0.57])
    plain = DDPMScheduler()
    x0 = (torch.rand(batch_size, 3, image_size, image_size, device=device) * 2 - 1).contiguous(
        memory_format=memory_format
    )

    def step(noisy_and_target):
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch_size,), device=device)
        noisy, target = noisy_and_target(x0, noise, t)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.mse_loss(forward(noisy, t).sample.float(), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    return (
        lambda: step(squeezed.add_noise_and_target),
        lambda: step(lambda x, noise, t: (plain.add_noise(x, noise, t), noise)),
        unet,
        squeezed,
    )


def measure_training(args, device, precision, channels_last, compile_unet, flops, ratio: bool = False) -> dict:
    """Median step time of `args.steps` timed SDM steps (alternated with DDPM steps when `ratio`)."""
    timer = Timer(device)
    sdm, ddpm, _, _ = build_training_step(
        args.model, args.image_size, args.batch, precision, channels_last, compile_unet, device
    )
    start = time.perf_counter()
    for _ in range(args.warmup):  # compilation, cuDNN autotuning and the allocator's first growth happen here
        sdm()
        if ratio:
            ddpm()
    warmup_seconds = time.perf_counter() - start
    pairs = [(timer(sdm), timer(ddpm) if ratio else float("nan")) for _ in range(args.steps)]
    step_sdm = statistics.median(p[0] for p in pairs)
    result = {
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_unet,
        "batch_size": args.batch,
        "step_seconds": step_sdm,
        "images_per_second": args.batch / step_sdm,
        "tflops": training_tflops(flops, args.batch, step_sdm),
        "warmup_seconds": warmup_seconds,
    }
    if ratio:
        step_ddpm = statistics.median(p[1] for p in pairs)
        result |= {"ddpm_step_seconds": step_ddpm, "sdm_over_ddpm": step_sdm / step_ddpm}
    return result


def measure_matmul_ceiling(n: int, iterations: int, device: torch.device) -> dict:
    """bf16 n×n products in a loop, after a warm-up: the tensor-core ceiling the training TFLOP/s is judged against."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b

    def loop():
        for _ in range(iterations):
            torch.mm(a, b)

    seconds = Timer(device)(loop)
    return {"n": n, "iterations": iterations, "seconds": seconds, "tflops": matmul_tflops(n, iterations, seconds)}


def measure_sampling(args, device, precision, flops) -> dict:
    """Images/s of the squeezed DDPM pipeline (`args.sample_steps` steps, batch `args.sample_batch`) under autocast."""
    from sdmlib.models import build_unet
    from sdmlib.pipeline import SqueezedDDPMPipeline
    from sdmlib import SqueezedDDPMScheduler

    torch.manual_seed(0)
    unet = build_unet(args.model, args.image_size).to(device).eval()
    scheduler = SqueezedDDPMScheduler(s0=-0.3, principal_axis=[0.57, 0.59, 0.57])
    pipeline = SqueezedDDPMPipeline(unet=unet, scheduler=scheduler).to(device)
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device=device).manual_seed(0)
    dtype = PRECISIONS[precision]

    def sample(batch, steps):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            pipeline(batch_size=batch, num_inference_steps=steps, generator=generator, output_type="pt")

    sample(args.sample_batch, 2)  # warm-up at the timed batch size
    seconds = Timer(device)(lambda: sample(args.sample_batch, args.sample_steps))
    return {
        "precision": precision,
        "batch_size": args.sample_batch,
        "steps": args.sample_steps,
        "seconds": seconds,
        "images_per_second": args.sample_batch / seconds,
        "tflops": sampling_tflops(flops, args.sample_batch, args.sample_steps, seconds),
    }


def op_shares(events, device_time: bool, top: int = 12) -> dict:
    """The profiler's operators by self time (on the device where there is one), each with its share of the total:
    what a step spends its time on, so that a missed target says what limits it."""
    key = device_time_key(events) if device_time else "self_cpu_time_total"
    rows = [(event.key, getattr(event, key, 0.0) or 0.0, event.count) for event in events]
    total = sum(time for _, time, _ in rows) or 1.0
    rows.sort(key=lambda row: -row[1])
    top_rows = [
        {"op": name, "ms": time / 1e3, "share": time / total, "calls": calls} for name, time, calls in rows[:top]
    ]
    return {"clock": "device" if device_time else "cpu", "total_ms": total / 1e3, "top": top_rows}


def device_time_key(events) -> str:
    """The profiler's name for self device time: "self_device_time_total" since torch 2.4, "cuda" before."""
    recent = events and hasattr(events[0], "self_device_time_total")
    return "self_device_time_total" if recent else "self_cuda_time_total"


def measure_profile(args, device, precision, channels_last, out_dir: Path) -> dict:
    """torch.profiler over `args.profile_steps` eager training steps after a warm-up: the operator table by self
    time to profile.txt, the top operators with their shares into the JSON."""
    from torch.profiler import ProfilerActivity, profile

    sdm, _, _, _ = build_training_step(args.model, args.image_size, args.batch, precision, channels_last, False, device)
    for _ in range(2):
        sdm()
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.profile_steps):
            sdm()
        if cuda:
            torch.cuda.synchronize()
    events = profiler.key_averages()
    sort_by = device_time_key(events) if cuda else "self_cpu_time_total"
    (out_dir / "profile.txt").write_text(events.table(sort_by=sort_by, row_limit=30) + "\n")
    return {"precision": precision, "channels_last": channels_last, "steps": args.profile_steps,
            "batch_size": args.batch, **op_shares(events, device_time=cuda)}


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info |= {"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        info |= {"name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON file written (after every measurement)")
    parser.add_argument("--tiny", action="store_true", help="dry run: tiny UNet and sizes, any device")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    args = parser.parse_args(argv)
    # The paper's sizes, or the dry run's: every path runs, in seconds on two CPU cores.
    sizes = dict(model="tiny", batch=4, warmup=1, steps=2, sample_batch=4, sample_steps=2, matmul_n=128, matmul_iters=4,
                 profile_steps=1)
    if not args.tiny:
        sizes = dict(
            model="paper", batch=128, warmup=5, steps=20, sample_batch=1000, sample_steps=50, matmul_n=8192,
            matmul_iters=50, profile_steps=3,
        )
    for name, value in sizes.items():
        setattr(args, name, value)
    args.image_size = 32
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flops = forward_flops(args.model, args.image_size)
    result = {
        "info": device_info(device),
        "tiny": args.tiny,
        "model_size": args.model,
        "image_size": args.image_size,
        # FLOPs of one image's forward pass, keyed "model@size": project.py scales the rates to other image sizes
        "forward_flops": {f"{args.model}@{args.image_size}": flops},
        "training": [],
        "skipped": [],
        "errors": [],
    }
    for size in (32, 64):  # the paper's runs (CIFAR at 32, CelebA at 64), for the projection
        result["forward_flops"].setdefault(f"paper@{size}", forward_flops("paper", size))

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    def attempt(label, fn):
        """Run one measurement; a failure is recorded and the rest still run."""
        try:
            value = fn()
        except Exception as error:  # noqa: BLE001 - the check keeps going and reports every failure
            result["errors"].append(f"{label}: {type(error).__name__}: {error}")
            print(f"{label}: FAILED {type(error).__name__}: {error}", flush=True)
            value = None
        save()
        return value

    precisions = ["fp16", "bf16"]
    if not cuda:
        precisions = ["bf16"]
        result["skipped"].append("fp16 autocast: CUDA only (slow and unhelpful on the CPU)")
    elif not torch.cuda.is_bf16_supported():
        precisions = ["fp16"]
        result["skipped"].append("bf16: this GPU does not support it")
    compile_options = [False, True]
    if not cuda or args.no_compile:
        compile_options = [False]
        result["skipped"].append("torch.compile: " + ("CUDA only here" if not cuda else "--no-compile"))
    # Eager configurations first, the compiled ones last: compilation is the slow and risky part.
    # Both precisions before channels_last, so that a timeout during compilation still leaves one of each.
    configs = [(p, cl, c) for c in compile_options for cl in (False, True) for p in precisions]
    for precision, channels_last, compile_unet in configs:
        label = f"training {precision} channels_last={channels_last} compile={compile_unet}"
        measured = attempt(
            label,
            lambda: measure_training(args, device, precision, channels_last, compile_unet, flops),
        )
        if measured is not None:
            result["training"].append(measured)
            print(f"{label}: {measured['images_per_second']:.1f} img/s, {measured['tflops']:.2f} TFLOP/s", flush=True)
        if (precision, channels_last, compile_unet) == (precisions[0], False, False):
            # The squeeze's share, in the paper's precision (fp16 on CUDA) and eager, right after its own numbers.
            ratio = attempt(
                "sdm/ddpm ratio", lambda: measure_training(args, device, precision, False, False, flops, True)
            )
            if ratio is not None:
                result["ratio"] = ratio
                print(f"SDM/DDPM step time: {ratio['sdm_over_ddpm']:.3f}", flush=True)
            ceiling = attempt("bf16 matmul", lambda: measure_matmul_ceiling(args.matmul_n, args.matmul_iters, device))
            if ceiling is not None:
                result["matmul"] = ceiling
                print(f"bf16 matmul ceiling: {ceiling['tflops']:.2f} TFLOP/s", flush=True)
            sampling = attempt("sampling", lambda: measure_sampling(args, device, precisions[0], flops))
            if sampling is not None:
                result["sampling"] = sampling
                print(f"sampling: {sampling['images_per_second']:.1f} img/s", flush=True)
    # What a step spends its time on (eager, the first precision, channels_last as CUDA's default): last, and short.
    profiled = attempt("profile", lambda: measure_profile(args, device, precisions[0], cuda, out.parent))
    if profiled is not None:
        result["profile"] = profiled
        shares = ", ".join(f"{row['op']} {row['share']:.0%}" for row in profiled["top"][:3])
        print(f"profile ({profiled['clock']} time, {out.parent / 'profile.txt'}): {shares}", flush=True)
    if result["training"]:
        best = max(result["training"], key=lambda r: r["images_per_second"])
        result["best_training"] = best
        if "matmul" in result:
            result["fraction_of_ceiling"] = best["tflops"] / result["matmul"]["tflops"]
    save()
    return result


if __name__ == "__main__":
    main()
