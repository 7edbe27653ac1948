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
