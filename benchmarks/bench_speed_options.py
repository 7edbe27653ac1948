"""Each speed option of a training run off and on, timed in the same process (ratios), on this machine's device.

    .venv/bin/python benchmarks/bench_speed_options.py                       # CPU: tiny UNet, batch 32, 32 px
    .venv/bin/python benchmarks/bench_speed_options.py --compile             # add torch.compile (minutes to compile)
    python benchmarks/bench_speed_options.py --model paper --batch 128       # a GPU

A training step is `sdmlib.train.training_step`, the step a run takes (squeeze, UNet under autocast, clipping,
AdamW, EMA), built by `sdmlib.train.build_step_parts` from the resolved options (`sdmlib.speed.plan_speed`). The
variants run in rounds, one block of steps each per round, so that load on the machine hits them alike; the median
step time over all blocks is reported. The EMA update, AdamW's step and the batch fetch are also timed alone. Prints
a table and, with --json, writes it. Timings never go into tests.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers.training_utils import EMAModel

import sdmlib.train as training
from sdmlib.config import TrainConfig
from sdmlib.speed import DeviceImages, ForeachEMA, adamw_implementation, plan_speed

AXIS = [0.57, 0.59, 0.57]


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    synchronise(device)
    start = time.perf_counter()
    fn()
    synchronise(device)
    return time.perf_counter() - start


class RandomImages(torch.utils.data.Dataset):
    """A uint8 training set in memory with `ImageDataset`'s interface (pixels, __getitem__ in [−1, 1])."""

    def __init__(self, count, size):
        self.images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8)

    def __len__(self):
        return len(self.images)

    def pixels(self, index):
        return self.images[index]

    def __getitem__(self, index):
        return self.pixels(index).to(torch.float32) / 127.5 - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="tiny", help="paper | small | tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compiles first: slow)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    config = TrainConfig.from_mapping(
        {"model_size": args.model, "image_size": args.size, "batch_size": args.batch, "s0": -0.3, "dataset": "folder"}
    )
    base = {"mixed_precision": "fp16" if cuda else "no", "tf32": False, "channels_last": "off", "compile": False}
    variants = {
        "baseline": {},
        "channels_last": {"channels_last": "on"},
        "bf16": {"mixed_precision": "bf16"},
        **({"tf32": {"tf32": True}} if cuda else {}),
        **({"compile": {"compile": True}} if args.compile else {}),
    }
    x0 = torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1

    def build(options):
        AcceleratorState._reset_state(reset_partial_state=True)
        plan = plan_speed(device, **{**base, **options}, data_on_device="off", dataset_bytes=0)
        training.apply_tf32(plan.tf32)
        accelerator = Accelerator(mixed_precision=plan.mixed_precision, cpu=not cuda)
        return training.build_step_parts(config, AXIS, accelerator, plan), plan

    times = {name: [] for name in variants}
    notes = {}
    for round_index in range(args.rounds):
        for name, options in variants.items():
            parts, plan = build(options)
            notes[name] = plan.describe()
            for warm in range(2 if round_index == 0 or name == "compile" else 1):
                training.training_step(parts, config, x0, warm)
            times[name] += [
                timed(lambda: training.training_step(parts, config, x0, 2), device) for _ in range(args.steps)
            ]
    step_ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}

    # The EMA update and AdamW's step alone, on the same network's parameters.
    parts, _ = build({})
    params = list(parts.model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    alone = {}
    for label, ema in (("ema loop (EMAModel)", EMAModel(params)), ("ema foreach (ForeachEMA)", ForeachEMA(params))):
        ema.to(device)
        ema.step(params)
        alone[label] = 1e3 * statistics.median(timed(lambda: ema.step(params), device) for _ in range(20))
    for label, fused in (("adamw default", False), ("adamw fused", True)):
        optimizer = torch.optim.AdamW(params, lr=1e-4, **adamw_implementation(fused))
        optimizer.step()
        alone[label] = 1e3 * statistics.median(timed(optimizer.step, device) for _ in range(20))

    # A batch of the training set: DataLoader (per-image __getitem__ + collate) against a gather on the device.
    dataset = RandomImages(2048, args.size)
    indices = training.batch_indices(len(dataset), args.batch, 0, 0).tolist()
    loader_batch = lambda: torch.utils.data.default_collate([dataset[i] for i in indices]).to(device)  # noqa: E731
    images = DeviceImages(dataset, device)
    alone["batch by DataLoader path"] = 1e3 * statistics.median(timed(loader_batch, device) for _ in range(20))
    alone["batch on the device"] = 1e3 * statistics.median(
        timed(lambda: images.batch(torch.tensor(indices)), device) for _ in range(20)
    )

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; UNet '{args.model}', batch {args.batch}, {args.size} px")
    print("training step (median ms; ratio to baseline):")
    for variant, ms in step_ms.items():
        print(f"  {variant:16s} {ms:9.1f} ms   x{step_ms['baseline'] / ms:5.2f} speed   [{notes[variant]}]")
    print("alone (median ms):")
    for label, ms in alone.items():
        print(f"  {label:28s} {ms:9.3f} ms")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"device": name, "args": vars(args) | {"json": str(args.json)}, "step_ms": step_ms, "alone_ms": alone},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
