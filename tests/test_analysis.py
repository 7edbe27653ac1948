"""sdmlib.analysis: the quadratic fit of the optimum, metric choice, curves over seeds, the paper's numbers."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from sdmlib import analysis
from sdmlib.analysis import (
    FiguresConfig,
    best_s,
    comparison_table,
    curve,
    f1_score,
    fit_quadratic,
    improvement_percent,
    iso_f_recall,
    load_paper_results,
    markdown_table,
    precision_recall_panel,
    runs,
    select_metric,
    sweep_panel,
    window,
)
from sdmlib.config import PROJECT_ROOT

GRID = np.round(np.arange(-1.0, 1.01, 0.2), 1)  # (11,) the paper's s0 range


def row(dataset="cifar10", variant="sdm", s0=0.0, seed=0, status="finished", **metrics):
    return {
        "run_id": f"{dataset}-{variant}-s0_{s0:g}-seed{seed}",
        "status": status,
        "dataset": dataset,
        "variant": variant,
        "s0": s0,
        "seed": seed,
        "num_eval_samples": 10000,
        **metrics,
    }


# ----------------------------------------------------------------------------------------------------------------
# The quadratic fit.


@pytest.mark.parametrize("method", analysis.CI_METHODS)
def test_fit_recovers_a_known_minimiser_exactly_without_noise(method):
    s = np.repeat(GRID, 3)  # three seeds per s, identical values
    y = 21.0 * (s + 0.37) ** 2 + 34.0
    fit = fit_quadratic(s, y, method=method)
    assert fit.s_star == pytest.approx(-0.37, abs=1e-12)
    assert (fit.a, fit.b, fit.c) == pytest.approx((21.0, 21.0 * 2 * 0.37, 21.0 * 0.37**2 + 34.0), abs=1e-9)
    assert fit.ci_low == pytest.approx(-0.37, abs=1e-6) and fit.ci_high == pytest.approx(-0.37, abs=1e-6)
    assert fit.value_at_optimum == pytest.approx(34.0, abs=1e-9)
    assert fit.note == "" and fit.inside_range and fit.num_points == 33 and fit.dof == 30


def test_fit_with_seeded_noise_covers_the_truth_and_its_interval_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    widths = []
    for num_seeds in (2, 12):
        s = np.repeat(GRID, num_seeds)
        y = 21.0 * (s + 0.37) ** 2 + 34.0 + rng.normal(0.0, 1.0, s.size)
        fit = fit_quadratic(s, y, confidence=0.95)
        assert fit.ci_low <= -0.37 <= fit.ci_high
        widths.append(fit.ci_high - fit.ci_low)
    assert widths[1] < 0.6 * widths[0]  # the width scales as 1/sqrt(seeds): 6x the data, about 0.41x the width


@pytest.mark.parametrize("method", analysis.CI_METHODS)
def test_interval_coverage_is_nominal_over_seeded_replicates(method):
    """Monte Carlo over 400 seeded replicates: coverage within 4 binomial SE of 95% (Fieller's is exact for
    Gaussian residuals, the delta method's first-order accurate, here with well-determined curvature)."""
    rng = np.random.default_rng(1)
    s = np.repeat(GRID, 3)
    replicates = 400
    hits = 0
    for _ in range(replicates):
        y = 20.0 * (s + 0.37) ** 2 + 35.0 + rng.normal(0.0, 2.0, s.size)
        fit = fit_quadratic(s, y, confidence=0.95, method=method)
        hits += fit.ci_low <= -0.37 <= fit.ci_high
    standard_error = math.sqrt(0.95 * 0.05 / replicates)
    assert abs(hits / replicates - 0.95) < 4 * standard_error


def test_no_minimum_when_the_parabola_opens_downward():
    s = GRID
    fit = fit_quadratic(s, -3.0 * s**2 + s + 5.0)
    assert fit.a < 0 and math.isnan(fit.s_star) and math.isnan(fit.ci_low) and math.isnan(fit.ci_high)
    assert "no minimum" in fit.note
    # For a score (higher is better) the same data have a maximum at s = 1/6.
    score = fit_quadratic(s, -3.0 * s**2 + s + 5.0, lower_is_better=False)
    assert score.s_star == pytest.approx(1 / 6, abs=1e-12)
    assert "no maximum" in fit_quadratic(s, 3.0 * s**2, lower_is_better=False).note


def test_too_few_distinct_s_is_an_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"^s: a quadratic needs at least 3 distinct values of s, got 2"):
        fit_quadratic([0.0, 0.0, 0.5, 0.5], [1.0, 1.1, 2.0, 2.1])
    with pytest.raises(ValueError, match="half_width=0.1 leaves 1 distinct"):
        fit_quadratic(GRID, (GRID + 0.4) ** 2, half_width=0.1)
    with pytest.raises(ValueError, match="same length"):
        fit_quadratic([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="confidence"):
        fit_quadratic(GRID, GRID**2, confidence=1.5)
    with pytest.raises(ValueError, match="method"):
        fit_quadratic(GRID, GRID**2, method="bootstrap")


def test_three_points_have_no_confidence_interval():
    fit = fit_quadratic([-0.5, 0.0, 0.5], [2.0, 1.0, 3.0])
    assert math.isfinite(fit.s_star) and math.isnan(fit.ci_low) and fit.dof == 0
    assert "no residual degrees of freedom" in fit.note


def test_fieller_interval_is_unbounded_when_the_curvature_is_not_significant():
    rng = np.random.default_rng(1)
    y = 0.05 * GRID**2 + rng.normal(0.0, 5.0, GRID.size)  # this draw: a ≈ 1.2 > 0, far from significant
    fit = fit_quadratic(GRID, y, method="fieller")
    assert fit.a > 0 and math.isfinite(fit.s_star)
    assert math.isnan(fit.ci_low) and math.isnan(fit.ci_high) and "unbounded" in fit.note
    delta = fit_quadratic(GRID, y, method="delta")  # the delta method still gives a (very wide) finite interval
    assert delta.ci_high - delta.ci_low > 2.0


def test_window_keeps_points_near_the_best_mean_and_improves_a_non_parabolic_fit():
    s = np.repeat(GRID, 2)
    y = (s + 0.4) ** 4 + 0.5 * (s + 0.4) ** 2  # a U that is not a parabola: flat bottom, steep sides
    mask, s_best = window(s, y, half_width=0.4)
    assert s_best == pytest.approx(-0.4)
    assert set(np.round(s[mask], 1)) == {-0.8, -0.6, -0.4, -0.2, 0.0}
    windowed = fit_quadratic(s, y, half_width=0.4)
    everything = fit_quadratic(s, y)
    assert windowed.window_centre == pytest.approx(-0.4) and windowed.half_width == 0.4
    assert (windowed.s_min, windowed.s_max) == pytest.approx((-0.8, 0.0))
    assert abs(windowed.s_star + 0.4) < abs(everything.s_star + 0.4)
    assert window(s, y, None)[0].all()


# ----------------------------------------------------------------------------------------------------------------
# Metric choice and labels.


def test_select_metric_prefers_the_papers_metric_and_falls_back_to_the_offline_one():
    paper = pd.DataFrame([row(fid=35.0, pca_fd=300.0), row(s0=-0.4, fid=33.0, pca_fd=290.0)])
    chosen = select_metric(paper, "fid", "pca_fd")
    assert chosen.column == "fid" and not chosen.is_fallback and chosen.available
    assert chosen.label == "FID-10K (lower is better)"

    offline = pd.DataFrame([row(fid=np.nan, pca_fd=300.0, num_eval_samples=512)])
    chosen = select_metric(offline, "fid", "pca_fd")
    assert chosen.column == "pca_fd" and chosen.is_fallback and chosen.lower_is_better
    assert chosen.label == "PCA Fréchet distance (offline stand-in for FID; lower is better)"

    inception = select_metric(offline, "isc_mean", "pca_fd")
    assert inception.column == "pca_fd" and "unlike IS" in inception.label and "lower is better" in inception.label

    assert select_metric(pd.DataFrame([row(fid=30.0, num_eval_samples=512)]), "fid").label.startswith("FID (512 ")
    failed_only = pd.DataFrame([row(status="failed", fid=30.0)])
    assert not select_metric(failed_only, "fid", "pca_fd").available
    with pytest.raises(ValueError, match="unknown metric column"):
        select_metric(paper, "fidd")


# ----------------------------------------------------------------------------------------------------------------
# Curves over seeds and the shared baseline.


def sweep_frame():
    """Hand-made: SDM and HDM at s0 in {-0.4, 0.4}, one shared s0 = 0 SDM baseline, two seeds, a failed run."""
    rows = []
    for seed, offset in ((0, 0.0), (1, 2.0)):
        rows.append(row(s0=0.0, seed=seed, fid=40.0 + offset, pca_fd=400.0 + offset))
        rows.append(row(s0=-0.4, seed=seed, fid=34.0 + offset, pca_fd=340.0 + offset))
        rows.append(row(s0=0.4, seed=seed, fid=50.0 + offset, pca_fd=500.0 + offset))
        rows.append(row(variant="hdm", s0=-0.4, seed=seed, fid=36.0 + offset, pca_fd=360.0 + offset))
        rows.append(row(variant="hdm", s0=0.4, seed=seed, fid=52.0 + offset, pca_fd=520.0 + offset))
    rows.append(row(s0=-0.2, seed=0, status="failed"))  # no metrics: ignored
    rows.append(row(s0=-0.6, seed=0, fid=np.nan, pca_fd=np.nan))  # finished without a value: ignored
    return pd.DataFrame(rows)


def test_curve_aggregates_seeds_and_hdm_shares_the_s0_0_baseline():
    frame = sweep_frame()
    sdm = curve(frame, "cifar10", "sdm", "fid")
    assert list(sdm["s"]) == [-0.4, 0.0, 0.4]
    assert list(sdm["mean"]) == [35.0, 41.0, 51.0] and list(sdm["count"]) == [2, 2, 2]
    assert sdm["std"].iloc[0] == pytest.approx(math.sqrt(2.0))  # sample std of {34, 36}
    assert list(sdm["min"]) == [34.0, 40.0, 50.0] and list(sdm["max"]) == [36.0, 42.0, 52.0]
    hdm = curve(frame, "cifar10", "hdm", "fid")
    assert list(hdm["s"]) == [-0.4, 0.0, 0.4] and list(hdm["mean"]) == [37.0, 41.0, 53.0]
    assert (runs(frame, "cifar10", "hdm", "fid").query("s == 0")["variant"] == "sdm").all()
    one_seed = curve(frame, "cifar10", "hdm", "fid", seeds=[1])
    assert list(one_seed["mean"]) == [38.0, 42.0, 54.0] and one_seed["std"].isna().all()


def test_runs_prefer_the_variants_own_baseline_row_and_read_minus_zero_as_zero():
    frame = pd.DataFrame(
        [
            row(s0=-0.0, seed=0, fid=40.0),
            row(variant="hdm", s0=0.0, seed=0, fid=41.0),
            row(variant="hdm", s0=0.5, seed=0, fid=45.0),
        ]
    )
    hdm = runs(frame, "cifar10", "hdm", "fid")
    assert list(hdm["value"]) == [41.0, 45.0]  # one s0 = 0 row per seed: the hdm one
    sdm = runs(frame, "cifar10", "sdm", "fid")
    assert list(sdm["s"]) == [0.0] and math.copysign(1.0, sdm["s"].iloc[0]) == 1.0


def test_best_s_baseline_and_improvement():
    table = curve(sweep_frame(), "cifar10", "sdm", "fid")
    assert best_s(table, lower_is_better=True) == (-0.4, 35.0)
    assert best_s(table, lower_is_better=False) == (0.4, 51.0)
    assert improvement_percent(39.8, 33.6) == pytest.approx(15.578, abs=1e-3)  # the paper's "~15%"
    assert improvement_percent(6.0, 6.6, lower_is_better=False) == pytest.approx(10.0)
    assert math.isnan(improvement_percent(math.nan, 1.0))
    with pytest.raises(ValueError, match="empty"):
        best_s(table.iloc[:0])


def test_sweep_panel_without_runs_names_the_grid_to_run():
    panel = sweep_panel(sweep_frame(), "cifar100", "sdm", "fid", "pca_fd", grid_file="params/sweep-fig2d.yaml")
    assert panel.missing == "no runs of cifar100 in this sweep: run params/sweep-fig2d.yaml"
    assert panel.runs.empty and panel.fit is None
    few = sweep_panel(sweep_frame(), "cifar10", "sdm", "fid", seeds=[0], half_width=0.1)
    assert few.fit is None and "no fit" in few.fit_note and few.best_s == -0.4


def test_precision_recall_panel_means_and_f_score():
    frame = pd.DataFrame(
        [
            row(s0=s, seed=seed, pca_precision=0.6 + 0.1 * s + 0.01 * seed, pca_recall=0.5 - 0.2 * s)
            for s in (-0.4, 0.0, 0.4)
            for seed in (0, 1)
        ]
    )
    panel = precision_recall_panel(frame, "cifar10")
    assert panel.precision.column == "pca_precision" and "offline stand-in for precision" in panel.precision.label
    assert list(panel.points["precision"]) == pytest.approx([0.565, 0.605, 0.645])
    assert list(panel.points["recall"]) == pytest.approx([0.58, 0.5, 0.42])
    p, r = panel.points["precision"], panel.points["recall"]
    assert list(panel.points["f_score"]) == pytest.approx(list(2 * p * r / (p + r)))
    assert precision_recall_panel(frame, "celeba64").missing.startswith("no runs of celeba64")


def test_iso_f_contour_has_the_stated_f_score():
    precision = np.linspace(0.35, 1.0, 50)
    recall = iso_f_recall(precision, 0.6)
    valid = np.isfinite(recall)
    assert valid.any() and not valid[precision <= 0.3].any()
    np.testing.assert_allclose(f1_score(precision[valid], recall[valid]), 0.6, rtol=1e-12)
    assert f1_score(0.0, 0.0) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# The paper's numbers and the comparison table.


def test_paper_results_file_loads_and_states_the_papers_numbers():
    paper = load_paper_results("params/paper_results.yaml")
    assert paper["source"]["title"] == "Squeezed Diffusion Models" and paper["source"]["year"] == 2025
    by_panel = {entry["panel"]: entry for entry in paper["results"]}
    assert set(by_panel) == {"2a", "2b", "2c", "2d", "2e", "2f", "3"}
    a = by_panel["2a"]
    assert (a["baseline"], a["best"], a["best_s"], a["improvement_pct"]) == (39.8, 33.6, -0.4, 15)
    assert "39.8" in a["quote"] and "33.6" in a["quote"]
    assert by_panel["2c"]["best_s"] == -0.3 and by_panel["2c"]["metric"] == "isc_mean"
    assert (by_panel["2d"]["best_s"], by_panel["2e"]["best_s"]) == (-0.3, -0.2)
    assert by_panel["2d"]["baseline"] is None and by_panel["2e"]["best"] is None  # not stated in the text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["results"][0].update(bset=33.6), r"results\[0\]: unknown key\(s\) \['bset'\]"),
        (lambda d: d["results"][0].pop("quote"), r"results\[0\]: missing key\(s\) \['quote'\]"),
        (lambda d: d["results"][0].update(baseline="39.8"), r"panel 2a\): baseline must be a number or null"),
        (lambda d: d["results"][1].update(panel="2a"), r"results\[1\] \(panel 2a\): duplicate panel"),
        (lambda d: d["results"][0].update(dataset="mnist"), "dataset must be one of"),
        (lambda d: d["results"][0].update(metric="pca_fd"), "metric must be null or one of"),
        (lambda d: d["results"][0].update(panel=3), "panel must be a string"),
        (lambda d: d["source"].pop("year"), r"source: missing key\(s\) \['year'\]"),
        (lambda d: d.update(extra=1), "exactly the keys"),
    ],
)
def test_a_bad_paper_results_file_is_a_clear_error(tmp_path, edit, message):
    loaded = yaml.safe_load((PROJECT_ROOT / "params" / "paper_results.yaml").read_text())
    edit(loaded)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(loaded, allow_unicode=True))
    with pytest.raises(ValueError, match=message):
        load_paper_results(path)


def test_paper_results_that_are_not_yaml_or_missing_are_clear_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("source: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_paper_results(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="no such file"):
        load_paper_results(tmp_path / "absent.yaml")


def test_comparison_table_on_a_hand_made_sweep():
    paper = load_paper_results("params/paper_results.yaml")
    table = comparison_table(sweep_frame(), paper, comparison_seed=1)
    assert list(table["panel"]) == ["2a", "2b", "2b", "2c", "2c", "2d", "2e"]  # 2f and 3 are qualitative
    a = table.iloc[0]
    assert (a["dataset"], a["metric"], a["paper_baseline"], a["paper_best"]) == ("cifar10", "fid", 39.8, 33.6)
    assert (a["baseline"], a["best"], a["best_s"]) == (41.0, 35.0, -0.4)
    assert a["improvement_pct"] == pytest.approx(100 * 6.0 / 41.0)
    # The parabola through the means (−0.4, 35), (0, 41), (0.4, 51): a = 12.5, b = 20, s* = −0.8, an extrapolation.
    assert a["fitted_s_star"] == pytest.approx(-0.8)
    assert "outside the fitted s range" in a["note"]
    assert a["num_runs"] == 6
    hdm = table[(table["panel"] == "2b") & (table["variant"] == "hdm")].iloc[0]
    assert (hdm["seeds"], hdm["baseline"], hdm["best"], hdm["num_runs"]) == ("seed 1", 42.0, 38.0, 3)
    inception = table[table["panel"] == "2c"].iloc[0]
    assert inception["paper_metric"] == "isc_mean" and inception["metric"] == "pca_fd"  # offline stand-in
    missing = table[table["panel"] == "2d"].iloc[0]
    assert missing["num_runs"] == 0 and "run params/sweep-fig2d.yaml" in missing["note"]
    # A sweep on another dataset stands in for the paper's.
    mapped = comparison_table(sweep_frame().assign(dataset="photos"), paper, {"cifar10": "photos"})
    assert mapped.iloc[0]["dataset"] == "photos" and mapped.iloc[0]["baseline"] == 41.0


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": ["x|y", "z"], "b": [1.23456, math.nan]}))
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1.23 |", "| z |  |"]


# ----------------------------------------------------------------------------------------------------------------
# The notebook's parameters.


def test_figures_config_reads_papermill_parameters_and_says_what_is_wrong(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.csv").write_text("run_id\n")
    for cross in ('["photos", "photos"]', "[photos, photos]", "photos,photos", ["photos", "photos"]):
        config = FiguresConfig.from_mapping({"sweep_dir": str(sweep), "cross_datasets": cross})
        assert config.cross_datasets == ("photos", "photos")
    assert config.paper_datasets == {"cifar10": "cifar10", "cifar100": "photos", "celeba64": "photos"}
    assert config.fit_options == {"half_width": 0.5, "confidence": 0.95, "method": "delta"}
    with pytest.raises(ValueError, match=r"cross_datasets\[1\] must be one of"):
        FiguresConfig.from_mapping({"sweep_dir": str(sweep), "cross_datasets": ["photos", "imagenet"]})
    with pytest.raises(ValueError, match="main_dataset must be one of"):
        FiguresConfig.from_mapping({"sweep_dir": str(sweep), "main_dataset": "cifar11"})
    with pytest.raises(ValueError, match="must name 2 datasets"):
        FiguresConfig.from_mapping({"sweep_dir": str(sweep), "cross_datasets": ["photos"]})
    with pytest.raises(ValueError, match="unknown parameter"):
        FiguresConfig.from_mapping({"sweep_dir": str(sweep), "main_datset": "photos"})
    with pytest.raises(ValueError, match=r"does not exist: run the paper's sweep.*papermill notebooks/sweep.ipynb"):
        FiguresConfig.from_mapping({"sweep_dir": str(tmp_path / "absent")})
    (sweep / "results.csv").unlink()
    with pytest.raises(ValueError, match="has no results.csv"):
        FiguresConfig.from_mapping({"sweep_dir": str(sweep)})


# ----------------------------------------------------------------------------------------------------------------
# Like with like: the protocol of the runs, and Figure 2f's swapped axes.


def test_select_protocol_keeps_one_protocols_runs_and_old_tables_whole():
    from sdmlib.paper_protocol import select_protocol

    frame = pd.DataFrame([{**row(s0=0.0), "protocol": "authors"}, {**row(s0=0.4), "protocol": "paper-text"}])
    assert list(select_protocol(frame, "authors")["s0"]) == [0.0]
    assert list(select_protocol(frame, "paper-text")["s0"]) == [0.4]
    assert len(select_protocol(frame.drop(columns="protocol"), "authors")) == 2  # written before protocols


def test_precision_recall_trends_set_the_papers_precision_against_our_recall():
    """The paper: squeezing lowers its "recall" and slightly raises its "precision", anti-squeezing the reverse. Its
    axes are swapped (real images as torch-fidelity's input1), so its recall is our precision and vice versa."""
    from sdmlib.paper_protocol import precision_recall_trends

    # Ours, in torch-fidelity's orientation: precision falls with squeezing, recall rises.
    points = pd.DataFrame({"s": [-0.5, 0.0, 0.5], "precision": [0.7, 0.6, 0.5], "recall": [0.4, 0.5, 0.55]})
    trends = precision_recall_trends(points).set_index(["paper_axis", "direction"])
    assert trends.loc[("recall", "squeezing"), "our_column"] == "precision"
    assert trends.loc[("recall", "squeezing"), "our_change"] == pytest.approx(-0.1)
    assert trends.loc[("precision", "squeezing"), "our_column"] == "recall"
    assert trends.loc[("precision", "anti-squeezing"), "our_change"] == pytest.approx(-0.1)
    assert trends["agrees"].all()  # these points show the paper's trends once the names are swapped
    unswapped = points.rename(columns={"precision": "recall", "recall": "precision"})
    assert not precision_recall_trends(unswapped)["agrees"].any()
    empty = precision_recall_trends(points[points["s"] == 0.0])
    assert empty["agrees"].isna().all()
