"""Quantization cost: calibration-set sampling, quantization (activation calibration, and block reconstruction for
Q-Diffusion) and peak memory, per method, against the float UNet's forward pass in the same process.

    .venv/bin/python benchmarks/bench_quant.py                                 # CPU: tiny UNet, quick sizes
    .venv/bin/python benchmarks/bench_quant.py --model paper --iterations 5    # the paper UNet, a few iterations
    .venv/bin/python benchmarks/bench_quant.py --out benchmarks/results/X.json # also write the numbers

Each method runs in a process of its own, so that its peak memory is its own (the process's maximum resident set
on the CPU, torch's peak allocation on CUDA). Random weights: the cost does not depend on training. Times are
given in float forward passes of the same batch in the same process (the median of 5), which carries across
machines better than seconds. Timings never go into tests.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

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


def median_seconds(*functions, repeats: int = 5) -> list[float]:
    """The median time of each function, the functions called in turn (so that machine noise hits all alike)."""
    for function in functions:
        function()  # warm-up
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, kept in zip(functions, times):
            start = time.perf_counter()
            function()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


def measure(method: str, args) -> dict:
    """One method's numbers, in this process."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    unet = build_unet(args.model, 32).to(device).eval()
    scheduler = SqueezedDDPMScheduler()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    t = torch.full((args.batch,), 500, device=device)
    with torch.no_grad():
        forward, = median_seconds(lambda: unet(x, t))  # before quantizing: the unit of the quantization time
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
    with torch.no_grad():  # the forward ratio from float and quantized forwards taken in turn
        float_after, quant_forward = median_seconds(lambda: unet(x, t), lambda: model(x, t))
    return {
        "method": method, "model": args.model, "device": str(device), "batch": args.batch,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "calibration_size": args.calibration_size, "reconstruction_iterations": args.iterations if report else 0,
        "reconstruction_units": len(report) - 1 if report else 0,
        "float_forward_s": forward, "calibration_set_s": sampled, "quantization_s": quantized,
        "quantization_in_forwards": quantized / forward, "quantized_forward_ratio": quant_forward / float_after,
        "peak_memory_mb": peak_memory_mb(device),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny | small | paper")
    parser.add_argument("--calibration-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="sampler steps of the calibration trajectories")
    parser.add_argument("--iterations", type=int, default=5, help="reconstruction iterations per unit (Q-Diffusion)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="", help="also write the rows as JSON here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one method
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.methods[0], args)))
        return
    rows = []
    for method in args.methods:
        child = [sys.executable, __file__, "--one", "--methods", method, "--model", args.model, "--batch",
                 str(args.batch), "--steps", str(args.steps), "--iterations", str(args.iterations),
                 "--calibration-size", str(args.calibration_size)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append(row)
        units = f" + reconstruction ({row['reconstruction_units']} units)" if row["reconstruction_units"] else ""
        print(
            f"{args.model} ({row['parameters'] / 1e6:.1f}M) {method:10s} on {row['device']}: calibration set "
            f"{row['calibration_set_s']:6.1f} s; quantization{units} {row['quantization_s']:7.1f} s = "
            f"{row['quantization_in_forwards']:6.0f} float forwards (batch {args.batch}, "
            f"{row['float_forward_s'] * 1e3:.0f} ms); quantized forward {row['quantized_forward_ratio']:.1f}x float; "
            f"peak memory {row['peak_memory_mb']:.0f} MB",
            flush=True,
        )
    if args.out:
        record = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.processor()
                  or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "arguments": vars(args), "rows": rows}
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()
