"""The table check.sh prints last: each step's status and seconds, and its key numbers, from OUT_DIR's files.

    python benchmarks/gpu/summary.py OUT_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def key_numbers(out: Path) -> dict[str, str]:
    """step name -> its key numbers as one short text ('' where the step left nothing to read)."""
    numbers: dict[str, str] = {}
    installed = out / "installed.txt"
    if installed.exists():
        names = [line.split("==")[0] for line in installed.read_text().split()]
        numbers["install"] = f"{len(names)} added" + (": " + ", ".join(names[:8]) if names else "")
        numbers["install"] += " …" if len(names) > 8 else ""
    junit = out / "pytest-cuda.xml"
    if junit.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        numbers["cuda-tests"] = (
            f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
        )
    throughput = read_json(out / "throughput.json")
    if throughput:
        parts = [
            f"{r['precision']}{'+cl' if r['channels_last'] else ''}{'+compile' if r['compile'] else ''} "
            f"{r['images_per_second']:.0f} img/s"
            for r in throughput.get("training", [])
        ]
        if "ratio" in throughput:
            parts.append(f"SDM/DDPM {throughput['ratio']['sdm_over_ddpm']:.3f}")
        if "best_training" in throughput:
            parts.append(f"best {throughput['best_training']['tflops']:.1f} TFLOP/s")
        if "matmul" in throughput:
            parts.append(f"bf16 matmul {throughput['matmul']['tflops']:.1f} TFLOP/s")
        if "fraction_of_ceiling" in throughput:
            parts.append(f"{100 * throughput['fraction_of_ceiling']:.0f}% of it")
        if "sampling" in throughput:
            parts.append(f"sampling {throughput['sampling']['images_per_second']:.0f} img/s")
        if throughput.get("profile", {}).get("top"):
            top = throughput["profile"]["top"][0]
            parts.append(f"top op {top['op']} {100 * top['share']:.0f}% of {throughput['profile']['clock']} time")
        parts += [f"skipped {s}" for s in throughput.get("skipped", [])]
        parts += [f"ERROR {e}" for e in throughput.get("errors", [])]
        numbers["throughput"] = "; ".join(parts)
    metrics = read_json(out / "run" / "metrics.json")
    if metrics:
        training, sampling = metrics.get("training", {}), metrics.get("sampling", {})
        pca_fd = metrics.get("metrics", {}).get("pca_fd")
        pca_fd = f"{pca_fd:.4g}" if isinstance(pca_fd, (int, float)) else pca_fd
        numbers["train"] = (
            f"{training.get('steps')} steps, {training.get('train_images_per_second', 0):.0f} img/s training, "
            f"{sampling.get('images_per_second') or 0:.0f} img/s sampling, pca_fd {pca_fd}"
        )
    projection = read_json(out / "projection.json")
    if projection:
        run = projection["cifar10_run_seconds"]
        numbers["project"] = (
            f"CIFAR-10 run {run['total']:.0f} s (train {run['train']:.0f} + sample {run['sample']:.0f}; "
            f"target {projection['target_run_seconds']:.0f} s {'met' if projection['target_met'] else 'missed'}); "
            f"Figure 2 grids {projection['total_hours']:.1f} h"
            + (" (tiny dry run)" if projection.get("tiny") else "")
        )
    return numbers


def summary(out: Path) -> str:
    with open(out / "steps.tsv", newline="") as handle:
        steps = list(csv.DictReader(handle, delimiter="\t"))
    numbers = key_numbers(out)
    torch_line = (out / "torch.txt").read_text().strip() if (out / "torch.txt").exists() else "torch: ?"
    lines = [f"GPU check, {out}: {torch_line}", "", "| step | status | s | note and key numbers |", "| --- | --- | --- | --- |"]
    for step in steps:
        detail = "; ".join(filter(None, [step["note"], numbers.get(step["step"], "")]))
        lines.append(f"| {step['step']} | {step['status']} | {step['seconds']} | {detail} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
