"""The quantization study: train a few runs (DDPM and SDM at several s0), quantize each with every setting of a grid,
and tabulate what quantization costs per run, which answers whether squeezing makes a model easier or harder to
quantize.

    python -m sdmlib.quant.study -f params/quant-study.yaml        # offline photos, tiny UNets, CPU (about an hour)
    python -m sdmlib.quant.study -f params/quant-cifar10.yaml      # the paper-scale version (GPU; estimate in README)

A study file (yaml.safe_load) has four parts, every entry checked before any work starts:

    output_dir: outputs/quant_study
    train_files: [...]    # optional: TrainConfig parameter files (e.g. params/cifar10.yaml), read in turn
    train: {...}          # TrainConfig parameters shared by the runs, over the files
    runs:                 # run label -> its own TrainConfig parameters (trained in <output_dir>/runs/<label>)
      ddpm: {s0: 0.0}
    quant: {...}          # QuantConfig parameters shared by the settings
    settings:             # one QuantConfig override per setting (each run gets every setting)
      - {method: ptq4dm, weight_bits: 8}

Re-running skips trained runs and finished settings (`quantize_run` keeps each setting's folder), so an
interrupted study loses at most the setting it was working on. The tables go to <output_dir>/study.csv and
study.md, the figures to study.png (per setting and run) and study_timesteps.png (the error along the trajectory).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import TrainConfig, project_path
from ..io import save_text
from .config import QuantConfig

STUDY_KEYS = ("output_dir", "train_files", "train", "runs", "quant", "settings")
COLUMNS = (
    "run", "s0", "setting", "method", "weight_bits", "activation_bits", "calibration", "split", "reconstruction",
    "mean_relative_error", "sample_rms", "pca_fd_fp", "pca_fd_quant", "calibration_seconds", "quantization_seconds",
    "peak_memory_mb",
)


@dataclass(frozen=True)
class QuantStudy:
    output_dir: Path
    runs: dict[str, TrainConfig]  # label -> the run's full config (output_dir = <study>/runs/<label>)
    settings: tuple[dict, ...]  # QuantConfig parameters (without run_dir), shared part merged in

    @classmethod
    def load(cls, path: str | Path) -> "QuantStudy":
        path = project_path(path)
        loaded = yaml.safe_load(path.read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a study file must be a mapping with the keys {STUDY_KEYS}")
        return cls.from_mapping(loaded, source=str(path))

    @classmethod
    def from_mapping(cls, values: dict, source: str = "study") -> "QuantStudy":
        unknown = sorted(set(values) - set(STUDY_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; a study file has {STUDY_KEYS}")
        for key, kind in (("runs", dict), ("settings", list), ("train", dict), ("quant", dict)):
            if not isinstance(values.get(key, kind()), kind) or (key in ("runs", "settings") and not values.get(key)):
                raise ValueError(f"{source}: {key} must be a non-empty {kind.__name__}, got {values.get(key)!r}")
        output_dir = project_path(values.get("output_dir") or "outputs/quant_study")
        shared = {}
        for file in values.get("train_files") or []:
            loaded = yaml.safe_load(project_path(file).read_text())
            if not isinstance(loaded, dict):
                raise ValueError(f"{source}: train_files entry {file!r} is not a mapping of TrainConfig parameters")
            shared.update(loaded)
        shared.update(values.get("train") or {})
        runs = {}
        for label, own in values["runs"].items():
            if not isinstance(own, dict):
                raise ValueError(f"{source}: runs.{label} must be a mapping of TrainConfig parameters, got {own!r}")
            parameters = {**shared, **own, "output_dir": str(output_dir / "runs" / str(label))}
            runs[str(label)] = TrainConfig.from_mapping(parameters)  # validated here, before any work
        settings, names = [], {}
        for index, own in enumerate(values["settings"]):
            if not isinstance(own, dict):
                raise ValueError(
                    f"{source}: settings[{index}] must be a mapping of QuantConfig parameters, got {own!r}"
                )
            parameters = {**values.get("quant", {}), **own}
            if "run_dir" in parameters or "output_dir" in parameters:
                raise ValueError(f"{source}: settings[{index}] sets run_dir/output_dir; the study sets them per run")
            name = QuantConfig.from_mapping(parameters).setting_name()  # validated here
            if name in names:
                raise ValueError(
                    f"{source}: settings[{index}] and settings[{names[name]}] are the same setting ({name})"
                )
            names[name] = index
            settings.append(parameters)
        return cls(output_dir, runs, tuple(settings))

    def quant_configs(self, label: str) -> list[QuantConfig]:
        run_dir = str(self.runs[label].run_dir)
        return [QuantConfig.from_mapping({**parameters, "run_dir": run_dir}) for parameters in self.settings]


def run_study(study: QuantStudy, progress: bool = True) -> list[dict]:
    """Train each run (skipped when trained), then every setting of it (skipped when finished); returns the rows
    and writes the tables and the figure after each run, so a partial study already has its partial table."""
    from ..train import train
    from .run import quantize_run

    total = len(study.runs) * len(study.settings)
    done = 0
    rows: list[dict] = []
    for label, train_config in study.runs.items():
        train(train_config, progress=progress)
        for config in study.quant_configs(label):
            done += 1
            print(f"[{done}/{total}] {label}: {config.setting_name()}", flush=True)
            rows.append(study_row(label, train_config, config, quantize_run(config, progress=progress)))
        write_tables(study.output_dir, rows)
    return rows


def study_row(label: str, train_config: TrainConfig, config: QuantConfig, result: dict) -> dict:
    fp, quant = result["metrics"].get("full_precision", {}), result["metrics"].get("quantized", {})
    seconds = result.get("seconds", {})
    return {
        "run": label,
        "s0": train_config.s0,
        "setting": config.setting_name(),
        "method": config.method,
        "weight_bits": config.weight_bits,
        "activation_bits": config.activation_bits,
        "calibration": config.calibration_set,
        "split": config.splits_shortcuts,
        "reconstruction": config.reconstructs,
        "mean_relative_error": result["mean_relative_error"],
        "sample_rms": result["sample_distance"]["rms_mean"],
        "pca_fd_fp": fp.get("pca_fd", math.nan),
        "pca_fd_quant": quant.get("pca_fd", math.nan),
        "calibration_seconds": seconds.get("calibration_set", math.nan),
        "quantization_seconds": seconds.get("quantization", math.nan),
        "peak_memory_mb": result.get("peak_memory_mb", math.nan),
        # {timestep: relative error of ε̂}: for study_timesteps.png, not a CSV column
        "timestep_relative_error": {int(t): e for t, e in result.get("timestep_relative_error", {}).items()},
    }


def write_tables(folder: Path, rows: list[dict]) -> None:
    """study.csv (every column), study.md (setting × run: relative error, sample RMS, pca_fd), study.png and
    study_timesteps.png."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    save_text(Path(folder) / "study.csv", buffer.getvalue())
    save_text(Path(folder) / "study.md", markdown_table(rows))
    if not rows:
        return
    import matplotlib.pyplot as plt

    from ..figures import save_figure

    for name, make in (("study.png", study_figure), ("study_timesteps.png", timestep_figure)):
        figure = make(rows)
        save_figure(figure, Path(folder) / name, dpi=120)
        plt.close(figure)


def _by_setting(rows: list[dict]) -> tuple[list[str], list[str], dict]:
    runs = list(dict.fromkeys(row["run"] for row in rows))
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    return runs, settings, {(row["setting"], row["run"]): row for row in rows}


def markdown_table(rows: list[dict]) -> str:
    """One line per setting; per run: mean relative error of ε̂ / sample RMS distance / pca_fd float → quantized."""
    runs, settings, cell = _by_setting(rows)
    lines = ["| setting | " + " | ".join(f"{run} (s0 = {cell[(settings[0], run)]['s0']:g})" if (settings[0], run) in
                                          cell else run for run in runs) + " |",
             "| --- |" + " --- |" * len(runs)]
    for setting in settings:
        parts = []
        for run in runs:
            row = cell.get((setting, run))
            parts.append("" if row is None else f"{row['mean_relative_error']:.4f} / {row['sample_rms']:.4f} / "
                         f"{row['pca_fd_fp']:.1f} → {row['pca_fd_quant']:.1f}")
        lines.append(f"| {setting} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def study_figure(rows: list[dict]):
    """Grouped bars: per setting, the mean relative error of ε̂ and the sample RMS distance of each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs, settings, cell = _by_setting(rows)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(settings) + 2), 7), sharex=True)
    width = 0.8 / len(runs)
    positions = np.arange(len(settings))
    for key, ax, label in (("mean_relative_error", axes[0], "mean relative error of ε̂"),
                           ("sample_rms", axes[1], "RMS distance of samples (same noise)")):
        for j, run in enumerate(runs):
            values = [cell[(s, run)][key] if (s, run) in cell else np.nan for s in settings]
            ax.bar(positions + (j - (len(runs) - 1) / 2) * width, values, width, label=run)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(positions, settings, rotation=60, ha="right", fontsize=7)
    fig.suptitle("What quantization costs, per run (lower is better)")
    fig.tight_layout()
    return fig


def timestep_figure(rows: list[dict]):
    """One panel per run: the relative error of ε̂ against the timestep, one line per setting (the same colour and
    style for a setting in every panel), so that where along the trajectory each setting loses is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, settings, cell = _by_setting(rows)
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs) + 3, 4.5), sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs):
        for k, setting in enumerate(settings):
            row = cell.get((setting, run))
            if row and row["timestep_relative_error"]:
                errors = row["timestep_relative_error"]
                steps = sorted(errors)
                ax.plot(steps, [errors[t] for t in steps], color=colours(k % 20), lw=1.3,
                        ls="--" if row["weight_bits"] == 4 else "-", label=setting)
        ax.set_yscale("log")
        ax.set_xlabel("timestep t (sampling runs right to left)")
        ax.set_title(f"{run} (s0 = {next(r['s0'] for r in rows if r['run'] == run):g})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative error of ε̂ along the float trajectory")
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Where along the trajectory quantization costs (dashed: 4-bit weights)")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdmlib.quant.study",
        description="Train the study's runs and quantize each with every setting of the study file.",
    )
    parser.add_argument("-f", "--file", required=True, help="the study file, e.g. params/quant-study.yaml")
    parser.add_argument("--dry-run", action="store_true", help="check the file and list the runs and settings only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    study = QuantStudy.load(args.file)
    if args.dry_run:
        for label, config in study.runs.items():
            print(f"run {label}: s0 = {config.s0:g}, {config.run_dir}")
        for config in study.quant_configs(next(iter(study.runs))):
            print(f"setting {config.setting_name()}")
        return 0
    run_study(study, progress=not args.no_progress)
    print(f"tables: {study.output_dir}/study.md, study.csv; figures: study.png, study_timesteps.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
