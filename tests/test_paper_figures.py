"""The Figure 2 and 3 plots of sdmlib.figures on synthetic sweeps: with the paper's metrics, with the offline
stand-ins only, and with a dataset missing; each returns a Figure whose axes name the metric drawn."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sdmlib import analysis, figures

matplotlib.use("Agg")  # no display in tests, whatever MPLBACKEND says (switching works after importing pyplot)

GRID = np.round(np.arange(-1.0, 1.01, 0.25), 2)  # (9,)


def synthetic_results(offline_only: bool = False, datasets=("cifar10",), seeds=(0, 1, 2)) -> pd.DataFrame:
    """A results table shaped like sdmlib.sweep's: a U in s with its minimum at −0.35, SDM and HDM, one shared
    s0 = 0 baseline, a failed run; offline_only leaves the paper's metric columns empty (no weights)."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in datasets:
        for variant in analysis.VARIANTS:
            for s0 in GRID:
                if s0 == 0 and variant == "hdm":
                    continue  # the sweep trains the baseline once, as "sdm"
                for seed in seeds:
                    u = (s0 + 0.35) ** 2
                    row = {
                        "run_id": f"{dataset}-{variant}-s0_{s0:g}-seed{seed}",
                        "status": "finished",
                        "dataset": dataset,
                        "variant": variant,
                        "s0": s0,
                        "seed": seed,
                        "num_eval_samples": 512 if offline_only else 10000,
                        "fid": np.nan if offline_only else 34 + 25 * u + rng.normal(0, 0.7),
                        "isc_mean": np.nan if offline_only else 7 - 3 * u + rng.normal(0, 0.05),
                        "precision": np.nan if offline_only else 0.65 + 0.05 * s0,
                        "recall": np.nan if offline_only else 0.5 - 0.2 * s0 - 0.2 * s0**2,
                        "pca_fd": 300 + 200 * u + rng.normal(0, 4),
                        "pca_precision": 0.6 + 0.1 * s0,
                        "pca_recall": 0.5 - 0.2 * s0 - 0.15 * s0**2,
                        "samples_grid": f"runs/{dataset}-{variant}-s0_{s0:g}-seed{seed}/samples_grid.png",
                    }
                    rows.append(row)
    rows.append(
        {
            "run_id": "failed",
            "status": "failed",
            "dataset": datasets[0],
            "variant": "sdm",
            "s0": 0.5,
            "seed": 9,
            "error": "out of memory",
        }
    )
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labels(fig: Figure) -> str:
    """Every axis label, title and text of `fig`, joined."""
    parts = []
    for ax in fig.axes:
        parts += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()] + [text.get_text() for text in ax.texts]
    return " ".join(part.replace("\n", " ") for part in parts)


def panel(frame, dataset="cifar10", variant="sdm", preferred="fid", seeds=None):
    return analysis.sweep_panel(
        frame,
        dataset,
        variant,
        preferred,
        "pca_fd",
        seeds=seeds,
        half_width=0.5,
        grid_file=analysis.SWEEP_GRID_FILES["2d"],
    )


@pytest.mark.parametrize("offline_only", [False, True])
def test_metric_vs_s_names_the_metric_it_plots(offline_only):
    frame = synthetic_results(offline_only)
    fig = figures.plot_metric_vs_s(panel(frame), "(a)")
    assert isinstance(fig, Figure)
    ylabel = fig.axes[0].get_ylabel().replace("\n", " ")
    if offline_only:
        assert ylabel == "PCA Fréchet distance (offline stand-in for FID; lower is better)"
    else:
        assert ylabel == "FID-10K (lower is better)"
    legend = " ".join(text.get_text() for text in fig.axes[0].get_legend().get_texts())
    assert "mean ± 1 std over seeds" in legend and "DDPM baseline" in legend and "95% CI" in legend
    assert "squeeze strength" in fig.axes[0].get_xlabel()


@pytest.mark.parametrize("offline_only", [False, True])
def test_variants_vs_s_for_fid_and_inception_score(offline_only):
    frame = synthetic_results(offline_only)
    fid = [panel(frame, variant=variant, seeds=[0]) for variant in analysis.VARIANTS]
    isc = [panel(frame, variant=variant, preferred="isc_mean", seeds=[0]) for variant in analysis.VARIANTS]
    fig_b = figures.plot_variants_vs_s(fid, "(b)")
    fig_c = figures.plot_variants_vs_s(isc, "(c)")
    legend = " ".join(text.get_text() for text in fig_b.axes[0].get_legend().get_texts())
    assert "SDM (seed 0)" in legend and "HDM (seed 0)" in legend
    ylabel_c = fig_c.axes[0].get_ylabel().replace("\n", " ")
    if offline_only:
        assert "offline stand-in for Inception Score" in ylabel_c and "lower is better, unlike IS" in ylabel_c
    else:
        assert ylabel_c == "Inception Score (higher is better)"
        assert isc[0].fit.s_star == pytest.approx(-0.35, abs=0.05)  # a maximum, for a score


def test_missing_dataset_draws_an_empty_panel_that_says_what_to_run():
    frame = synthetic_results()
    fig = figures.plot_metric_vs_s(panel(frame, dataset="cifar100"), "(d)")
    assert "no runs of cifar100 in this sweep: run params/sweep-fig2d.yaml" in labels(fig)
    assert "FID" in fig.axes[0].get_ylabel()
    fig = figures.plot_variants_vs_s([panel(frame, dataset="celeba64", variant=v) for v in analysis.VARIANTS])
    assert "no runs of celeba64" in labels(fig)
    pr = analysis.precision_recall_panel(frame, "celeba64", grid_file="params/sweep-fig2a.yaml")
    fig = figures.plot_precision_recall(pr)
    assert "no runs of celeba64 in this sweep: run params/sweep-fig2a.yaml" in labels(fig)


@pytest.mark.parametrize("offline_only", [False, True])
def test_precision_recall_has_labelled_points_and_iso_f_contours(offline_only):
    frame = synthetic_results(offline_only)
    fig = figures.plot_precision_recall(analysis.precision_recall_panel(frame, "cifar10"))
    ax = fig.axes[0]
    texts = [text.get_text() for text in ax.texts]
    assert any(text.startswith("F1 = ") for text in texts)  # contour labels
    assert sum(text.startswith("s = ") for text in texts) == len(GRID)  # one label per s
    stand_in = "offline stand-in" in ax.get_xlabel() and "offline stand-in" in ax.get_ylabel()
    assert stand_in == offline_only
    assert "recall" in ax.get_xlabel() and "precision" in ax.get_ylabel()


def test_sample_grids_are_titled_with_s_and_metric_and_a_missing_grid_is_named(tmp_path):
    frame = synthetic_results()
    for s in (0.0, -0.25):
        path = tmp_path / f"runs/cifar10-sdm-s0_{s:g}-seed0/samples_grid.png"
        path.parent.mkdir(parents=True)
        plt.imsave(path, np.random.default_rng(0).random((20, 20, 3)))
    metric = analysis.select_metric(frame, "fid", "pca_fd")
    grids = [analysis.sample_grid(frame, tmp_path, "cifar10", s, metric, seed=0) for s in (0.0, -0.25)]
    fig = figures.plot_sample_grids(grids)
    titles = [ax.get_title() for ax in fig.axes]
    assert "DDPM" in titles[0] and "$s_0 = 0$" in titles[0] and "FID-10K:" in titles[0]
    assert "SDM" in titles[1] and "$s_0 = -0.25$" in titles[1]
    no_run = analysis.sample_grid(frame, tmp_path, "cifar10", 0.6, metric, seed=0, grid_file="params/sweep-fig2a.yaml")
    no_file = analysis.sample_grid(frame, tmp_path, "cifar10", 0.5, metric, seed=0)  # a row whose PNG is gone
    fig = figures.plot_sample_grids([grids[0], no_run, no_file])
    text = labels(fig)
    assert "no sample grid at s = 0.6, seed 0 of cifar10 (SDM) in this sweep: run params/sweep-fig2a.yaml" in text
    assert "the sample grid of run cifar10-sdm-s0_0.5-seed0 is missing: no file" in text


def test_figure2_overview_and_saving_as_png_and_pdf(tmp_path):
    frame = synthetic_results(offline_only=True, datasets=("photos",))
    a = panel(frame, dataset="photos")
    b = [panel(frame, dataset="photos", variant=v, seeds=[0]) for v in analysis.VARIANTS]
    c = [panel(frame, dataset="photos", variant=v, preferred="isc_mean", seeds=[0]) for v in analysis.VARIANTS]
    missing = panel(frame, dataset="cifar100")
    f = analysis.precision_recall_panel(frame, "photos")
    fig = figures.plot_figure2(a, b, c, missing, a, f)
    assert len(fig.axes) == 6
    assert "no runs of cifar100" in labels(fig)
    paths = figures.save_figure_formats(fig, tmp_path / "out" / "fig2")
    assert [path.name for path in paths] == ["fig2.png", "fig2.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig2.pdf", "fig2.png"]  # no temporary left
