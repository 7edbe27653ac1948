# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Figures 2 and 3: sample quality against the squeeze strength
#
# The paper's results (Section 3) are ablations over the squeeze strength $s_0$ of the schedule
# $s(t) = s_0\,\beta_t/\beta_{\max}$: one model trained, sampled and scored per grid point. This notebook reads the
# results table of such a sweep (`<sweep_dir>/results.csv`, written by `sdmlib.sweep`), draws every panel of
# Figure 2 and the sample grids of Figure 3, and puts the paper's numbers next to ours.
#
# | panel | what | the paper found |
# | --- | --- | --- |
# | 2a | FID-10K vs $s$ on CIFAR-10, several seeds | U shape; DDPM 39.8, best 33.6 at $s \approx -0.4$ (~15% better) |
# | 2b | FID vs $s$, SDM against HDM, one seed | the same U, optimum near $s \approx -0.4$; SDM beats HDM for mild anti-squeezing |
# | 2c | Inception Score vs $s$, SDM against HDM | optimum near $s \approx -0.3$ (a maximum: higher IS is better) |
# | 2d, 2e | FID vs $s$ on CIFAR-100 and CelebA-64 | U shape, optima near $s \approx -0.3$ and $-0.2$ |
# | 2f | precision vs recall, points labelled by $s$ | squeezing lowers recall and slightly raises precision; anti-squeezing the reverse |
# | 3 | 36 samples, DDPM against SDM at $s = -0.4$, same noise | sharper outlines with SDM |
#
# ```bash
# papermill notebooks/figures.ipynb outputs/figures.ipynb -p sweep_dir outputs/sweeps/paper
# papermill notebooks/figures.ipynb outputs/figures.ipynb -p sweep_dir outputs/sweeps/smoke \
#     -p main_dataset photos -y 'cross_datasets: [photos, photos]'          # the offline smoke sweep
# ```
#
# Every number comes from `sdmlib.analysis` and every plot from `sdmlib.figures`; this notebook only calls them.
# **Offline metrics.** FID, IS and precision/recall need Inception/VGG weights that an offline machine cannot
# download. A panel whose metric has no values in the sweep uses the offline stand-in instead (the Fréchet distance
# and k-NN precision/recall in pixel-PCA space) and says so on its axis; their values are not comparable with the
# paper's numbers, only their shape in $s$ is.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from sdmlib import analysis, figures, paper_protocol
from sdmlib.analysis import FiguresConfig
from sdmlib.io import save_text
from sdmlib.sweep import read_results

_names_before_parameters = set(globals())

# %% tags=["parameters"]
sweep_dir = "outputs/sweeps/paper"  # the sweep folder with results.csv; relative to the repository root
output_dir = "outputs/figures"  # figures (PNG and PDF), the comparison table and figures.json go here
main_dataset = "cifar10"  # the dataset of panels 2a, 2b, 2c, 2f and Figure 3
cross_datasets = ["cifar100", "celeba64"]  # the datasets of panels 2d and 2e
paper_results = "params/paper_results.yaml"  # the paper's reported numbers, with their source
fit_half_width = 0.5  # fit the parabola within this distance in s of the best grid point (2 or more: all points)
confidence = 0.95  # level of the confidence interval on the fitted optimum s*
ci_method = "delta"  # delta (first order, symmetric) or fieller (exact for Gaussian noise)
comparison_seed = 0  # the one seed of panels 2b, 2c (SDM against HDM) and of Figure 3
protocol = "authors"  # draw the runs of this protocol: authors (the paper's numbers) | paper-text (the ablation)

# %%
config = FiguresConfig.from_namespace(globals(), _names_before_parameters)
output_path = config.output_path
output_path.mkdir(parents=True, exist_ok=True)
display(config)

# %% [markdown]
# ## The sweep
#
# One row per run. Only runs of the chosen `protocol` are drawn: `authors` (their code's sampler and precision/recall,
# which produced the paper's numbers) or `paper-text` (eq. 7 as printed, params/sweep-fig2a-papertext.yaml); a sweep
# folder may hold both, since run names carry the protocol. Only finished runs count; a failed run keeps its error in
# the table. At $s_0 = 0$ the squeeze
# matrix is the identity for both variants (eq. 9), so the sweep trains the DDPM baseline once, as an "sdm" run, and
# both the SDM and the HDM curves use it as their $s_0 = 0$ point.

# %%
all_results = read_results(config.sweep_path)
results = paper_protocol.select_protocol(all_results, config.protocol)
paper = analysis.load_paper_results(config.paper_results_path)
print(f"{len(results)} of {len(all_results)} runs follow protocol {config.protocol!r}")
overview = results.groupby(["dataset", "variant", "status"]).agg(runs=("run_id", "count"), seeds=("seed", "nunique"))
print(f"{len(results)} runs in {config.sweep_path / 'results.csv'}")
display(overview)

# %% [markdown]
# The paper's numbers, as stored in `params/paper_results.yaml` (with the sentences they are quoted from). Null
# where the text states no value: the FID values of CIFAR-100 and CelebA-64, and all Inception Score values.

# %%
source = paper["source"]
print(f"{source['title']}, {', '.join(source['authors'])} ({source['year']}), {source['section']}")
paper_columns = ["panel", "dataset", "variants", "metric", "baseline", "best", "best_s", "improvement_pct"]
display(pd.DataFrame(paper["results"])[paper_columns])

# %% [markdown]
# ## How a curve is summarised
#
# For each $s_0$ the panels show the mean over seeds, with ± one sample standard deviation as error bars, and every
# single run as a light point. The optimum is read two ways:
#
# * the **best grid point**: the $s_0$ with the best mean;
# * the **fitted optimum** $s^* = -b/(2a)$ of the least-squares parabola $y \approx a s^2 + b s + c$ through every run
#   within `fit_half_width` of the best grid point. Over all of $[-1, 1]$ the U is steep at the ends and flat
#   near its bottom, not a parabola; the window fits the parabola where it is one. The shaded band is the
#   confidence interval of $s^*$: from the covariance $\hat\sigma^2 (X^\top X)^{-1}$ of the coefficients, with a
#   Student-$t$ quantile ($n - 3$ degrees of freedom), by the delta method (or Fieller's exact interval for a ratio).
#   With one run per $s_0$ and only three $s_0$ in the window there are no residual degrees of freedom and no band.

# %% [markdown]
# ## Figure 2a: the U shape over seeds
#
# The paper: on CIFAR-10, FID-10K depends on $s$ in a U shape, consistently over several seeds; the DDPM baseline
# averages 39.8 and SDM reaches 33.6 at $s \approx -0.4$, about 15% better.

# %%
grid_files = analysis.SWEEP_GRID_FILES  # panel -> the sweep grid that produces its runs
panel_a = analysis.sweep_panel(
    results, config.main_dataset, "sdm", "fid", "pca_fd", grid_file=grid_files["2a"], **config.fit_options
)
fig = figures.plot_metric_vs_s(panel_a, f"(a) {config.main_dataset}, SDM, all seeds")
produced = {
    "fig2a": {"files": figures.save_figure_formats(fig, output_path / "fig2a"), **analysis.panel_summary(panel_a)}
}
plt.show()
display(panel_a.curve)

# %% [markdown]
# ## Figure 2b and 2c: SDM against HDM, one seed
#
# The paper: with a fixed seed, FID (2b) and Inception Score (2c) follow the same U-shaped trend in $s$ for both
# variants, with optima near $s \approx -0.4$ (FID) and $s \approx -0.3$ (IS); SDM beats HDM for mild
# anti-squeezing. For IS higher is better, so its optimum is a maximum. Offline, panel 2c falls back to the PCA
# Fréchet distance, for which *lower* is better; the axis says so.

# %%
panels_b = analysis.variant_panels(
    results,
    config.main_dataset,
    "fid",
    "pca_fd",
    seeds=[config.comparison_seed],
    grid_file=grid_files["2b"],
    **config.fit_options,
)
fig = figures.plot_variants_vs_s(panels_b, f"(b) {config.main_dataset}, SDM and HDM, seed {config.comparison_seed}")
produced["fig2b"] = {
    "files": figures.save_figure_formats(fig, output_path / "fig2b"),
    **analysis.variant_panels_summary(panels_b),
}
plt.show()

# %%
panels_c = analysis.variant_panels(
    results,
    config.main_dataset,
    "isc_mean",
    "pca_fd",
    seeds=[config.comparison_seed],
    grid_file=grid_files["2c"],
    **config.fit_options,
)
fig = figures.plot_variants_vs_s(panels_c, f"(c) {config.main_dataset}, SDM and HDM, seed {config.comparison_seed}")
produced["fig2c"] = {
    "files": figures.save_figure_formats(fig, output_path / "fig2c"),
    **analysis.variant_panels_summary(panels_c),
}
plt.show()

# %% [markdown]
# ## Figure 2d and 2e: other datasets
#
# The paper: the parabola recurs on CIFAR-100 (2d) and CelebA-64 (2e), again with its best point in mild
# anti-squeezing, near $s \approx -0.3$ and $s \approx -0.2$. A dataset without runs in this sweep gives an empty
# panel naming the grid file to run.

# %%
panel_d, panel_e = [
    analysis.sweep_panel(results, dataset, "sdm", "fid", "pca_fd", grid_file=grid_files[key], **config.fit_options)
    for dataset, key in zip(config.cross_datasets, ("2d", "2e"), strict=True)
]
for name, panel in (("fig2d", panel_d), ("fig2e", panel_e)):
    fig = figures.plot_metric_vs_s(panel, f"({name[-1]}) {panel.dataset}, SDM, all seeds")
    produced[name] = {"files": figures.save_figure_formats(fig, output_path / name), **analysis.panel_summary(panel)}
    plt.show()

# %% [markdown]
# ## Figure 2f: precision against recall
#
# Precision (Kynkänniemi et al., k = 3) measures how many samples fall on the data manifold, recall how much of
# the data manifold the samples cover. The paper: squeezing lowers recall and slightly raises precision,
# anti-squeezing gains much recall for a little precision, and the F-score $F_1 = 2PR/(P + R)$ (dashed contours)
# is again parabolic in $s$. Each point is the mean over seeds at one $s_0$.
#
# **The paper's axes are swapped.** torch-fidelity takes the generated images as `input1` and the real ones as
# `input2`; the authors' code passes the 50 000 real images as `input1` and the 10 000 generated as `input2`. So the
# paper's "precision" is the share of *real* images inside the generated manifold, which is recall, and its "recall"
# is precision; its k-NN radii also come from 50 000 real against 10 000 generated images (their protocol, which
# `protocol: authors` reproduces with `prc_num_real = 50000`). Our axes keep torch-fidelity's orientation; the table
# after the plot sets each of the paper's statements against the column of ours that measures the same thing.

# %%
panel_f = analysis.precision_recall_panel(results, config.main_dataset, "sdm", grid_file=grid_files["2f"])
fig = figures.plot_precision_recall(panel_f, f"(f) {config.main_dataset}, SDM: precision and recall")
produced["fig2f"] = {
    "files": figures.save_figure_formats(fig, output_path / "fig2f"),
    **analysis.panel_summary(panel_f),
}
plt.show()
display(panel_f.points)

# %%
trends_2f = paper_protocol.precision_recall_trends(panel_f.points)
trends_2f.to_csv(output_path / "comparison-2f.csv", index=False)
produced["fig2f"]["trends"] = trends_2f.to_dict(orient="records")
display(trends_2f)

# %% [markdown]
# All six panels in one figure, as the paper lays out Figure 2:

# %%
fig = figures.plot_figure2(panel_a, panels_b, panels_c, panel_d, panel_e, panel_f)
produced["fig2"] = {"files": figures.save_figure_formats(fig, output_path / "fig2"), "metric": "as fig2a-fig2f"}
plt.show()

# %% [markdown]
# ## Figure 3: samples from the same noise
#
# Every run of a sweep draws its 36-image grid from the same fixed noise seeds, so the DDPM grid ($s_0 = 0$) and
# the SDM grid at the best $s_0$ of panel 2a compare image for image. The paper shows SDM at $s = -0.4$ with
# sharper object outlines (and occasional ringing, the precision cost of anti-squeezing).

# %%
best_s = panel_a.best_s if not panel_a.missing else -0.4  # without runs, the empty panel names the paper's s
grids = [
    analysis.sample_grid(
        results,
        config.sweep_path,
        config.main_dataset,
        s,
        panel_a.metric,
        seed=config.comparison_seed,
        grid_file=grid_files["3"],
    )
    for s in (0.0, best_s)
]
fig = figures.plot_sample_grids(grids)
produced["fig3"] = {
    "files": figures.save_figure_formats(fig, output_path / "fig3"),
    "metric": panel_a.metric.column,
    "fallback": panel_a.metric.is_fallback,
    "grids": [analysis.panel_summary(grid) for grid in grids],
}
plt.show()

# %% [markdown]
# ## Ours next to the paper's
#
# One row per paper statement with a numeric optimum (and per variant for 2b, 2c). `metric` names the column we
# used: where it is an offline stand-in, our baseline, best value and improvement are in its units and are not
# comparable with the paper's FID numbers; the location of the optimum is. Improvement is
# (baseline − best)/baseline · 100 for distances (the paper's "~15%"), the other way round for scores. Figure 2f
# states no numbers; its trends, with the paper's precision set against our recall and its recall against our
# precision, are in the table under Figure 2f (`comparison-2f.csv`).

# %%
comparison = analysis.comparison_table(
    results, paper, config.paper_datasets, comparison_seed=config.comparison_seed, **config.fit_options
)
comparison.to_csv(output_path / "comparison.csv", index=False)
shown = comparison.drop(columns=["metric_label"])
save_text(output_path / "comparison.md", analysis.markdown_table(shown))
display(Markdown(analysis.markdown_table(shown)))

# %% [markdown]
# What was produced, and which metric each panel used (also in `figures.json`):

# %%
summary = {
    "config": config.to_dict(),
    "sweep_results": str(config.sweep_path / "results.csv"),
    "num_runs": len(results),
    "num_finished": int((results["status"] == "finished").sum()),
    "figures": produced,
    "tables": [str(output_path / "comparison.csv"), str(output_path / "comparison.md")],
}
figures.save_json(output_path / "figures.json", summary)
pd.DataFrame(
    [
        {
            "figure": name,
            "metric": entry.get("metric", ""),
            "fallback": entry.get("fallback", ""),
            "missing": entry.get("missing", ""),
            "files": ", ".join(path.name for path in entry["files"]),
        }
        for name, entry in produced.items()
    ]
)
