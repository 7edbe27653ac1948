"""What does each sampler cost? The squeezed DDIM step against diffusers' in the same process, and images/s.

    .venv/bin/python benchmarks/bench_samplers.py [--device cuda] [--threads 1] [--steps 10 20 50] [--repeats 3]

Prints
  (a) the median time of SqueezedDDIMScheduler.step (s0 = −0.4) and of DDIMScheduler.step on a CIFAR-sized batch
      (128×3×32×32), and their ratio (the target is ≤ 2.5×, as for DDPM in bench_scheduler.py);
      and the same for the exact scheduler's step against DDPMScheduler.step;
  (b) sampling throughput, images/s, of every sampler of `sdmlib.samplers` at each number of steps, with the tiny UNet
      (`sdmlib.models.build_unet("tiny", 32)`), batch 16: the whole loop, network evaluations included.
Machines are noisy; only the ratios mean something, and timings never go into tests.
"""

import argparse
import statistics
import time

import torch
from bench_scheduler import median_times
from diffusers import DDIMScheduler, DDPMScheduler

from sdmlib import SqueezedDDIMScheduler, SqueezedDDPMScheduler, SqueezedExactScheduler
from sdmlib.models import build_unet
from sdmlib.samplers import SAMPLER_NAMES, build_scheduler, step_kwargs


@torch.no_grad()
def sample(unet, sampler, step_kwargs, batch, steps, device):
    """The pipeline's loop: start from S_T ε, then one network evaluation and one step per timestep."""
    generator = torch.Generator().manual_seed(0)
    size = unet.config.sample_size
    sampler.set_timesteps(steps)
    x = sampler.initial_noise((batch, unet.config.in_channels, size, size), generator=generator).to(device)
    for t in sampler.timesteps:
        x = sampler.step(unet(x, t).sample, t, x, generator=generator, **step_kwargs).prev_sample
    if device.type == "cuda":
        torch.cuda.synchronize()
    return x


def throughput(unet, sampler, step_kwargs, batch, steps, device, repeats):
    """Median images/s over `repeats` full sampling runs, after one warm-up run."""
    sample(unet, sampler, step_kwargs, batch, steps, device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        sample(unet, sampler, step_kwargs, batch, steps, device)
        seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=128, help="batch of the step timing (a)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--sample-batch", type=int, default=16, help="batch of the throughput runs (b)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--repeats", type=int, default=3, help="timed sampling runs per cell of (b)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")

    # (a) One step, same process, alternating.
    shape = (args.batch, 3, args.size, args.size)
    x, eps = torch.randn(shape, device=device), torch.randn(shape, device=device)
    squeezed, plain = SqueezedDDIMScheduler(s0=-0.4, principal_axis=[0.57, 0.59, 0.57]), DDIMScheduler()
    squeezed.set_timesteps(50)
    plain.set_timesteps(50)
    t = plain.timesteps[10]
    ours, base = median_times(lambda: squeezed.step(eps, t, x), lambda: plain.step(eps, t, x), device)
    print(f"\n(a) step, batch {args.batch}x3x{args.size}x{args.size}")
    print(f"{'operation':32s} {'sdmlib (ms)':>12s} {'diffusers (ms)':>15s} {'ratio':>7s}")
    print(f"{'SqueezedDDIM vs DDIM step':32s} {ours * 1e3:12.3f} {base * 1e3:15.3f} {ours / base:7.2f}")
    exact, ddpm = SqueezedExactScheduler(s0=-0.4, principal_axis=[0.57, 0.59, 0.57], forward="exact"), DDPMScheduler()
    exact.set_timesteps(50)
    ddpm.set_timesteps(50)
    generator = torch.Generator(device).manual_seed(0)
    ours, base = median_times(
        lambda: exact.step(eps, t, x, generator=generator), lambda: ddpm.step(eps, t, x, generator=generator), device
    )
    print(f"{'SqueezedExact vs DDPM step':32s} {ours * 1e3:12.3f} {base * 1e3:15.3f} {ours / base:7.2f}")

    # (b) Throughput of whole sampling runs with the tiny UNet.
    unet = build_unet("tiny", args.size).to(device).eval()
    run_scheduler = SqueezedDDPMScheduler(s0=-0.4, principal_axis=[0.57, 0.59, 0.57])
    print(f"\n(b) images/s, tiny UNet, batch {args.sample_batch}, median of {args.repeats} runs")
    print(f"{'sampler':10s}" + "".join(f"{f'{n} steps':>12s}" for n in args.steps))
    for name in SAMPLER_NAMES:
        sampler, kwargs = build_scheduler(name, run_scheduler.config), step_kwargs(name)
        rates = [throughput(unet, sampler, kwargs, args.sample_batch, n, device, args.repeats) for n in args.steps]
        print(f"{name:10s}" + "".join(f"{rate:12.2f}" for rate in rates))


if __name__ == "__main__":
    main()
