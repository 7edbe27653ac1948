"""Figures of the derivation notebooks, and the atomic writer for their outputs.

Every function here takes tensors that a notebook has already computed with sdmlib's math and returns a
matplotlib `Figure`; none computes a quantity of the paper, so a figure can never disagree with the numbers the
notebook asserts. Styling uses seaborn inside `with` blocks only: importing this module sets no backend, no rc
parameter and no theme.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from .io import save_json, write_atomically  # noqa: F401  (save_json is part of this module's API)
from .squeeze import MarginalVariances

_STYLE = "whitegrid"
_CONTEXT = "notebook"


def _s0_colours(s0_values) -> dict[float, tuple]:
    """Blues for anti-squeezing (s0 < 0), reds for squeezing, darker for larger |s0|; grey for s0 = 0."""
    largest = max(abs(s0) for s0 in s0_values) or 1.0
    colours = {}
    for s0 in s0_values:
        shade = 0.35 + 0.6 * abs(s0) / largest
        colours[s0] = plt.get_cmap("Blues")(shade) if s0 < 0 else plt.get_cmap("Reds")(shade) if s0 > 0 else "grey"
    return colours


# ----------------------------------------------------------------------------------------------------------------
# Output files.


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save `fig` as a PNG at `path`, atomically, cropped to its content."""
    write_atomically(Path(path), lambda file: fig.savefig(file, format="png", dpi=dpi, bbox_inches="tight"))
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------
# Figure 1 of the paper.


def _noise_ellipse(ax, centre: torch.Tensor, covariance: torch.Tensor, num_std: float, **kwargs) -> Ellipse:
    """Draw the num_std-σ contour of N(centre, covariance) (2-D) on `ax`."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.to(torch.float64))  # ascending
    major = eigenvectors[:, 1]
    angle = math.degrees(math.atan2(float(major[1]), float(major[0])))
    width, height = (2 * num_std * eigenvalues.flip(0).clamp(min=0).sqrt()).tolist()
    ellipse = Ellipse(centre.tolist(), width, height, angle=angle, fill=False, **kwargs)
    ax.add_patch(ellipse)
    return ellipse


def plot_squeeze_illustration(
    x0: torch.Tensor,
    axis: torch.Tensor,
    noisy: Mapping[float, torch.Tensor],
    noise_covariances: Mapping[float, torch.Tensor],
    alpha_bar: float,
    t: int,
    variant: str,
    num_std: float = 2.0,
) -> Figure:
    """Figure 1: 2-D data, then the same data noised with isotropic, squeezed and anti-squeezed noise.

    Args:
        x0: (N, 2) clean samples, panel (a).
        axis: (2,) unit principal axis v̂ of `x0`, drawn as an arrow from the data mean in every panel.
        noisy: squeeze strength s -> (N, 2) samples x_t = √ᾱ x_0 + √(1−ᾱ) S(s) ε, one panel each, in the order
            given (s = 0 is titled isotropic, s > 0 squeezed, s < 0 anti-squeezed).
        noise_covariances: s -> (2, 2) covariance (1−ᾱ) S(s)² of the noise term, drawn as its `num_std`-σ ellipse
            around √ᾱ·mean(x0), so that the shape of the noise is visible under the scatter.
        alpha_bar, t, variant: ᾱ_t, the timestep and the squeeze variant, for the titles.
    """
    x0 = x0.detach().to("cpu", torch.float64)
    axis = axis.detach().to("cpu", torch.float64)
    mean = x0.mean(dim=0)
    panels = [("(a) data $x_0$", None, x0)] + [
        (_illustration_title(letter, s), s, samples.detach().to("cpu", torch.float64))
        for letter, (s, samples) in zip("bcdefgh", noisy.items(), strict=False)  # at most 7 noisy panels
    ]
    # A high quantile rather than the maximum, so that a few far-out noise samples do not shrink the clouds.
    limit = 1.1 * max(float(torch.quantile(samples.abs().flatten(), 0.999)) for _, _, samples in panels)
    arrow_length = 0.45 * limit
    palette = sns.color_palette("deep")

    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 4.4), sharex=True, sharey=True)
        for ax, (title, s, samples) in zip(axes, panels, strict=True):
            ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.35, color=palette[0], linewidths=0, rasterized=True)
            # The mean of x_t is √ᾱ·mean(x_0): arrow and ellipse sit where the cloud is.
            centre = mean if s is None else math.sqrt(alpha_bar) * mean
            ax.annotate(
                "",
                xy=(centre + arrow_length * axis).tolist(),
                xytext=centre.tolist(),
                arrowprops={"arrowstyle": "-|>", "color": palette[3], "lw": 2.2, "mutation_scale": 18},
            )
            ax.plot([], [], color=palette[3], lw=2.2, label=r"$\hat v$ (first principal axis)")
            if s is not None:
                _noise_ellipse(
                    ax,
                    centre,
                    noise_covariances[s],
                    num_std,
                    edgecolor="black",
                    lw=1.6,
                    ls="--",
                    label=rf"{num_std:g}$\sigma$ contour of $\sqrt{{1-\bar\alpha}}\,S\varepsilon$",
                )
            ax.set_title(title)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            ax.set_aspect("equal")
            ax.set_xlabel("$x^{(1)}$")
        axes[0].set_ylabel("$x^{(2)}$")
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, -0.04))
        fig.suptitle(
            rf"Squeezed noise in 2-D ({variant.upper()}, eq. 9): $x_t = \sqrt{{\bar\alpha}}\,x_0 + "
            rf"\sqrt{{1-\bar\alpha}}\,S(s)\,\varepsilon$ at $t = {t}$, $\bar\alpha_t = {alpha_bar:.2f}$",
            y=1.02,
        )
        fig.tight_layout()
    return fig


def _illustration_title(letter: str, s: float) -> str:
    if s == 0:
        kind = "isotropic"
    elif s > 0:
        kind = "squeezed along $\\hat v$"
    else:
        kind = "anti-squeezed along $\\hat v$"
    return f"({letter}) {kind}, $s = {s:g}$"


# ----------------------------------------------------------------------------------------------------------------
# Eq. (3) against the training marginal of `add_noise`.


def plot_marginal_std_ratio(
    std_ratio: Mapping[tuple[str, float], MarginalVariances],
    panels: Sequence[tuple[str, str, str]] = (
        ("sdm", "parallel", r"along $\hat v$ (SDM and HDM alike)"),
        ("hdm", "perpendicular", r"along $\hat v^\perp$ (HDM; SDM is exactly 1)"),
    ),
) -> Figure:
    """Std of eq. (3)'s exact marginal over that of `add_noise`, √(1−ᾱ_t)·λ(s_t), against t, one curve per s0.

    Args:
        std_ratio: (variant, s0) -> `MarginalVariances` whose fields hold the std ratio (not a variance) along v̂
            (`parallel`) and along v̂⊥ (`perpendicular`) at every timestep, index k being the paper's t = k + 1.
        panels: (variant, field, title) of each panel; a dot marks each curve's largest deviation from 1.
    """
    frames = []
    for (variant, s0), ratio in std_ratio.items():
        for field in ("parallel", "perpendicular"):
            values = getattr(ratio, field).detach().to("cpu", torch.float64)
            frames.append(
                pd.DataFrame(
                    {
                        "t": range(1, len(values) + 1),
                        "ratio": values.numpy(),
                        "s0": s0,
                        "variant": variant,
                        "direction": field,
                    }
                )
            )
    table = pd.concat(frames, ignore_index=True)
    s0_values = sorted(table["s0"].unique())
    colours = _s0_colours(s0_values)

    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.4), sharey=True, squeeze=False)
        for ax, (variant, field, title) in zip(axes[0], panels, strict=True):
            panel = table[(table["variant"] == variant) & (table["direction"] == field)]
            sns.lineplot(data=panel, x="t", y="ratio", hue="s0", palette=colours, ax=ax, lw=1.8, legend=False)
            for s0 in s0_values:  # mark where each curve is farthest from 1
                curve = panel[panel["s0"] == s0]
                worst = curve.loc[(curve["ratio"] - 1).abs().idxmax()]
                ax.plot(worst["t"], worst["ratio"], "o", color=colours[s0], ms=5, mec="black", mew=0.6)
            ax.axhline(1.0, color="black", lw=0.8, ls=":")
            ax.set_title(f"std {title}")
            ax.set_xlabel("timestep $t$ (paper's, 1…T)")
            ax.set_ylabel(r"$\rho_t = \sigma_t \,/\, \sqrt{1-\bar\alpha_t}\,\lambda(s_t)$")
        handles = [plt.Line2D([], [], color=colours[s0], lw=1.8, label=f"{s0:g}") for s0 in s0_values]
        fig.legend(handles=handles, title="$s_0$", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle("Exact forward marginal (eq. 3) over the add_noise marginal; dots: largest deviation", y=1.02)
        fig.tight_layout()
    return fig


def plot_monte_carlo_z_scores(
    z_scores: Mapping[tuple[str, float], torch.Tensor],
    wrong_z_scores: Mapping[tuple[str, float], torch.Tensor],
    threshold: float,
) -> Figure:
    """Largest |z| over the covariance entries at each t, for eq. (3) and for the add_noise covariance.

    Args:
        z_scores: (variant, s0) -> (T, n, n) z-scores (empirical − eq. 3) / SE of the simulated chain (2).
        wrong_z_scores: the same against (1−ᾱ_t) S_t², the marginal `add_noise` uses.
        threshold: the tolerance k of the check, drawn as a horizontal line.
    """
    keys = list(z_scores)
    s0_values = sorted({s0 for _, s0 in keys})
    colours = _s0_colours(s0_values)
    variants = list(dict.fromkeys(variant for variant, _ in keys))

    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, axes = plt.subplots(1, len(variants), figsize=(6.2 * len(variants), 4.4), sharey=True, squeeze=False)
        for ax, variant in zip(axes[0], variants, strict=True):
            for s0 in s0_values:
                if (variant, s0) not in z_scores:
                    continue
                exact = z_scores[variant, s0].abs().flatten(1).amax(dim=1)
                wrong = wrong_z_scores[variant, s0].abs().flatten(1).amax(dim=1)
                t = range(1, len(exact) + 1)
                ax.plot(t, exact, color=colours[s0], lw=1.2, label=f"eq. (3), $s_0={s0:g}$")
                ax.plot(t, wrong, color=colours[s0], lw=1.2, ls="--", label=f"add_noise, $s_0={s0:g}$")
            ax.axhline(threshold, color="black", lw=1.0, ls=":", label=f"tolerance $k = {threshold:.2f}$")
            ax.set_yscale("log")
            ax.set_title(f"{variant.upper()}: Monte Carlo check of the covariance")
            ax.set_xlabel("timestep $t$ (paper's, 1…T)")
            ax.set_ylabel(r"$\max_{ij} |\hat\Sigma_{t,ij} - \Sigma_{t,ij}| \,/\, \mathrm{SE}_{ij}$")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Training runs.


def plot_loss_curve(loss_history: Sequence[tuple[int, float]], window: int = 25) -> Figure:
    """Training loss (eq. 4) against the optimisation step: raw points and a running mean over `window` records."""
    frame = pd.DataFrame(loss_history, columns=["step", "loss"])
    frame["running mean"] = frame["loss"].rolling(window, min_periods=1, center=True).mean()
    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(frame["step"], frame["loss"], color="0.75", linewidth=0.8, label="loss")
        ax.plot(frame["step"], frame["running mean"], color="C0", linewidth=2, label=f"running mean ({window})")
        ax.set_yscale("log")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel(r"$\|\varepsilon^{sq} - \hat\varepsilon_\theta\|^2$ (eq. 4)")
        ax.set_title("Training loss")
        ax.legend()
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Figures 2 and 3: a sweep's results. The numbers (curves, fits, the metric a panel uses) come from
# `sdmlib.analysis`; these functions only draw them. Each takes an optional `ax` to draw into (the overview figure
# `plot_figure2` uses it) and returns the Figure it drew on. A panel without data draws an empty frame that says
# which sweep grid to run, so a sweep with some panels missing still gives every figure.

_VARIANT_COLOURS = {"sdm": "C0", "hdm": "C3"}
_S_LABEL = "squeeze strength $s_0$  (< 0: anti-squeezing, 0: DDPM)"


def save_figure_formats(
    fig: Figure, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Save `fig` as `stem`.png and `stem`.pdf (or `formats`), each atomically, cropped to its content."""
    paths = []
    for extension in formats:
        path = Path(f"{stem}.{extension}")
        write_atomically(
            path, lambda file, kind=extension: fig.savefig(file, format=kind, dpi=dpi, bbox_inches="tight")
        )
        paths.append(path)
    return paths


def _new_axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _wrap(text: str, width: int = 42) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) if text else text


def _draw_missing(ax, message: str, title: str | None, ylabel: str = "") -> None:
    """An empty panel that says what is missing and which grid file produces it, labelled like a full one."""
    ax.text(
        0.5,
        0.5,
        _wrap(message, 38),
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize="small",
        color="0.3",
        bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.7"},
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(_S_LABEL)
    ax.set_ylabel(_wrap(ylabel, 36))
    if title:
        ax.set_title(title)


def _short_name(metric) -> str:
    """ "FID-10K", or "PCA Fréchet distance (offline stand-in)": the label without its parenthesis."""
    name = metric.label.split(" (")[0]
    return f"{name} (offline stand-in)" if metric.is_fallback else name


def _note(ax, text: str) -> None:
    if text:
        ax.text(0.01, 0.01, _wrap(text, 70), transform=ax.transAxes, fontsize="x-small", color="0.35", va="bottom")


def _draw_fit(ax, fit, colour, label_prefix: str = "") -> None:
    """The fitted parabola over the fitted s range, s* and its confidence interval as a shaded band."""
    import numpy as np

    s = np.linspace(fit.s_min, fit.s_max, 200)
    centre = fit.window_centre
    distance = f"|s {'+' if centre < 0 else '−'} {abs(centre):g}|" if centre else "|s|"
    scope = "all points" if fit.half_width is None else f"{distance} ≤ {fit.half_width:g}"
    ax.plot(s, fit.predict(s), ls="--", color=colour, lw=1.4, label=f"{label_prefix}quadratic fit ({scope})")
    if math.isfinite(fit.s_star):
        if math.isfinite(fit.ci_low):
            interval = f", {fit.confidence:.0%} CI [{fit.ci_low:.2f}, {fit.ci_high:.2f}] ({fit.method})"
            ax.axvspan(fit.ci_low, fit.ci_high, color=colour, alpha=0.12, lw=0)
        else:
            interval = " (no CI)"
        ax.axvline(fit.s_star, color=colour, lw=1.2, ls="-.", label=f"{label_prefix}$s^* = {fit.s_star:.2f}${interval}")


def plot_metric_vs_s(panel, title: str | None = None, ax=None) -> Figure:
    """Figure 2a (and 2d, 2e): a metric against s over seeds, for one dataset and variant.

    Draws each run as a light point, the per-s mean ± 1 sample standard deviation over seeds (error bars), the
    least-squares parabola of `panel.fit`, its optimum s* with the confidence interval as a shaded vertical band,
    and the DDPM baseline (mean at s = 0) as a horizontal line.

    Args:
        panel: an `sdmlib.analysis.SweepPanel`.
        title: the panel's title; default "<dataset>, <VARIANT>".
        ax: draw into this Axes instead of a new figure.
    """
    title = title or f"{panel.dataset}, {panel.variant.upper()}"
    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, ax = _new_axes(ax, (6.4, 4.6))
        if panel.missing:
            _draw_missing(ax, panel.missing, title, panel.metric.label)
            return fig
        colour = _VARIANT_COLOURS.get(panel.variant, "C0")
        runs, table = panel.runs, panel.curve
        ax.scatter(
            runs["s"],
            runs["value"],
            s=16,
            color=colour,
            alpha=0.3,
            lw=0,
            label=f"single runs ({len(panel.seeds)} seed{'s' if len(panel.seeds) != 1 else ''})",
        )
        spread = table["std"].fillna(0.0)
        several = bool((table["count"] > 1).any())
        ax.errorbar(
            table["s"],
            table["mean"],
            yerr=spread if several else None,
            fmt="o-",
            color=colour,
            ms=5,
            lw=1.6,
            capsize=3,
            label="mean ± 1 std over seeds" if several else "one run per s",
        )
        if panel.fit is not None:
            _draw_fit(ax, panel.fit, "black")
        if math.isfinite(panel.baseline):
            ax.axhline(
                panel.baseline, color="0.4", lw=1.0, ls=":", label=f"DDPM baseline ($s_0 = 0$): {panel.baseline:.3g}"
            )
        ax.set_xlabel(_S_LABEL)
        ax.set_ylabel(_wrap(panel.metric.label, 36))
        ax.set_title(title)
        ax.legend(fontsize="x-small", loc="best")
        _note(ax, panel.fit_note)
        if ax.figure is fig and len(fig.axes) == 1:
            fig.tight_layout()
    return fig


def plot_variants_vs_s(panels: Sequence, title: str | None = None, ax=None) -> Figure:
    """Figure 2b, 2c: one metric against s for SDM and HDM (one fixed seed), with each curve's fitted s*.

    Args:
        panels: `sdmlib.analysis.SweepPanel`s of one dataset, one per variant (the metric column is the same for
            all of them, `sweep_panel` chooses it per dataset).
        title: the panel's title.
        ax: draw into this Axes instead of a new figure.
    """
    present = [panel for panel in panels if not panel.missing]
    title = title or (f"{panels[0].dataset}: SDM and HDM" if panels else "SDM and HDM")
    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, ax = _new_axes(ax, (6.4, 4.6))
        if not present:
            _draw_missing(
                ax,
                panels[0].missing if panels else "no runs in this sweep",
                title,
                panels[0].metric.label if panels else "",
            )
            return fig
        for panel in present:
            colour = _VARIANT_COLOURS.get(panel.variant, "C0")
            seeds = ", ".join(str(seed) for seed in panel.seeds)
            ax.plot(
                panel.curve["s"],
                panel.curve["mean"],
                "o-",
                color=colour,
                lw=1.6,
                ms=5,
                label=f"{panel.variant.upper()} (seed {seeds})",
            )
            if panel.fit is not None and math.isfinite(panel.fit.s_star):
                _draw_fit(ax, panel.fit, colour, f"{panel.variant.upper()}: ")
        baseline = next((panel.baseline for panel in present if math.isfinite(panel.baseline)), math.nan)
        if math.isfinite(baseline):
            ax.axhline(baseline, color="0.4", lw=1.0, ls=":", label=f"DDPM baseline ($s_0 = 0$): {baseline:.3g}")
        ax.set_xlabel(_S_LABEL)
        ax.set_ylabel(_wrap(present[0].metric.label, 36))
        ax.set_title(title)
        ax.legend(fontsize="x-small", loc="best")
        notes = [panel.missing for panel in panels if panel.missing]
        notes += [f"{panel.variant.upper()}: {panel.fit_note}" for panel in present if panel.fit_note]
        _note(ax, "; ".join(notes))
        if len(fig.axes) == 1:
            fig.tight_layout()
    return fig


def plot_precision_recall(panel, title: str | None = None, ax=None, num_contours: int = 8) -> Figure:
    """Figure 2f: precision against recall, one point per s (mean over seeds, labelled with its s), on iso-F1
    contours F1 = 2PR/(P + R), each contour labelled with its value.

    Args:
        panel: an `sdmlib.analysis.PrecisionRecallPanel`.
        title: the panel's title.
        ax: draw into this Axes instead of a new figure.
        num_contours: about this many iso-F1 levels across the visible window.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from .analysis import f1_score

    title = title or f"{panel.dataset}, {panel.variant.upper()}: precision and recall"
    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, ax = _new_axes(ax, (6.0, 5.0))
        if panel.missing:
            _draw_missing(ax, panel.missing, title)
            ax.set_xlabel(_wrap(panel.recall.label, 40))
            ax.set_ylabel(_wrap(panel.precision.label, 40))
            return fig
        points = panel.points
        limits = []
        for column in ("recall", "precision"):
            low, high = float(points[column].min()), float(points[column].max())
            pad = 0.15 * (high - low) + 0.03
            limits.append((max(-0.02, low - pad), min(1.02, high + pad)))  # a point at 1.0 stays visible
        grid_r, grid_p = np.meshgrid(np.linspace(*limits[0], 200), np.linspace(*limits[1], 200))
        grid_f = f1_score(grid_p, grid_r)
        levels = MaxNLocator(num_contours).tick_values(float(grid_f.min()), float(grid_f.max()))
        levels = [level for level in levels if 0 < level < 1]
        contours = ax.contour(grid_r, grid_p, grid_f, levels=levels, colors="0.6", linewidths=0.8, linestyles="--")
        ax.clabel(contours, fmt=lambda f: f"F1 = {f:.2f}", fontsize="x-small")
        colours = _s0_colours(list(points["s"]))
        ax.plot(points["recall"], points["precision"], color="0.75", lw=0.8, zorder=1)
        for row in points.itertuples(index=False):
            ax.scatter(row.recall, row.precision, color=colours[row.s], s=40, edgecolor="black", lw=0.5, zorder=3)
        # One label per position: runs with equal precision and recall share theirs ("s = 0, 0.5").
        for (recall, precision), group in points.groupby(["recall", "precision"], sort=False):
            text = "s = " + ", ".join(f"{s:g}" for s in group["s"])
            ax.annotate(text, (recall, precision), textcoords="offset points", xytext=(5, 4), fontsize="x-small")
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_xlabel(_wrap(panel.recall.label, 40))
        ax.set_ylabel(_wrap(panel.precision.label, 40))
        counts = sorted({int(count) for count in points["count"]})
        ax.set_title(title)
        _note(ax, f"points: mean over {'/'.join(str(c) for c in counts)} seed(s) per s; dashed: iso-F1 contours")
        if len(fig.axes) == 1:
            fig.tight_layout()
    return fig


def plot_sample_grids(grids: Sequence, titles: Sequence[str] | None = None) -> Figure:
    """Figure 3: sample grids side by side (DDPM at s = 0, SDM at the best s), each titled with its s and metric.

    All grids of a sweep are drawn from the same fixed noise, so the images compare one for one.

    Args:
        grids: `sdmlib.analysis.SampleGrid`s; one without a `path` draws an empty panel saying what to run.
        titles: override the default titles "(a) DDPM, s = 0 ...".
    """
    with sns.axes_style("white"), sns.plotting_context(_CONTEXT):
        fig, axes = plt.subplots(1, len(grids), figsize=(5.2 * len(grids), 5.8), squeeze=False)
        for index, (ax, grid) in enumerate(zip(axes[0], grids, strict=True)):
            letter = "abcdefgh"[index]
            kind = "DDPM" if grid.s == 0 else grid.variant.upper()
            title = titles[index] if titles else f"({letter}) {kind}, $s_0 = {grid.s:g}$"
            if grid.path is None:
                _draw_missing(ax, grid.missing, title)
                ax.set_xlabel("")
                continue
            ax.imshow(plt.imread(str(grid.path)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if not titles:
                title += f", seed {grid.seed}\n{_short_name(grid.metric)}: {grid.value:.4g}"
            ax.set_title(title, fontsize="medium")
        fig.tight_layout()
    return fig


def plot_figure2(a, b: Sequence, c: Sequence, d, e, f, titles: Mapping[str, str] | None = None) -> Figure:
    """Figure 2 in one 2×3 figure: (a) metric vs s over seeds, (b), (c) SDM vs HDM, (d), (e) other datasets,
    (f) precision vs recall. Arguments as the single-panel functions take them; `titles` by letter."""
    titles = dict(titles or {})
    with sns.axes_style(_STYLE), sns.plotting_context(_CONTEXT):
        fig, axes = plt.subplots(2, 3, figsize=(19.5, 11.5))
    plot_metric_vs_s(a, titles.get("a", f"(a) {a.dataset}, {a.variant.upper()}"), ax=axes[0, 0])
    plot_variants_vs_s(b, titles.get("b", "(b) SDM and HDM, one seed"), ax=axes[0, 1])
    plot_variants_vs_s(c, titles.get("c", "(c) SDM and HDM, one seed"), ax=axes[0, 2])
    plot_metric_vs_s(d, titles.get("d", f"(d) {d.dataset}, {d.variant.upper()}"), ax=axes[1, 0])
    plot_metric_vs_s(e, titles.get("e", f"(e) {e.dataset}, {e.variant.upper()}"), ax=axes[1, 1])
    plot_precision_recall(f, titles.get("f", f"(f) {f.dataset}: precision and recall"), ax=axes[1, 2])
    fig.tight_layout()
    return fig
