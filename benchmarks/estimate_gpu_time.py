"""Estimated GPU time of one sweep run and of each paper grid, from counted FLOPs (no GPU needed).

Counts the floating-point operations of the paper's UNet (one forward pass, torch.utils.flop_counter) and turns
the run's work into hours at an assumed sustained throughput. The result is an ESTIMATE, to be replaced by a
measurement (`benchmarks/bench_training.py` on the GPU) when one is made; the README labels it so.

Work of one run (TrainConfig of the grid's base file):
  training   train_steps × batch_size images × 3 forward-equivalents (forward + backward ≈ 3× forward)
  sampling   (num_eval_samples + num_grid_samples) images × num_inference_steps forward passes
  metrics    not counted (Inception/VGG feature extraction of 10 000 images is seconds on a GPU)

    python benchmarks/estimate_gpu_time.py                      # an assumed 60 TFLOP/s sustained: ~20% of an A100 fp16 peak
    python benchmarks/estimate_gpu_time.py --tflops 150         # another GPU or utilisation
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from sdmlib.config import PROJECT_ROOT
from sdmlib.models import build_unet

GRIDS = ("sweep-fig2a", "sweep-fig2bc", "sweep-fig2d", "sweep-fig2e")


def forward_flops(model_size: str, image_size: int) -> float:
    model = build_unet(model_size, image_size).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([500]))
    return float(counter.get_total_flops())


def paper_grids() -> list[tuple[str, list, object]]:
    """(grid name, its runs not already in an earlier grid, the TrainConfig of its first run) for each of GRIDS:
    runs shared between grids (the seed-0 SDM runs of 2a and 2bc) are trained once in one sweep folder."""
    from sdmlib.sweep import SweepGrid, grid_runs  # deferred: FLOP counting alone needs neither pandas nor submitit

    already: set[str] = set()
    grids = []
    for name in GRIDS:
        grid = SweepGrid.read(PROJECT_ROOT / "params" / f"{name}.yaml")
        runs = [run for run in grid_runs(grid, "outputs/sweeps/paper") if run.run_id not in already]
        already.update(run.run_id for run in runs)
        grids.append((grid.name, runs, runs[0].config))
    return grids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflops", type=float, default=60.0, help="sustained TFLOP/s assumed")
    args = parser.parse_args()
    rate = args.tflops * 1e12
    flops_cache: dict[tuple[str, int], float] = {}
    print(f"assumed sustained throughput: {args.tflops:.0f} TFLOP/s (an estimate, not a measurement)\n")
    print(f"{'grid':<14}{'runs':>6}{'GFLOP/img':>11}{'train h/run':>13}{'sample h/run':>14}{'h/run':>8}{'h/grid':>9}")
    for name, runs, config in paper_grids():
        key = (config.model_size, config.image_size)
        if key not in flops_cache:
            flops_cache[key] = forward_flops(*key)
        flops = flops_cache[key]
        train_hours = 3 * flops * config.train_steps * config.batch_size / rate / 3600
        images = config.num_eval_samples + config.num_grid_samples
        sample_hours = flops * images * config.num_inference_steps / rate / 3600
        per_run = train_hours + sample_hours
        print(
            f"{name:<14}{len(runs):>6}{flops / 1e9:>11.2f}{train_hours:>13.2f}{sample_hours:>14.2f}"
            f"{per_run:>8.2f}{per_run * len(runs):>9.1f}"
        )


if __name__ == "__main__":
    main()
