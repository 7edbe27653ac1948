"""The numbers behind Figure 2 and 3: a sweep's results table reduced to curves, optima and the paper's comparison.

The paper (Section 3, Figure 2) reports sample quality against the squeeze strength s as a U-shaped curve and names
its optimum ("best 33.6 at s ≈ −0.4"). This module turns the sweep's `results.csv` (one row per run, see
`sdmlib.sweep`) into what the figures draw and the table states:

- which metric column a panel uses: the paper's (FID, IS, precision/recall) where the column has values, otherwise
  its offline stand-in (`pca_fd`, `pca_precision`, ...), with an axis label that says which (`select_metric`);
- the per-s mean, spread and count over seeds (`curve`), the DDPM baseline s = 0 being shared by SDM and HDM
  (S(0) = I for both variants of eq. 9, so a sweep trains it once, as an "sdm" row);
- a least-squares parabola through the points and a confidence interval for its optimum s* = −b/(2a)
  (`fit_quadratic`);
- the paper's reported numbers next to ours (`load_paper_results`, `comparison_table`).

pandas, numpy and scipy only: no plotting (that is `sdmlib.figures`), no training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.stats
import yaml

from .config import PROJECT_ROOT, PROTOCOLS, TypedConfig, project_path
from .data import DATASETS

VARIANTS = ("sdm", "hdm")
BASELINE_S0 = 0.0  # S(0) = I: the DDPM baseline, shared by both variants
_S_DECIMALS = 9  # s0 values are rounded to this many decimals before grouping (CSV round trips)

# The sweep grid file that produces the runs of each panel: named in the message of an empty panel. Panels 2c, 2f
# and Figure 3 reuse the runs of 2b and 2a (they are other metrics, or the sample grids, of the same runs).
SWEEP_GRID_FILES = {
    "2a": "params/sweep-fig2a.yaml",
    "2b": "params/sweep-fig2bc.yaml",
    "2c": "params/sweep-fig2bc.yaml",
    "2d": "params/sweep-fig2d.yaml",
    "2e": "params/sweep-fig2e.yaml",
    "2f": "params/sweep-fig2a.yaml",
    "3": "params/sweep-fig2a.yaml",
}
# How a grid file is run into a sweep folder (sdmlib.sweep; notebooks/sweep.py), which writes <sweep_dir>/results.csv.
SWEEP_COMMAND = "papermill notebooks/sweep.ipynb outputs/sweep.ipynb -p grid {grid} -p output_dir {sweep_dir}"


# ----------------------------------------------------------------------------------------------------------------
# Metrics and their labels.


class MetricInfo(NamedTuple):
    """What a results column measures: its name on an axis, its direction, whether it needs downloaded weights."""

    name: str
    lower_is_better: bool
    offline: bool


METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo("FID", True, False),
    "isc_mean": MetricInfo("Inception Score", False, False),
    "precision": MetricInfo("precision", False, False),
    "recall": MetricInfo("recall", False, False),
    "f_score": MetricInfo("F-score", False, False),
    "pca_fd": MetricInfo("PCA Fréchet distance", True, True),
    "pca_precision": MetricInfo("PCA precision", False, True),
    "pca_recall": MetricInfo("PCA recall", False, True),
    "pca_f_score": MetricInfo("PCA F-score", False, True),
}
_SHORT_NAMES = {"isc_mean": "IS"}  # for "unlike IS" in a stand-in's label


class MetricChoice(NamedTuple):
    """The column a panel plots, and how to say so on its axis.

    Attributes:
        column: the results column, e.g. "fid" or "pca_fd".
        label: the axis label, naming the metric, its direction and, for a fallback, that it is an offline stand-in.
        lower_is_better: True for distances (FID, PCA Fréchet distance), False for scores (IS, precision, recall).
        is_fallback: True when the paper's metric had no values and the offline stand-in is used.
        available: False when neither column has a finite value among the finished runs given.
    """

    column: str
    label: str
    lower_is_better: bool
    is_fallback: bool
    available: bool


def metric_label(column: str, stands_in_for: str | None = None, num_eval_samples: Iterable[float] = ()) -> str:
    """Axis label of a results column: "FID-10K (lower is better)", "PCA Fréchet distance (offline stand-in ...)".

    Args:
        column: a key of METRICS.
        stands_in_for: the paper's metric that `column` replaces offline, named in the label; its direction is
            stated when it differs ("lower is better, unlike IS").
        num_eval_samples: the runs' sample counts; FID is named FID-10K (the paper's) only when all are 10 000.
    """
    info = _metric_info(column)
    name = info.name
    counts = sorted({int(n) for n in num_eval_samples if not _is_nan(n)})
    if column == "fid" and counts:
        name = "FID-10K" if counts == [10000] else f"FID ({_format_counts(counts)} samples)"
    direction = "lower is better" if info.lower_is_better else "higher is better"
    if stands_in_for is None:
        return f"{name} ({direction})"
    paper = _metric_info(stands_in_for)
    unlike = ""
    if paper.lower_is_better != info.lower_is_better:
        unlike = f", unlike {_SHORT_NAMES.get(stands_in_for, paper.name)}"
    return f"{name} (offline stand-in for {paper.name}; {direction}{unlike})"


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _format_counts(counts: Sequence[int]) -> str:
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"


def _metric_info(column: str) -> MetricInfo:
    if column not in METRICS:
        raise ValueError(f"unknown metric column {column!r}; expected one of {sorted(METRICS)}")
    return METRICS[column]


def has_values(frame: pd.DataFrame, column: str) -> bool:
    """True when `column` exists and holds at least one finite number among the finished runs of `frame`."""
    if column not in frame.columns:
        return False
    values = pd.to_numeric(finished(frame)[column], errors="coerce")
    return bool(np.isfinite(values.to_numpy(dtype=float)).any())


def select_metric(frame: pd.DataFrame, preferred: str, fallback: str | None = None) -> MetricChoice:
    """The paper's metric `preferred` where the runs have values for it, else the offline `fallback`.

    Pass the rows the panel draws from (one dataset, all variants and seeds), so that every curve of a panel is
    measured by the same column. With neither column filled, the choice is `preferred` with `available` False.
    """
    _metric_info(preferred)
    counts = frame["num_eval_samples"] if "num_eval_samples" in frame.columns else ()
    if has_values(frame, preferred):
        return MetricChoice(
            preferred, metric_label(preferred, None, counts), METRICS[preferred].lower_is_better, False, True
        )
    if fallback is not None and has_values(frame, fallback):
        label = metric_label(fallback, preferred, counts)
        return MetricChoice(fallback, label, _metric_info(fallback).lower_is_better, True, True)
    return MetricChoice(
        preferred, metric_label(preferred, None, counts), METRICS[preferred].lower_is_better, False, False
    )


# ----------------------------------------------------------------------------------------------------------------
# Rows, curves and the best grid point.


def finished(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of finished runs (all rows when the table has no `status` column)."""
    if "status" not in frame.columns:
        return frame
    return frame[frame["status"] == "finished"]


def runs(
    frame: pd.DataFrame, dataset: str, variant: str, metric: str, seeds: Iterable[int] | None = None
) -> pd.DataFrame:
    """One row per finished run of `dataset` and `variant` with a finite `metric`: columns s, seed, value, run_id, ...

    At s = 0 the rows of either variant are taken, because S(0) = I makes the two the same DDPM baseline; a seed
    that has both keeps the row of `variant`. So an HDM curve gets the sweep's one "sdm" baseline as its s = 0 point.
    Sorted by s, then seed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    _metric_info(metric)
    rows = finished(frame)
    rows = rows[rows["dataset"] == dataset].copy()
    if metric not in rows.columns:
        rows[metric] = np.nan
    rows["s"] = pd.to_numeric(rows["s0"], errors="coerce").round(_S_DECIMALS) + 0.0  # + 0.0: no −0.0
    rows["value"] = pd.to_numeric(rows[metric], errors="coerce")
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=float))]
    baseline = rows["s"] == BASELINE_S0
    rows = rows[(rows["variant"] == variant) | baseline]
    rows = rows.assign(_other_variant=rows["variant"] != variant).sort_values(["s", "seed", "_other_variant"])
    rows = rows.drop_duplicates(["s", "seed"], keep="first").drop(columns="_other_variant")
    if seeds is not None:
        rows = rows[rows["seed"].isin(list(seeds))]
    return rows.reset_index(drop=True)


def curve(
    frame: pd.DataFrame, dataset: str, variant: str, metric: str, seeds: Iterable[int] | None = None
) -> pd.DataFrame:
    """Per-s statistics over seeds: columns s, mean, std (sample std, ddof 1; NaN for one seed), min, max, count.

    Built from `runs`, so the s = 0 point of an HDM curve is the shared DDPM baseline.
    """
    return _curve_of(runs(frame, dataset, variant, metric, seeds))


def _curve_of(points: pd.DataFrame) -> pd.DataFrame:
    columns = ["s", "mean", "std", "min", "max", "count"]
    if points.empty:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in columns})
    grouped = points.groupby("s")["value"]
    table = grouped.agg(mean="mean", std="std", min="min", max="max", count="count").reset_index()
    return table[columns]


def best_s(curve_table: pd.DataFrame, lower_is_better: bool = True) -> tuple[float, float]:
    """The grid point with the best mean: (s, mean). Ties go to the smaller s. Raises on an empty curve."""
    if curve_table.empty:
        raise ValueError("curve_table is empty: no runs with values for this dataset, variant and metric")
    means = curve_table["mean"].to_numpy(dtype=float)
    index = int(np.argmin(means) if lower_is_better else np.argmax(means))
    return float(curve_table["s"].iloc[index]), float(means[index])


def baseline_value(curve_table: pd.DataFrame) -> float:
    """Mean metric of the DDPM baseline (s = 0) over seeds; NaN when the sweep has no s = 0 run."""
    at_zero = curve_table[curve_table["s"] == BASELINE_S0]
    return float(at_zero["mean"].iloc[0]) if len(at_zero) else math.nan


def improvement_percent(baseline: float, best: float, lower_is_better: bool = True) -> float:
    """Relative improvement of `best` over the DDPM `baseline`, in %: (baseline − best)/baseline·100 for FID-like
    metrics, (best − baseline)/baseline·100 for scores. Section 3: (39.8 − 33.6)/39.8 ≈ 15.6% ("~15%")."""
    if not (math.isfinite(baseline) and math.isfinite(best)) or baseline == 0:
        return math.nan
    gain = baseline - best if lower_is_better else best - baseline
    return 100.0 * gain / baseline


# ----------------------------------------------------------------------------------------------------------------
# The quadratic fit and its optimum.


@dataclass(frozen=True)
class QuadraticFit:
    """Least-squares y ≈ a s² + b s + c and its optimum s* = −b/(2a), with a confidence interval.

    Attributes:
        a, b, c: the coefficients; `covariance` is their 3×3 covariance σ̂²(XᵀX)⁻¹ (rows a, b, c; NaN without
            residual degrees of freedom), σ̂² = RSS/(n − 3).
        s_star: the stationary point −b/(2a); NaN when the parabola has no optimum of the wanted kind (a ≤ 0 for a
            minimum, a ≥ 0 for a maximum), `note` says so.
        ci_low, ci_high: the `confidence` interval of s_star by `method` ("delta" or "fieller"); NaN when it cannot
            be formed (no residual degrees of freedom, no optimum, or an unbounded Fieller set), `note` says why.
        num_points, num_distinct_s, s_min, s_max: the points fitted (after the window).
        window_centre, half_width: the window |s − window_centre| ≤ half_width the points were taken from
            (centre: the best mean grid point); half_width None means all points.
        residual_std: σ̂; dof: n − 3.
    """

    a: float
    b: float
    c: float
    covariance: tuple[tuple[float, float, float], ...]
    s_star: float
    ci_low: float
    ci_high: float
    confidence: float
    method: str
    lower_is_better: bool
    num_points: int
    num_distinct_s: int
    s_min: float
    s_max: float
    window_centre: float
    half_width: float | None
    residual_std: float
    dof: int
    note: str = ""

    def predict(self, s) -> np.ndarray:
        """a s² + b s + c at `s` (array-like)."""
        s = np.asarray(s, dtype=float)
        return self.a * s**2 + self.b * s + self.c

    @property
    def value_at_optimum(self) -> float:
        """The fitted metric at s*; NaN without an optimum."""
        return float(self.predict(self.s_star)) if math.isfinite(self.s_star) else math.nan

    @property
    def inside_range(self) -> bool:
        """Whether s* lies within the fitted points' s range (outside it, s* is an extrapolation)."""
        return math.isfinite(self.s_star) and self.s_min <= self.s_star <= self.s_max


CI_METHODS = ("delta", "fieller")


def window(s, y, half_width: float | None, lower_is_better: bool = True) -> tuple[np.ndarray, float]:
    """Mask of the points with |s − s_best| ≤ half_width, s_best being the grid point with the best mean y.

    Over the paper's s ∈ [−1, 1] the U shape is steep at the ends and flat near the optimum, not a parabola;
    a window fits the parabola where it is one, around the best point. half_width None keeps every point.
    Returns (mask, s_best).
    """
    s = np.asarray(s, dtype=float)
    y = np.asarray(y, dtype=float)
    means = pd.Series(y).groupby(np.round(s, _S_DECIMALS)).mean()
    s_best = float(means.idxmin() if lower_is_better else means.idxmax())
    if half_width is None:
        return np.ones_like(s, dtype=bool), s_best
    if not (isinstance(half_width, (int, float)) and half_width > 0):
        raise ValueError(f"half_width must be a positive number or None, got {half_width!r}")
    return np.abs(s - s_best) <= half_width + 1e-9, s_best


def fit_quadratic(
    s,
    y,
    confidence: float = 0.95,
    half_width: float | None = None,
    lower_is_better: bool = True,
    method: str = "delta",
) -> QuadraticFit:
    """Least-squares parabola y ≈ a s² + b s + c through every point (several seeds per s allowed) and the
    confidence interval of its optimum s* = −b/(2a) (Section 3's "best ... at s ≈ −0.4", as a fitted number).

    Args:
        s, y: equal-length sequences: squeeze strength and metric of each run.
        confidence: level of the interval, in (0, 1).
        half_width: fit only the points with |s − s_best| ≤ half_width around the best mean grid point (`window`);
            None fits all.
        lower_is_better: True looks for a minimum (FID: needs a > 0), False for a maximum (IS: needs a < 0).
        method: "delta": s* ± t_{n−3} · se, se² = ∇s*ᵀ Σ ∇s* with ∇s* = (b/(2a²), −1/(2a), 0) (first order; symmetric);
            "fieller": the set {x : (b + 2a x)² ≤ t² Var(b + 2a x)}, exact for Gaussian residuals, asymmetric, and
            unbounded (NaN, with a note) when the curvature a is not significantly non-zero. Both deterministic.

    Raises:
        ValueError: fewer than 3 distinct s (after the window), mismatched lengths, non-finite values, a bad
            confidence or method.
    """
    s = np.asarray(s, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if s.shape != y.shape:
        raise ValueError(f"s and y must have the same length, got {s.size} and {y.size}")
    if not (np.isfinite(s).all() and np.isfinite(y).all()):
        raise ValueError("s and y must be finite (drop runs without a value first)")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    num_distinct = len(np.unique(np.round(s, _S_DECIMALS)))
    if num_distinct < 3:
        raise ValueError(f"s: a quadratic needs at least 3 distinct values of s, got {num_distinct}")

    # 1. Window around the best mean grid point.
    mask, s_best = window(s, y, half_width, lower_is_better)
    s, y = s[mask], y[mask]
    num_distinct = len(np.unique(np.round(s, _S_DECIMALS)))
    if num_distinct < 3:
        raise ValueError(
            f"half_width={half_width!r} leaves {num_distinct} distinct values of s around s_best={s_best:g} "
            "(a quadratic needs 3): widen half_width (2 or more, or None, fits all of s in [−1, 1])"
        )

    # 2. Ordinary least squares on the design (s², s, 1); σ̂² from the residuals.
    design = np.column_stack([s**2, s, np.ones_like(s)])  # (n, 3)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    a, b, c = (float(v) for v in coefficients)
    dof = len(s) - 3
    residuals = y - design @ coefficients
    notes = []
    if dof > 0:
        residual_variance = float(residuals @ residuals) / dof
        covariance = residual_variance * np.linalg.inv(design.T @ design)
        quantile = float(scipy.stats.t.ppf(0.5 + confidence / 2, dof))
    else:
        residual_variance = math.nan
        covariance = np.full((3, 3), math.nan)
        quantile = math.nan
        notes.append("no residual degrees of freedom (3 points, one per s): no confidence interval")

    # 3. The optimum, if the parabola has one of the wanted kind.
    no_optimum = a <= 0 if lower_is_better else a >= 0
    if no_optimum:
        kind = "minimum" if lower_is_better else "maximum"
        s_star = ci_low = ci_high = math.nan
        notes = [f"a = {a:.4g} {'≤' if lower_is_better else '≥'} 0: the fitted parabola has no {kind}"]
    else:
        s_star = -b / (2 * a)
        ci_low, ci_high, ci_note = (
            _delta_interval(a, b, covariance, quantile)
            if method == "delta"
            else _fieller_interval(a, b, covariance, quantile)
        )
        if ci_note and dof > 0:
            notes.append(ci_note)
        if not s.min() <= s_star <= s.max():
            notes.append(f"s* = {s_star:.3g} lies outside the fitted s range [{s.min():g}, {s.max():g}]")

    return QuadraticFit(
        a=a,
        b=b,
        c=c,
        covariance=tuple(tuple(float(v) for v in row) for row in covariance),
        s_star=s_star,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=float(confidence),
        method=method,
        lower_is_better=lower_is_better,
        num_points=len(s),
        num_distinct_s=num_distinct,
        s_min=float(s.min()),
        s_max=float(s.max()),
        window_centre=s_best,
        half_width=half_width,
        residual_std=math.sqrt(residual_variance) if math.isfinite(residual_variance) else math.nan,
        dof=dof,
        note="; ".join(notes),
    )


def _delta_interval(a: float, b: float, covariance: np.ndarray, quantile: float) -> tuple[float, float, str]:
    """s* ± t·se with se² = gᵀ Σ_ab g, g = ∂s*/∂(a, b) = (b/(2a²), −1/(2a))."""
    gradient = np.array([b / (2 * a**2), -1 / (2 * a)])
    variance = float(gradient @ covariance[:2, :2] @ gradient)
    if not math.isfinite(variance):
        return math.nan, math.nan, ""
    half = quantile * math.sqrt(max(variance, 0.0))
    s_star = -b / (2 * a)
    return s_star - half, s_star + half, ""


def _fieller_interval(a: float, b: float, covariance: np.ndarray, quantile: float) -> tuple[float, float, str]:
    """Fieller's set for the root of b + 2a x: A x² + B x + C ≤ 0 with A = 4(a² − t² v_aa), B = 4(ab − t² v_ab),
    C = b² − t² v_bb. Bounded iff A > 0, i.e. |a| / se(a) > t."""
    v_aa, v_ab, v_bb = covariance[0, 0], covariance[0, 1], covariance[1, 1]
    if not math.isfinite(v_aa):
        return math.nan, math.nan, ""
    t2 = quantile**2
    big_a = 4 * (a**2 - t2 * v_aa)
    big_b = 4 * (a * b - t2 * v_ab)
    big_c = b**2 - t2 * v_bb
    if big_a <= 0:
        return math.nan, math.nan, "the curvature a is not significantly non-zero: Fieller's interval is unbounded"
    root = math.sqrt(max(big_b**2 - 4 * big_a * big_c, 0.0))  # ≥ 0 in exact arithmetic: s* is inside the set
    return (-big_b - root) / (2 * big_a), (-big_b + root) / (2 * big_a), ""


# ----------------------------------------------------------------------------------------------------------------
# Panels: everything one subplot draws.


@dataclass(frozen=True)
class SweepPanel:
    """One curve of metric against s: its runs, per-s statistics, fit, baseline and best point.

    `missing` is non-empty when there is nothing to draw, and then says which sweep grid to run; `fit_note` says why
    there is no fit (too few distinct s) or what is odd about it.
    """

    dataset: str
    variant: str
    metric: MetricChoice
    runs: pd.DataFrame
    curve: pd.DataFrame
    fit: QuadraticFit | None
    fit_note: str
    baseline: float
    best_s: float
    best_value: float
    seeds: tuple[int, ...]
    missing: str = ""


def missing_message(dataset: str, variant: str | None, grid_file: str | None, seeds=None, what: str = "runs") -> str:
    """The text of an empty panel, e.g. `no runs of cifar100 in this sweep: run params/sweep-fig2d.yaml`."""
    subject = f"no {what} of {dataset}" + (f" ({variant.upper()})" if variant else "")
    if seeds is not None:
        subject += f" with seed {', '.join(str(seed) for seed in seeds)}"
    hint = f": run {grid_file}" if grid_file else ""
    return f"{subject} in this sweep{hint}"


def sweep_panel(
    frame: pd.DataFrame,
    dataset: str,
    variant: str,
    preferred: str,
    fallback: str | None = None,
    *,
    seeds: Iterable[int] | None = None,
    half_width: float | None = None,
    confidence: float = 0.95,
    method: str = "delta",
    grid_file: str | None = None,
) -> SweepPanel:
    """Curve, fit and baseline of `dataset`/`variant` for one metric (the paper's, or its offline stand-in).

    The metric is chosen on all rows of `dataset` (both variants), so two panels of one dataset use one column.
    `seeds` restricts the runs (panels 2b, 2c use one fixed seed). A panel without runs has `missing` set and
    empty tables; one with fewer than 3 distinct s has no fit and says so in `fit_note`.
    """
    seeds = None if seeds is None else tuple(int(seed) for seed in seeds)
    dataset_rows = frame[frame["dataset"] == dataset] if "dataset" in frame.columns else frame.iloc[:0]
    metric = select_metric(dataset_rows, preferred, fallback)
    points = runs(frame, dataset, variant, metric.column) if len(dataset_rows) else _empty_runs()
    if seeds is not None:
        points = points[points["seed"].isin(seeds)].reset_index(drop=True)
    table = _curve_of(points)
    if points.empty:
        what = "runs" if len(dataset_rows) == 0 else f"finished runs with {metric.column}"
        message = missing_message(dataset, variant if len(dataset_rows) else None, grid_file, seeds, what)
        return SweepPanel(
            dataset, variant, metric, points, table, None, "", math.nan, math.nan, math.nan, seeds or (), message
        )
    s_best, value_best = best_s(table, metric.lower_is_better)
    fit, note = None, ""
    try:
        fit = fit_quadratic(points["s"], points["value"], confidence, half_width, metric.lower_is_better, method)
        note = fit.note
    except ValueError as error:
        note = f"no fit: {error}"
    used_seeds = tuple(sorted(int(seed) for seed in points["seed"].unique()))
    return SweepPanel(
        dataset, variant, metric, points, table, fit, note, baseline_value(table), s_best, value_best, used_seeds, ""
    )


def variant_panels(
    frame: pd.DataFrame, dataset: str, preferred: str, fallback: str | None, **options: Any
) -> list[SweepPanel]:
    """One `sweep_panel` per variant (SDM, HDM) of `dataset`, as panels 2b and 2c compare them."""
    return [sweep_panel(frame, dataset, variant, preferred, fallback, **options) for variant in VARIANTS]


def variant_panels_summary(panels: Sequence[SweepPanel]) -> dict[str, Any]:
    """What figures.json records of a panel of several variants: its metric, fallback flag and each fit."""
    return {
        "metric": panels[0].metric.column,
        "fallback": panels[0].metric.is_fallback,
        "variants": {panel.variant: panel_summary(panel) for panel in panels},
    }


def _empty_runs() -> pd.DataFrame:
    return pd.DataFrame({"s": pd.Series(dtype=float), "seed": pd.Series(dtype=int), "value": pd.Series(dtype=float)})


@dataclass(frozen=True)
class PrecisionRecallPanel:
    """Figure 2f: per-s mean precision and recall over seeds (columns s, precision, recall, f_score, count)."""

    dataset: str
    variant: str
    precision: MetricChoice
    recall: MetricChoice
    points: pd.DataFrame
    missing: str = ""


def precision_recall_panel(
    frame: pd.DataFrame,
    dataset: str,
    variant: str = "sdm",
    seeds: Iterable[int] | None = None,
    grid_file: str | None = None,
) -> PrecisionRecallPanel:
    """Mean precision and recall per s (the paper's Kynkänniemi metrics where both have values, else the PCA
    stand-ins), with F1 = 2PR/(P + R) of the means. The s = 0 point is the shared baseline, as in `runs`."""
    dataset_rows = frame[frame["dataset"] == dataset] if "dataset" in frame.columns else frame.iloc[:0]
    # The paper's pair where both have values (or where there is nothing at all to draw), else the stand-ins.
    offline = has_values(dataset_rows, "pca_precision") and has_values(dataset_rows, "pca_recall")
    paper = (has_values(dataset_rows, "precision") and has_values(dataset_rows, "recall")) or not offline
    precision = select_metric(dataset_rows, "precision" if paper else "pca_precision")
    recall = select_metric(dataset_rows, "recall" if paper else "pca_recall")
    if not paper:  # the stand-ins' labels name what they replace
        counts = dataset_rows.get("num_eval_samples", ())
        precision = precision._replace(label=metric_label("pca_precision", "precision", counts), is_fallback=True)
        recall = recall._replace(label=metric_label("pca_recall", "recall", counts), is_fallback=True)
    columns = ["s", "precision", "recall", "f_score", "count"]
    empty = pd.DataFrame({name: pd.Series(dtype=float) for name in columns})
    if not (precision.available and recall.available):
        what = "runs" if len(dataset_rows) == 0 else "finished runs with precision and recall"
        named_variant = variant if len(dataset_rows) else None
        message = missing_message(dataset, named_variant, grid_file, None, what)
        return PrecisionRecallPanel(dataset, variant, precision, recall, empty, message)
    p_runs = runs(frame, dataset, variant, precision.column)[["s", "seed", "value"]].rename(columns={"value": "p"})
    r_runs = runs(frame, dataset, variant, recall.column)[["s", "seed", "value"]].rename(columns={"value": "r"})
    both = p_runs.merge(r_runs, on=["s", "seed"]).rename(columns={"p": "precision", "r": "recall"})
    if seeds is not None:
        both = both[both["seed"].isin(list(seeds))]
    if both.empty:
        return PrecisionRecallPanel(
            dataset,
            variant,
            precision,
            recall,
            empty,
            missing_message(dataset, variant, grid_file, seeds, "runs with precision and recall"),
        )
    table = (
        both.groupby("s")
        .agg(precision=("precision", "mean"), recall=("recall", "mean"), count=("seed", "count"))
        .reset_index()
    )
    table["f_score"] = f1_score(table["precision"], table["recall"])
    return PrecisionRecallPanel(dataset, variant, precision, recall, table[columns])


def f1_score(precision, recall) -> np.ndarray:
    """F1 = 2PR/(P + R), elementwise; 0 where P = R = 0 (as `sdmlib.metrics.f_score`)."""
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall, dtype=float)
    total = precision + recall
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def iso_f_recall(precision, f: float) -> np.ndarray:
    """The recall on the iso-F1 contour F1 = f at each precision: R = f P / (2P − f); NaN where P ≤ f/2 (there the
    contour does not exist: even R = 1 gives F1 < f)."""
    precision = np.asarray(precision, dtype=float)
    denominator = 2 * precision - f
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(denominator > 0, f * precision / np.where(denominator > 0, denominator, 1.0), np.nan)
    return np.where(recall <= 1.0 + 1e-12, recall, np.nan)


class SampleGrid(NamedTuple):
    """One image of Figure 3: the run's 36-sample grid and what to title it with. `path` None: no such run."""

    s: float
    variant: str
    seed: int | None
    path: Path | None
    value: float
    metric: MetricChoice
    run_id: str
    missing: str = ""


def sample_grid(
    frame: pd.DataFrame,
    sweep_dir: str | Path,
    dataset: str,
    s: float,
    metric: MetricChoice,
    variant: str = "sdm",
    seed: int | None = None,
    grid_file: str | None = None,
) -> SampleGrid:
    """The sample grid of the run at (dataset, variant, s, seed) and its metric value; `seed` None takes the
    smallest seed there. The grid PNG path is resolved against `sweep_dir`."""
    points = runs(frame, dataset, variant, metric.column) if metric.available else _empty_runs()
    rows = points[points["s"] == round(float(s), _S_DECIMALS)] if len(points) else points
    if seed is not None and len(rows):
        rows = rows[rows["seed"] == seed]
    if "samples_grid" in rows.columns:  # an empty run table (no runs of `dataset`) has no columns to index
        rows = rows[rows["samples_grid"].notna() & (rows["samples_grid"].astype(str) != "")]
    else:
        rows = rows.iloc[:0]
    if rows.empty:
        where = f"s = {s:g}" + (f", seed {seed}" if seed is not None else "")
        message = missing_message(dataset, variant, grid_file, None, f"sample grid at {where}")
        return SampleGrid(float(s), variant, seed, None, math.nan, metric, "", message)
    row = rows.sort_values("seed").iloc[0]
    path = Path(row["samples_grid"])
    path = path if path.is_absolute() else Path(sweep_dir) / path
    if not path.is_file():
        message = f"the sample grid of run {row.get('run_id', '')} is missing: no file {path}"
        return SampleGrid(
            float(s),
            str(row["variant"]),
            int(row["seed"]),
            None,
            float(row["value"]),
            metric,
            str(row.get("run_id", "")),
            message,
        )
    return SampleGrid(
        float(s), str(row["variant"]), int(row["seed"]), path, float(row["value"]), metric, str(row.get("run_id", ""))
    )


def panel_summary(panel: SweepPanel | PrecisionRecallPanel | SampleGrid) -> dict[str, Any]:
    """A JSON-ready record of a panel: the metric column and label it used, its runs, fit and optimum."""
    if isinstance(panel, SampleGrid):
        return {
            "s": panel.s,
            "variant": panel.variant,
            "seed": panel.seed,
            "run_id": panel.run_id,
            "samples_grid": str(panel.path) if panel.path else None,
            "metric": panel.metric.column,
            "metric_label": panel.metric.label,
            "fallback": panel.metric.is_fallback,
            "value": _json_number(panel.value),
            "missing": panel.missing,
        }
    if isinstance(panel, PrecisionRecallPanel):
        return {
            "dataset": panel.dataset,
            "variant": panel.variant,
            "metric": [panel.precision.column, panel.recall.column],
            "metric_label": [panel.precision.label, panel.recall.label],
            "fallback": panel.precision.is_fallback,
            "num_s": len(panel.points),
            "missing": panel.missing,
        }
    fit = panel.fit
    return {
        "dataset": panel.dataset,
        "variant": panel.variant,
        "metric": panel.metric.column,
        "metric_label": panel.metric.label,
        "fallback": panel.metric.is_fallback,
        "num_runs": len(panel.runs),
        "seeds": list(panel.seeds),
        "baseline": _json_number(panel.baseline),
        "best_s": _json_number(panel.best_s),
        "best_value": _json_number(panel.best_value),
        "fitted_s_star": _json_number(fit.s_star) if fit else None,
        "s_star_ci": [_json_number(fit.ci_low), _json_number(fit.ci_high)] if fit else None,
        "fit_note": panel.fit_note,
        "missing": panel.missing,
    }


def _json_number(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ----------------------------------------------------------------------------------------------------------------
# The paper's numbers.

_SOURCE_KEYS = {"title", "authors", "year", "affiliation", "section", "text_file", "language", "note"}
_SOURCE_REQUIRED = {"title", "authors", "year", "section", "text_file"}
_RESULT_REQUIRED = {
    "panel",
    "dataset",
    "variants",
    "seeds",
    "metric",
    "baseline",
    "best",
    "best_s",
    "improvement_pct",
    "quote",
}
_RESULT_KEYS = _RESULT_REQUIRED | {"translation", "note"}
_NUMBER_KEYS = ("baseline", "best", "best_s", "improvement_pct")


def load_paper_results(path: str | Path) -> dict[str, Any]:
    """Read and validate `params/paper_results.yaml` (yaml.safe_load): {"source": {...}, "results": [{...}, ...]}.

    Every result names its panel, dataset, variants, seeds ("all" or "fixed"), metric column and the reported
    numbers (null where the paper states none), with the sentence they are quoted from. Unknown or missing keys,
    wrong types and duplicate panels are ValueErrors naming the file and the entry. Relative paths are taken
    from the repository root.
    """
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
    if not path.is_file():
        raise ValueError(f"paper_results: no such file {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    validate_paper_results(loaded, str(path))
    return loaded


def validate_paper_results(loaded: Any, name: str = "paper_results") -> None:
    """The checks of `load_paper_results`, on an already parsed mapping."""
    if not isinstance(loaded, dict) or set(loaded) != {"source", "results"}:
        keys = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
        raise ValueError(f"{name}: expected a mapping with exactly the keys ['results', 'source'], got {keys}")
    _check_keys(loaded["source"], _SOURCE_KEYS, _SOURCE_REQUIRED, f"{name}: source")
    results = loaded["results"]
    if not isinstance(results, list) or not results:
        raise ValueError(f"{name}: results must be a non-empty list of entries")
    seen = set()
    for index, entry in enumerate(results):
        where = f"{name}: results[{index}]"
        _check_keys(entry, _RESULT_KEYS, _RESULT_REQUIRED, where)
        where += f" (panel {entry['panel']})"
        if not (isinstance(entry["panel"], str) and entry["panel"]):
            raise ValueError(f"{where}: panel must be a string such as '2a' or '3' (quoted), got {entry['panel']!r}")
        if entry["panel"] in seen:
            raise ValueError(f"{where}: duplicate panel")
        seen.add(entry["panel"])
        if entry["dataset"] not in DATASETS:
            raise ValueError(f"{where}: dataset must be one of {DATASETS}, got {entry['dataset']!r}")
        variants = entry["variants"]
        if not (isinstance(variants, list) and variants and all(v in VARIANTS for v in variants)):
            raise ValueError(f"{where}: variants must be a non-empty list of {VARIANTS}, got {variants!r}")
        if entry["seeds"] not in ("all", "fixed"):
            raise ValueError(f"{where}: seeds must be 'all' or 'fixed', got {entry['seeds']!r}")
        if entry["metric"] is not None and (entry["metric"] not in METRICS or METRICS[entry["metric"]].offline):
            paper_metrics = sorted(k for k, v in METRICS.items() if not v.offline)
            raise ValueError(f"{where}: metric must be null or one of {paper_metrics}, got {entry['metric']!r}")
        for key in _NUMBER_KEYS:
            value = entry[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{where}: {key} must be a number or null, got {value!r}")
        if not isinstance(entry["quote"], str) or not entry["quote"].strip():
            raise ValueError(f"{where}: quote must be the sentence the numbers come from")


def _check_keys(entry: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(entry).__name__}")  # noqa: TRY004 (one error type for every defect of the file)
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    absent = sorted(required - set(entry))
    if absent:
        raise ValueError(f"{where}: missing key(s) {absent}")


# ----------------------------------------------------------------------------------------------------------------
# The comparison with the paper.


def comparison_table(
    frame: pd.DataFrame,
    paper_results: Mapping[str, Any],
    datasets: Mapping[str, str] | None = None,
    *,
    comparison_seed: int = 0,
    half_width: float | None = None,
    confidence: float = 0.95,
    method: str = "delta",
) -> pd.DataFrame:
    """The paper's numbers next to ours: one row per paper result with a reported best s, and per variant.

    Args:
        frame: the sweep's results table.
        paper_results: `load_paper_results(...)`.
        datasets: paper dataset -> the dataset of this sweep that stands for it (e.g. {"cifar10": "photos"} in an
            offline smoke sweep); by default each paper dataset stands for itself.
        comparison_seed: the seed of the paper's fixed-seed panels (2b, 2c).
        half_width, confidence, method: of the fit (`fit_quadratic`).

    Columns: panel, paper_dataset, dataset, variant, seeds, paper_metric, metric (the column actually used),
    metric_label, paper_baseline, paper_best, paper_best_s, paper_improvement_pct, baseline (our s = 0 mean),
    best (best grid-point mean), best_s, fitted_s_star, s_star_ci_low, s_star_ci_high, improvement_pct, num_runs,
    note. improvement_pct = (baseline − best)/baseline·100 for FID-like metrics (the paper's "~15%"), the other
    way round for scores.
    """
    datasets = dict(datasets or {})
    offline_for = {
        "fid": "pca_fd",
        "isc_mean": "pca_fd",
        "precision": "pca_precision",
        "recall": "pca_recall",
        "f_score": "pca_f_score",
    }
    rows = []
    for entry in paper_results["results"]:
        if entry["metric"] is None or entry["best_s"] is None:
            continue  # a qualitative claim (2f, Figure 3): no metric to put next to ours
        ours = datasets.get(entry["dataset"], entry["dataset"])
        seeds = (comparison_seed,) if entry["seeds"] == "fixed" else None
        for variant in entry["variants"]:
            panel = sweep_panel(
                frame,
                ours,
                variant,
                entry["metric"],
                offline_for.get(entry["metric"]),
                seeds=seeds,
                half_width=half_width,
                confidence=confidence,
                method=method,
                grid_file=SWEEP_GRID_FILES.get(str(entry["panel"])),
            )
            fit = panel.fit
            rows.append(
                {
                    "panel": str(entry["panel"]),
                    "paper_dataset": entry["dataset"],
                    "dataset": ours,
                    "variant": variant,
                    "seeds": "all" if seeds is None else f"seed {comparison_seed}",
                    "paper_metric": entry["metric"],
                    "metric": panel.metric.column,
                    "metric_label": panel.metric.label,
                    "paper_baseline": _number(entry["baseline"]),
                    "paper_best": _number(entry["best"]),
                    "paper_best_s": _number(entry["best_s"]),
                    "paper_improvement_pct": _number(entry["improvement_pct"]),
                    "baseline": panel.baseline,
                    "best": panel.best_value,
                    "best_s": panel.best_s,
                    "fitted_s_star": fit.s_star if fit else math.nan,
                    "s_star_ci_low": fit.ci_low if fit else math.nan,
                    "s_star_ci_high": fit.ci_high if fit else math.nan,
                    "improvement_pct": improvement_percent(
                        panel.baseline, panel.best_value, panel.metric.lower_is_better
                    ),
                    "num_runs": len(panel.runs),
                    "note": panel.missing or panel.fit_note,
                }
            )
    return pd.DataFrame(rows)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table of `table` (pandas' to_markdown needs tabulate); floats to `digits` significant
    digits, NaN as an empty cell, "|" escaped."""

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if not math.isfinite(value) else f"{value:.{digits}g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(column) for column in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The notebook's typed parameters.


@dataclass(frozen=True)
class FiguresConfig(TypedConfig):
    """Parameters of notebooks/figures.py. Relative paths are relative to the repository root."""

    sweep_dir: str = "outputs/sweeps/paper"  # the sweep folder holding results.csv
    output_dir: str = "outputs/figures"  # where the figures, table and figures.json go
    main_dataset: str = "cifar10"  # panels 2a, 2b, 2c, 2f and Figure 3
    cross_datasets: tuple[str, ...] = ("cifar100", "celeba64")  # panels 2d and 2e
    paper_results: str = "params/paper_results.yaml"
    fit_half_width: float = 0.5  # the fit window around the best grid point (2 or more: all of s in [−1, 1])
    confidence: float = 0.95  # level of the interval on s*
    ci_method: str = "delta"  # "delta" or "fieller" (`fit_quadratic`)
    comparison_seed: int = 0  # the fixed seed of panels 2b, 2c and Figure 3
    protocol: str = "authors"  # draw the runs of this protocol (TrainConfig.protocol_label); the paper's: authors

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]):
        """As TypedConfig's, but `cross_datasets` may also come as one string (`papermill -p cross_datasets
        '["photos", "photos"]'` passes the text): YAML/JSON list syntax or comma-separated names."""
        values = dict(values)
        if isinstance(values.get("cross_datasets"), str):
            values["cross_datasets"] = parse_name_list(values["cross_datasets"], "cross_datasets")
        return super().from_mapping(values)

    def validate(self) -> None:
        named = [("main_dataset", self.main_dataset)]
        named += [(f"cross_datasets[{i}]", dataset) for i, dataset in enumerate(self.cross_datasets)]
        for name, value in named:
            if value not in DATASETS:
                raise ValueError(f"{name} must be one of {DATASETS}, got {value!r}")
        if len(self.cross_datasets) != 2:
            raise ValueError(
                f"cross_datasets must name 2 datasets (panels 2d and 2e), got {list(self.cross_datasets)!r}"
            )
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence!r}")
        if not (math.isfinite(self.fit_half_width) and self.fit_half_width > 0):
            raise ValueError(f"fit_half_width must be a positive number, got {self.fit_half_width!r}")
        if self.ci_method not in CI_METHODS:
            raise ValueError(f"ci_method must be one of {CI_METHODS}, got {self.ci_method!r}")
        if not any(self.protocol == name or self.protocol.startswith(f"{name}-") for name in PROTOCOLS):
            raise ValueError(
                f"protocol must be a run's protocol label: one of {tuple(PROTOCOLS)}, optionally followed by its "
                f"overrides as in run names (e.g. 'authors-resqueeze_previous'), got {self.protocol!r}"
            )
        if not self.sweep_path.is_dir():
            raise ValueError(
                f"sweep_dir {self.sweep_path} does not exist: run the paper's sweep into it first, e.g. "
                f"`{SWEEP_COMMAND.format(grid=SWEEP_GRID_FILES['2a'], sweep_dir=self.sweep_dir)}` (the grids of "
                f"Figure 2: {sorted(set(SWEEP_GRID_FILES.values()))}), or pass -p sweep_dir PATH"
            )
        if not (self.sweep_path / "results.csv").is_file():
            raise ValueError(
                f"sweep_dir {self.sweep_path} has no results.csv: no run of the sweep has ended yet "
                f"(`{SWEEP_COMMAND.format(grid=SWEEP_GRID_FILES['2a'], sweep_dir=self.sweep_dir)}` writes it)"
            )
        if not self.paper_results_path.is_file():
            raise ValueError(f"paper_results: no such file {self.paper_results_path}")

    @property
    def sweep_path(self) -> Path:
        return project_path(self.sweep_dir)

    @property
    def output_path(self) -> Path:
        return project_path(self.output_dir)

    @property
    def paper_results_path(self) -> Path:
        return project_path(self.paper_results)

    @property
    def fit_options(self) -> dict[str, Any]:
        """The keyword arguments of the fit, for `sweep_panel` and `comparison_table`."""
        return {"half_width": self.fit_half_width, "confidence": self.confidence, "method": self.ci_method}

    @property
    def paper_datasets(self) -> dict[str, str]:
        """The paper's dataset -> the dataset of this sweep drawn in its panels."""
        return {"cifar10": self.main_dataset, "cifar100": self.cross_datasets[0], "celeba64": self.cross_datasets[1]}


def parse_name_list(text: str, name: str) -> list[str]:
    """'["a", "b"]', '[a, b]' or 'a,b' -> ["a", "b"]; a ValueError naming `name` otherwise."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{name}: cannot read {text!r} as a list: {error}") from error
    if isinstance(parsed, str):
        parsed = [part.strip() for part in parsed.split(",") if part.strip()]
    if not (isinstance(parsed, list) and all(isinstance(item, str) for item in parsed)):
        raise ValueError(f"{name} must be a list of names, got {text!r}")
    return parsed


__all__ = [
    "BASELINE_S0",
    "CI_METHODS",
    "METRICS",
    "SWEEP_GRID_FILES",
    "VARIANTS",
    "FiguresConfig",
    "MetricChoice",
    "MetricInfo",
    "PrecisionRecallPanel",
    "QuadraticFit",
    "SampleGrid",
    "SweepPanel",
    "baseline_value",
    "best_s",
    "comparison_table",
    "curve",
    "f1_score",
    "finished",
    "fit_quadratic",
    "has_values",
    "improvement_percent",
    "iso_f_recall",
    "load_paper_results",
    "markdown_table",
    "metric_label",
    "missing_message",
    "panel_summary",
    "parse_name_list",
    "precision_recall_panel",
    "runs",
    "sample_grid",
    "select_metric",
    "sweep_panel",
    "validate_paper_results",
    "window",
]
