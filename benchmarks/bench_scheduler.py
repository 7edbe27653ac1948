"""How much does squeezing cost? Ratios against DDPMScheduler, measured in the same process.

    .venv/bin/python benchmarks/bench_scheduler.py [--device cuda] [--batch 128] [--size 32]

Prints, for a CIFAR-sized batch, the median time of
  - the training-side work: SqueezedDDPMScheduler.add_noise + squeeze_noise vs DDPMScheduler.add_noise,
  - one sampling step: SqueezedDDPMScheduler.step vs DDPMScheduler.step,
  - the target S_t ε by the rank-1 update vs by per-sample 3×3 matrices (the design the library avoids),
each as a ratio to its baseline. Machines are noisy; only the ratios mean something, and timings never go into tests.
"""

import argparse
import statistics
import time

import torch
from diffusers import DDPMScheduler

from sdmlib import SqueezedDDPMScheduler, squeeze_matrix


def median_times(ours, baseline, device, repeats=40, warmup=5):
    """Median seconds of each of two callables, timed alternately so that machine noise hits both alike."""

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        ours(), baseline()
    pairs = [(timed(ours), timed(baseline)) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    shape = (args.batch, 3, args.size, args.size)
    x0 = torch.rand(shape, device=device) * 2 - 1
    noise = torch.randn(shape, device=device)
    timesteps = torch.randint(0, 1000, (args.batch,), device=device)
    axis = [0.57, 0.59, 0.57]
    plain = DDPMScheduler()
    squeezed = SqueezedDDPMScheduler(s0=-0.3, principal_axis=axis)
    plain.set_timesteps(50)
    squeezed.set_timesteps(50)
    t = plain.timesteps[10]

    def squeezed_training():
        squeezed.add_noise_and_target(x0, noise, timesteps)

    # The alternative the library avoids: a table of S_t matrices, gathered per sample and applied per pixel.
    matrices = squeeze_matrix(axis, squeezed.squeeze_strengths).to(device, noise.dtype)  # (T, 3, 3)
    rows = [
        ("add_noise + target", *median_times(squeezed_training, lambda: plain.add_noise(x0, noise, timesteps), device)),
        ("step", *median_times(lambda: squeezed.step(noise, t, x0), lambda: plain.step(noise, t, x0), device)),
        (
            "squeeze_noise vs per-sample 3x3 matrices",
            *median_times(
                lambda: squeezed.squeeze_noise(noise, timesteps),
                lambda: torch.einsum("bij,bjhw->bihw", matrices[timesteps], noise),
                device,
            ),
        ),
    ]
    print(f"device={device} batch={args.batch} image={args.size}x{args.size} torch={torch.__version__}")
    print(f"{'operation':40s} {'sdmlib (ms)':>12s} {'baseline (ms)':>14s} {'ratio':>7s}")
    for name, ours, base in rows:
        print(f"{name:40s} {ours * 1e3:12.3f} {base * 1e3:14.3f} {ours / base:7.2f}")


if __name__ == "__main__":
    main()
