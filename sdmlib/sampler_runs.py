"""Trained runs under many samplers (notebook 05, part 2): each run trained once, evaluated at every (sampler,
number of steps) into its own `evaluations/<label>` folder, one row per evaluation, and the question researchers
ask of a fast sampler: how few of its steps match the reference sampler's quality.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from tqdm.auto import tqdm

from .config import TrainConfig
from .samplers import evaluation_label


def evaluate_samplers(
    config: TrainConfig,
    samplers: Sequence[str],
    steps: Sequence[int],
    metric: str = "pca_fd",
    progress: bool = True,
) -> pd.DataFrame:
    """Train `config` (or resume it, or find it trained) and evaluate it with every sampler at every number of
    steps, each with the sampler's own η. One row per evaluation: the sampler, its steps (= network evaluations:
    each step calls the network once), `metric`, the sampling throughput and the evaluation folder. Finished
    evaluations are read back, not redone."""
    from .evaluate import evaluate_run
    from .train import train

    points = [config.replace(sampler=s, num_inference_steps=n, eta=-1.0) for s in samplers for n in steps]
    train(config, progress=progress)
    rows = []
    for point in tqdm(points, desc=f"samplers, s0={config.s0:g}", disable=not progress, leave=False):
        result = evaluate_run(point, progress=False, separate=True)
        if metric not in result["metrics"]:
            raise ValueError(f"metric {metric!r} was not computed; metrics of the run: {sorted(result['metrics'])}")
        rows.append(
            {
                "s0": config.s0,
                "sampler": point.sampler,
                "steps": point.num_inference_steps,
                metric: result["metrics"][metric],
                "images_per_second": result["sampling"]["images_per_second"],
                "evaluation": evaluation_label(point.sampler, point.num_inference_steps),
            }
        )
    return pd.DataFrame(rows)


def steps_to_match(
    frame: pd.DataFrame, reference: str, reference_steps: int, metric: str = "pca_fd", slack: float = 0.0
) -> pd.DataFrame:
    """For each s0 and sampler: the fewest steps at which `metric` (lower is better) is within `slack` (relative)
    of `reference` at `reference_steps`; NaN where no measured step count gets there. Rows: s0, columns: sampler."""
    target = frame[(frame.sampler == reference) & (frame.steps == reference_steps)].set_index("s0")[metric]
    if target.empty:
        raise ValueError(f"no row of sampler {reference!r} at {reference_steps} steps to match against")
    table = {}
    for (s0, sampler), rows in frame.groupby(["s0", "sampler"]):
        good = rows[rows[metric] <= target[s0] * (1 + slack)]
        table[(s0, sampler)] = float(good.steps.min()) if len(good) else float("nan")
    return pd.Series(table).unstack()
