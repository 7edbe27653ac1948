"""The 3 × 3 prediction × loss study on images (notebook 04) and its figure panel (heatmaps from a results table).

A results table is any DataFrame with the columns `prediction_type`, `loss_space`, a metric column and the columns
that name a panel (here `model` and `s0`): the table `run_image_study` returns, or a sweep's results.csv
(`sdmlib.sweep.read_results`) over a grid with prediction_type, loss_space and model axes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .config import TrainConfig
from .prediction import PREDICTION_TYPES

SHORT = {"epsilon": "ε", "sample": "x", "v_prediction": "v"}


@dataclass(frozen=True)
class StudyRun:
    model: str  # a name of the study's model settings ("unet", "jit-bottleneck", …)
    s0: float
    prediction_type: str
    loss_space: str
    config: TrainConfig
    seed: int = 0


def image_study_runs(
    base: TrainConfig,
    models: Mapping[str, Mapping],
    s0_values: Sequence[float],
    output_dir: str | os.PathLike,
    seeds: Sequence[int] | None = None,
) -> list[StudyRun]:
    """Every run of the study: models × s0 × seeds × prediction_type × loss_space, each in its own folder under
    `output_dir`/runs (seeds: `base.seed` alone by default). Each config is validated here, before anything
    trains."""
    seeds = [base.seed] if seeds is None else list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    runs = []
    for name, settings in models.items():
        for s0 in s0_values:
            for seed in seeds:
                for prediction_type in PREDICTION_TYPES:
                    for loss_space in PREDICTION_TYPES:
                        label = f"{name}-s0_{s0 + 0.0:g}-seed{seed}-{prediction_type}-{loss_space}"
                        try:
                            config = base.replace(
                                **settings,
                                s0=s0,
                                seed=seed,
                                prediction_type=prediction_type,
                                loss_space=loss_space,
                                output_dir=str(Path(output_dir) / "runs" / label),
                            )
                        except ValueError as error:
                            raise ValueError(f"model {name!r}: {error}") from error
                        runs.append(StudyRun(name, float(s0), prediction_type, loss_space, config, seed))
    return runs


def run_image_study(runs: Sequence[StudyRun], progress: bool = False) -> pd.DataFrame:
    """Train and evaluate every run (a finished run is skipped: train and evaluate_run resume); one row per run."""
    from .evaluate import evaluate_run
    from .train import train

    rows = []
    for run in runs:
        train(run.config, progress=progress)
        result = evaluate_run(run.config, progress=progress)
        rows.append(
            {
                "model": run.model,
                "s0": run.s0,
                "seed": run.seed,
                "prediction_type": run.prediction_type,
                "loss_space": run.loss_space,
                **{k: v for k, v in result["metrics"].items() if isinstance(v, (int, float))},
                "train_seconds": result["wall_seconds"]["training"],
                "final_loss": result["training"]["final_loss"],
            }
        )
    return pd.DataFrame(rows)


def combination_table(frame: pd.DataFrame, metric: str, aggregate: str = "mean", **panel) -> pd.DataFrame:
    """The 3 × 3 table of `metric` (rows: prediction type, columns: loss space) over the rows that match `panel`
    (e.g. model="unet", s0=0.0): their mean (several seeds average), or with `aggregate="sem"` its standard error
    over them (NaN for a single seed)."""
    if aggregate not in ("mean", "sem"):
        raise ValueError(f"aggregate must be 'mean' or 'sem', got {aggregate!r}")
    if metric not in frame:
        raise ValueError(f"metric {metric!r} is not a column of the results table; columns: {sorted(frame.columns)}")
    selected = frame
    for key, value in panel.items():
        if key not in frame:
            raise ValueError(f"{key!r} is not a column of the results table; columns: {sorted(frame.columns)}")
        selected = selected[selected[key] == value]
    table = selected.pivot_table(index="prediction_type", columns="loss_space", values=metric, aggfunc=aggregate)
    return table.reindex(index=list(PREDICTION_TYPES), columns=list(PREDICTION_TYPES))


def plot_combination_heatmaps(
    frame: pd.DataFrame, metric: str, panels: Sequence[Mapping], titles: Sequence[str] | None = None
) -> Figure:
    """One heatmap per panel (a mapping of column → value), shared colour scale, each cell annotated."""
    tables = [combination_table(frame, metric, **panel) for panel in panels]
    low = min(t.min().min() for t in tables)
    high = max(t.max().max() for t in tables)
    fig, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables), 3.3), squeeze=False)
    for i, (ax, table) in enumerate(zip(axes[0], tables)):
        labelled = table.rename(index=lambda k: f"{SHORT[k]}-pred", columns=lambda k: f"{SHORT[k]}-loss")
        sns.heatmap(labelled, annot=True, fmt=".3g", cmap="viridis_r", vmin=low, vmax=high, ax=ax,
                    cbar=i == len(tables) - 1)
        ax.set_title(titles[i] if titles else ", ".join(f"{k}={v}" for k, v in panels[i].items()), fontsize=9)
        ax.set_xlabel("loss space")
        ax.set_ylabel("prediction" if i == 0 else "")
    fig.suptitle(f"{metric} (lower is better)", fontsize=10)
    fig.tight_layout()
    return fig
