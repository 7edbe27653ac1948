"""Training and sampling throughput, squeezed (SDM) against plain DDPM, measured in the same process.

    .venv/bin/python benchmarks/bench_training.py                      # CPU: tiny UNet, batch 32
    .venv/bin/python benchmarks/bench_training.py --model paper --batch 128 --precision fp16   # a GPU, the paper's run

One training step is exactly what sdmlib.train does per step (add_noise, target, UNet forward/backward under
autocast, clipping, AdamW, EMA). The DDPM baseline is diffusers' own DDPMScheduler in the same loop; SDM steps
alternate with baseline steps so that machine noise hits both alike. Prints the median step time of each, their
ratio, images/s, and the sampling throughput of the 50-step squeezed sampler. Timings never go into tests.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from sdmlib import SqueezedDDPMScheduler
from sdmlib.models import build_unet
from sdmlib.pipeline import SqueezedDDPMPipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="paper | small | tiny (default: paper on CUDA, tiny on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp16 on CUDA")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--sample-batch", type=int, default=None, help="default: 500 on CUDA, 64 on CPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model_size = args.model or ("paper" if cuda else "tiny")
    batch = args.batch or (128 if cuda else 32)
    precision = args.precision or ("fp16" if cuda else "fp32")
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    torch.manual_seed(0)

    unet = build_unet(model_size, 32).to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True)
    ema.to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    squeezed = SqueezedDDPMScheduler(s0=-0.3, principal_axis=[0.57, 0.59, 0.57])
    plain = DDPMScheduler()
    x0 = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def training_step(noisy_and_target):
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy, target = noisy_and_target(x0, noise, t)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.mse_loss(unet(noisy, t).sample.float(), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    sdm = lambda: training_step(squeezed.add_noise_and_target)  # noqa: E731
    ddpm = lambda: training_step(lambda x, noise, t: (plain.add_noise(x, noise, t), noise))  # noqa: E731
    for _ in range(3):
        sdm(), ddpm()
    pairs = [(timed(sdm), timed(ddpm)) for _ in range(args.steps)]
    t_sdm = statistics.median(p[0] for p in pairs)
    t_ddpm = statistics.median(p[1] for p in pairs)

    pipeline = SqueezedDDPMPipeline(unet=unet.eval(), scheduler=squeezed).to(device)
    pipeline.set_progress_bar_config(disable=True)
    sample_batch = args.sample_batch or (500 if cuda else 64)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        pipeline(batch_size=min(8, sample_batch), num_inference_steps=2, generator=generator, output_type="pt")
        t_sample = timed(
            lambda: pipeline(batch_size=sample_batch, num_inference_steps=50, generator=generator, output_type="pt")
        )

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; UNet '{model_size}', batch {batch}, {precision}")
    print(f"training step, DDPM (diffusers DDPMScheduler): {t_ddpm * 1e3:8.1f} ms  {batch / t_ddpm:8.1f} img/s")
    print(f"training step, SDM  (s0 = -0.3):               {t_sdm * 1e3:8.1f} ms  {batch / t_sdm:8.1f} img/s")
    print(f"SDM / DDPM step time: {t_sdm / t_ddpm:.3f}")
    print(f"sampling, 50 steps, batch {sample_batch}: {sample_batch / t_sample:.1f} img/s")


if __name__ == "__main__":
    main()
