"""The paper's runs in time, from the rates check.sh measured (throughput.json), replacing the FLOP estimates.

    python benchmarks/gpu/project.py OUT/throughput.json --out OUT/projection.json

The measured rates are turned into achieved FLOP/s (training: the fastest configuration measured; sampling: the
50-step sampler), and each run's work is counted in the same FLOPs (F = one image's forward pass of its UNet at its
image size, torch.utils.flop_counter, as benchmarks/estimate_gpu_time.py counts them):

    training   t_train  = 3 F · train_steps · batch_size / (training TFLOP/s)
    sampling   t_sample = F · (num_eval_samples + num_grid_samples) · num_inference_steps / (sampling TFLOP/s)

At the measured image size this is exactly steps × measured step time (and samples / measured images/s); at 64×64
(CelebA, Figure 2e) it assumes the same achieved FLOP/s, which a larger feature map tends to raise, not lower.
Metrics (Inception/VGG features of 10 000 images) are not counted: seconds on a GPU. Grids are those of
estimate_gpu_time.GRIDS, with runs shared between grids counted once, as one sweep folder trains them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the grids and FLOP counting
from estimate_gpu_time import forward_flops, paper_grids  # noqa: E402

from sdmlib.config import PROJECT_ROOT, TrainConfig  # noqa: E402

TARGET_RUN_SECONDS = 300.0  # issue 11: the paper's CIFAR-10 run in under 5 minutes on one H200


def achieved_rates(measured: dict) -> dict:
    """Training and sampling TFLOP/s from throughput.json: the fastest training configuration, the sampler."""
    if not measured.get("training"):
        raise ValueError("throughput JSON has no training measurement: nothing to project")
    if "sampling" not in measured:
        raise ValueError("throughput JSON has no sampling measurement: nothing to project")
    best = max(measured["training"], key=lambda r: r["tflops"])
    return {
        "training_tflops": best["tflops"],
        "training_config": {k: best[k] for k in ("precision", "channels_last", "compile")},
        "sampling_tflops": measured["sampling"]["tflops"],
    }


def run_seconds(config: TrainConfig, flops: float, rates: dict) -> dict:
    """Seconds of one run's training and sampling at the achieved rates (module docstring)."""
    train = 3 * flops * config.train_steps * config.batch_size / (rates["training_tflops"] * 1e12)
    images = config.num_eval_samples + config.num_grid_samples
    sample = flops * images * config.num_inference_steps / (rates["sampling_tflops"] * 1e12)
    return {"train": train, "sample": sample, "total": train + sample}


def flops_of(measured: dict, model_size: str, image_size: int) -> float:
    """F of `model_size` at `image_size`: recorded in the JSON by throughput.py, else counted now."""
    key = f"{model_size}@{image_size}"
    if key not in measured["forward_flops"]:
        measured["forward_flops"][key] = forward_flops(model_size, image_size)
    return measured["forward_flops"][key]


def project(measured: dict, grids=None) -> dict:
    """The projection: one CIFAR-10 run (params/cifar10.yaml) and each grid of Figure 2, in seconds and hours."""
    rates = achieved_rates(measured)
    cifar = TrainConfig.load(PROJECT_ROOT / "params" / "cifar10.yaml")
    one_run = run_seconds(cifar, flops_of(measured, cifar.model_size, cifar.image_size), rates)
    rows = []
    for name, runs, config in paper_grids() if grids is None else grids:
        per_run = run_seconds(config, flops_of(measured, config.model_size, config.image_size), rates)
        rows.append(
            {
                "grid": name,
                "runs": len(runs),
                "image_size": config.image_size,
                "seconds_per_run": per_run["total"],
                "hours": per_run["total"] * len(runs) / 3600,
            }
        )
    return {
        "measured_on": measured.get("info", {}),
        "tiny": measured.get("tiny", False),
        "rates": rates,
        "cifar10_run_seconds": one_run,
        "target_run_seconds": TARGET_RUN_SECONDS,
        "target_met": one_run["total"] <= TARGET_RUN_SECONDS,
        "grids": rows,
        "total_hours": sum(row["hours"] for row in rows),
    }


def report(projection: dict) -> str:
    rates, run = projection["rates"], projection["cifar10_run_seconds"]
    lines = [
        f"measured on {projection['measured_on'].get('name', '?')}"
        + (" (tiny dry run: not the GPU's numbers)" if projection["tiny"] else ""),
        f"achieved: training {rates['training_tflops']:.2f} TFLOP/s ({rates['training_config']}), "
        f"sampling {rates['sampling_tflops']:.2f} TFLOP/s",
        f"one CIFAR-10 run: train {run['train']:.0f} s + sample {run['sample']:.0f} s = {run['total']:.0f} s "
        f"(target {projection['target_run_seconds']:.0f} s: {'met' if projection['target_met'] else 'missed'})",
        f"{'grid':<10}{'runs':>6}{'size':>6}{'s/run':>10}{'hours':>9}",
    ]
    for row in projection["grids"]:
        lines.append(
            f"{row['grid']:<10}{row['runs']:>6}{row['image_size']:>6}{row['seconds_per_run']:>10.0f}{row['hours']:>9.2f}"
        )
    lines.append(f"{'all':<10}{sum(r['runs'] for r in projection['grids']):>6}{'':>16}{projection['total_hours']:>9.2f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("throughput", help="throughput.json written by throughput.py")
    parser.add_argument("--out", help="write the projection here (JSON)")
    args = parser.parse_args(argv)
    measured = json.loads(Path(args.throughput).read_text())
    projection = project(measured)
    print(report(projection))
    if args.out:
        Path(args.out).write_text(json.dumps(projection, indent=2) + "\n")
    return projection


if __name__ == "__main__":
    main()
