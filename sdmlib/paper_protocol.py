"""Comparing a sweep with the paper like with like: which protocol's runs to draw, and Figure 2f's swapped axes.

The paper's numbers come from the authors' code (`TrainConfig.protocol = "authors"`, see `sdmlib.config.PROTOCOLS`).
Its precision/recall come from `torch_fidelity.calculate_metrics(input1=real, input2=generated, prc=True)`, while
torch-fidelity defines precision as the share of *input1* samples inside the k-NN manifold of *input2* (its
documentation: input1 is the generated set). So the paper's "precision" is torch-fidelity's recall of the generated
images, and its "recall" their precision. Every number of ours keeps torch-fidelity's orientation (generated first);
only the comparison with the paper's Figure 2f swaps the names, here.
"""

from __future__ import annotations

import math

import pandas as pd

# The paper's Figure 2f statements, in the paper's own axis names: the sign of the change from the DDPM baseline
# for squeezing (s > 0) and anti-squeezing (s < 0): "squeezed SDM noise corresponds to reduced recall with slightly
# higher precision ... anti-squeezed noise yields large recall gains at the cost of a slight loss of precision".
PAPER_2F_TRENDS = {
    "recall": {"squeezing": -1, "anti-squeezing": +1},
    "precision": {"squeezing": +1, "anti-squeezing": -1},
}
# The paper's axis -> the column of ours that measures the same thing (its real/generated roles swapped).
PAPER_AXIS_IS_OUR = {"precision": "recall", "recall": "precision"}


def select_protocol(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows of a sweep's results table whose runs followed `protocol` (a `TrainConfig.protocol_label`, e.g.
    "authors"). A table written before runs recorded their protocol has no such column and is returned whole."""
    if "protocol" not in frame.columns:
        return frame
    return frame[frame["protocol"] == protocol]


def precision_recall_trends(points: pd.DataFrame, baseline_s: float = 0.0) -> pd.DataFrame:
    """Figure 2f like with like: each of the paper's two axes next to the column of ours that measures the same.

    `points`: a `PrecisionRecallPanel.points` table (columns s, precision, recall: means over seeds, in our
    orientation). For squeezing and anti-squeezing, our change is the mean over the s > 0 (s < 0) points minus the
    value at `baseline_s`. Columns: paper_axis, our_column, direction ("squeezing" or "anti-squeezing"), paper_sign
    (+1/−1 as the paper states it), our_change, agrees (the signs match; None without points on that side).
    """
    baseline = points[points["s"] == baseline_s]
    rows = []
    for paper_axis, trends in PAPER_2F_TRENDS.items():
        ours = PAPER_AXIS_IS_OUR[paper_axis]
        for direction, paper_sign in trends.items():
            side = points[points["s"] > baseline_s] if direction == "squeezing" else points[points["s"] < baseline_s]
            change = float(side[ours].mean() - baseline[ours].iloc[0]) if len(side) and len(baseline) else math.nan
            rows.append(
                {
                    "paper_axis": paper_axis,
                    "our_column": ours,
                    "direction": direction,
                    "paper_sign": paper_sign,
                    "our_change": change,
                    "agrees": None if math.isnan(change) else bool(change * paper_sign > 0),
                }
            )
    return pd.DataFrame(rows)


__all__ = ["PAPER_2F_TRENDS", "PAPER_AXIS_IS_OUR", "precision_recall_trends", "select_protocol"]
