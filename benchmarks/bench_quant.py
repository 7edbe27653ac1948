"""Quantization cost: calibration-set sampling, quantization (activation calibration, optional block
reconstruction) and peak memory, per method, against the float UNet's forward pass in the same process.

    .venv/bin/python benchmarks/bench_quant.py                                 # CPU: tiny UNet, quick sizes
    .venv/bin/python benchmarks/bench_quant.py --model paper --iterations 5    # the paper UNet, a few iterations

Random weights: the cost does not depend on training. Peak memory is the process's maximum resident set (CPU)
or torch's peak allocation (CUDA). Timings never go into tests.
"""

import argparse
import resource
import time

import torch

from sdmlib.models import build_unet
from sdmlib.quant.calibration import calibration_set
from sdmlib.quant.config import METHODS, QuantConfig
from sdmlib.quant.model import quantize_unet
from sdmlib.scheduler import SqueezedDDPMScheduler


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny | small | paper")
    parser.add_argument("--calibration-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="sampler steps of the calibration trajectories")
    parser.add_argument("--iterations", type=int, default=5, help="reconstruction iterations per unit (Q-Diffusion)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    unet = build_unet(args.model, 32).to(device).eval()
    scheduler = SqueezedDDPMScheduler()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    t = torch.full((args.batch,), 500, device=device)
    with torch.no_grad():
        unet(x, t)
        start = time.perf_counter()
        unet(x, t)
        forward = time.perf_counter() - start
    print(f"{args.model} UNet on {device}: float forward, batch {args.batch}: {forward * 1e3:.0f} ms (the baseline)")
    for method in args.methods:
        config = QuantConfig(method=method, calibration_size=args.calibration_size, batch_size=args.batch,
                             num_inference_steps=args.steps, uniform_interval=max(1, args.steps // 2),
                             reconstruction_iterations=args.iterations, activation_iterations=args.iterations,
                             mse_candidates=100)
        start = time.perf_counter()
        calibration = calibration_set(unet, scheduler, config)
        sampled = time.perf_counter() - start
        start = time.perf_counter()
        model, _, report = quantize_unet(unet, config, calibration)
        quantized = time.perf_counter() - start
        with torch.no_grad():
            model(x, t)
            start = time.perf_counter()
            model(x, t)
            quant_forward = time.perf_counter() - start
        print(
            f"{method:10s} calibration set {sampled:7.1f} s  quantization{' + reconstruction' if report else ''} "
            f"{quantized:7.1f} s ({quantized / forward:6.0f} float forwards)  quantized forward "
            f"{quant_forward / forward:4.1f}× float  peak memory {peak_memory_mb(device):.0f} MB"
        )


if __name__ == "__main__":
    main()
