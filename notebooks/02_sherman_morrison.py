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
# # 02 · Inverting the squeeze: Sherman–Morrison (eq. 11) and the determinant
#
# The sampler whitens with $S_t^{-1}$ at every reverse step (eq. 5), so it needs the inverse of the squeeze matrix
# of eq. (9) in closed form. This notebook
#
# 1. derives the paper's eq. (11), $(S^{\mathrm{SDM}})^{-1} = I + \hat v\hat v^\top(e^{s} - 1)$, from the
#    Sherman–Morrison formula, and the HDM inverse the same way;
# 2. shows that both inverses are $S(-s)$, and that $\det S^{\mathrm{HDM}} = 1$ while $\det S^{\mathrm{SDM}} = e^{-s}$;
# 3. checks `sdmlib.inverse_squeeze_matrix` against `torch.linalg.inv` over random axes, dimensions $n = 2 \dots 8$
#    and strengths $s \in [-3, 3]$, the determinants against `torch.linalg.det`, and that
#    `sdmlib.apply_squeeze(..., inverse=True)` undoes `apply_squeeze` on image batches with one $s$ per sample.
#
# Everything is float64 and deterministic, so every tolerance is round-off.

# %% tags=["parameters"]
output_dir = "outputs/derivations"  # figures and JSON summary go to <output_dir>/seed<seed>/ (from the repo root)
seed = 0  # seeds every random draw below
n_min = 2  # smallest dimension n of the random checks (HDM needs n ≥ 2)
n_max = 8  # largest dimension n
num_axes_per_n = 40  # random axes v̂ per dimension
num_s_per_axis = 50  # random strengths s per axis
s_max = 3.0  # s is drawn uniformly from [−s_max, s_max]
batch_size = 16  # B of the (B, n, H, W) batches for apply_squeeze
image_size = 8  # height and width of those batches
rtol = 1e-12  # relative round-off tolerance for float64 matrices (condition numbers here are at most e^{2 s_max})

# %%
import math
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

import sdmlib
from sdmlib import figures
from sdmlib.config import seeded_output_dir

start_time = time.perf_counter()
output_dir = seeded_output_dir(output_dir, seed)  # <output_dir>/seed<seed>/, relative to the repository root
torch.set_num_threads(1)  # tiny matrices: intra-op threads only contend with one another on a small CPU
torch.manual_seed(seed)
generator = torch.Generator().manual_seed(seed)
variants = ("sdm", "hdm")
F64 = torch.float64

# %% [markdown]
# ## The squeeze matrices as rank-1 updates
#
# Eq. (9), with $\hat v$ the unit principal axis and $n$ the number of channels:
#
# $$S^{\mathrm{SDM}}(s) = I + \hat v\hat v^\top\,(e^{-s} - 1), \qquad
#   S^{\mathrm{HDM}}(s) = e^{-s}\,\hat v\hat v^\top + e^{s/(n-1)}\,(I - \hat v\hat v^\top)
#   = e^{s/(n-1)}\,I + \hat v\hat v^\top\,\big(e^{-s} - e^{s/(n-1)}\big). \tag{9}$$
#
# Both are a multiple of the identity plus a rank-1 term, $A + u w^\top$, with
#
# | | $A$ | $u$ | $w$ |
# |---|---|---|---|
# | SDM | $I$ | $(e^{-s} - 1)\,\hat v$ | $\hat v$ |
# | HDM | $e^{s/(n-1)}\,I$ | $(e^{-s} - e^{s/(n-1)})\,\hat v$ | $\hat v$ |
#
# ## Sherman–Morrison
#
# For invertible $A$ and vectors $u, w$ with $1 + w^\top A^{-1}u \ne 0$,
#
# $$(A + u w^\top)^{-1} = A^{-1} - \frac{A^{-1}u\,w^\top A^{-1}}{1 + w^\top A^{-1} u}.$$
#
# *Proof.* Multiply out, writing $\gamma = w^\top A^{-1}u$ (a scalar):
# $(A + uw^\top)\big(A^{-1} - \frac{A^{-1}uw^\top A^{-1}}{1+\gamma}\big)
#  = I + uw^\top A^{-1} - \frac{u\,w^\top A^{-1} + u\,(w^\top A^{-1}u)\,w^\top A^{-1}}{1+\gamma}
#  = I + uw^\top A^{-1} - \frac{(1+\gamma)\,u w^\top A^{-1}}{1+\gamma} = I$. $\square$
#
# The companion *matrix determinant lemma* gives the determinant from the same scalar:
# $\det(A + uw^\top) = \det A\,(1 + w^\top A^{-1}u)$.
#
# ## Eq. (11): the SDM inverse
#
# $A = A^{-1} = I$, $u = (e^{-s}-1)\hat v$, $w = \hat v$ and $\hat v^\top\hat v = 1$, so
# $1 + w^\top A^{-1}u = 1 + (e^{-s} - 1) = e^{-s}$ (never zero) and
#
# $$(S^{\mathrm{SDM}})^{-1} = I - \frac{(e^{-s}-1)\,\hat v\hat v^\top}{e^{-s}}
#   = I - (1 - e^{s})\,\hat v\hat v^\top = I + \hat v\hat v^\top\,(e^{s} - 1). \tag{11}$$
#
# ## The HDM inverse
#
# $A^{-1} = e^{-s/(n-1)}I$, so $1 + w^\top A^{-1}u = 1 + e^{-s/(n-1)}(e^{-s} - e^{s/(n-1)})
# = e^{-s}e^{-s/(n-1)} = e^{-sn/(n-1)}$ and
#
# $$\frac{A^{-1}u\,w^\top A^{-1}}{1 + w^\top A^{-1}u}
#   = e^{-2s/(n-1)}\,\big(e^{-s} - e^{s/(n-1)}\big)\,e^{sn/(n-1)}\,\hat v\hat v^\top
#   = \big(e^{-s/(n-1)} - e^{s}\big)\,\hat v\hat v^\top,$$
#
# using $-\tfrac{2s}{n-1} + \tfrac{sn}{n-1} = \tfrac{s(n-2)}{n-1}$, and $\tfrac{s(n-2)}{n-1} - s = -\tfrac{s}{n-1}$,
# $\tfrac{s(n-2)}{n-1} + \tfrac{s}{n-1} = s$. Hence
#
# $$(S^{\mathrm{HDM}})^{-1} = e^{-s/(n-1)}\,I - \big(e^{-s/(n-1)} - e^{s}\big)\,\hat v\hat v^\top
#   = e^{s}\,\hat v\hat v^\top + e^{-s/(n-1)}\,(I - \hat v\hat v^\top).$$
#
# **Both inverses are $S(-s)$**: replace $s$ by $-s$ in (9) and compare. Inverting a squeeze flips the sign of its
# strength: squeezing by $s$ and anti-squeezing by $s$ cancel, for either variant. This is also read off the
# eigenvalues: $S(s)$ has $\lambda_\parallel = e^{-s}$ on $\hat v$ and $\lambda_\perp = 1$ (SDM) or $e^{s/(n-1)}$ (HDM)
# on the $(n-1)$-dimensional $\hat v^\perp$; the inverse has the reciprocals $e^{s}$ and $1$ or $e^{-s/(n-1)}$.
#
# ## The determinants
#
# From the eigenvalues, or from the lemma (the Sherman–Morrison denominator times $\det A$):
#
# $$\det S^{\mathrm{SDM}} = e^{-s}\cdot 1^{\,n-1} = e^{-s}, \qquad
#   \det S^{\mathrm{HDM}} = e^{-s}\cdot\big(e^{s/(n-1)}\big)^{n-1} = 1
#   \quad\big(= e^{sn/(n-1)} \cdot e^{-sn/(n-1)}\big).$$
#
# HDM is *volume preserving*, the "uncertainty preserving" squeeze of the paper's quantum analogy: it takes from
# $\hat v$ exactly the volume it gives to $\hat v^\perp$. SDM changes the noise volume by $e^{-s}$.
#
# ## Checks
#
# Random cases: for each $n \in \{2, \dots, 8\}$, `num_axes_per_n` axes with i.i.d. standard normal entries
# (normalised by the library), each with `num_s_per_axis` strengths $s \sim U[-3, 3]$. For each case and variant:
# the closed form `inverse_squeeze_matrix` against `torch.linalg.inv(squeeze_matrix(...))` and against the
# Sherman–Morrison formula evaluated with the $(A, u, w)$ of the table; $S(s)^{-1} = S(-s)$; $S\,S^{-1} = I$; the
# determinant. The condition number of $S$ is at most $e^{2|s|} \le e^{6} \approx 400$ (HDM, $n = 2$), so
# `torch.linalg.inv` is accurate to $\sim 10^{-13}$ relative and `rtol` = $10^{-12}$ is round-off, not slack.

# %%
rows = []
for n in range(n_min, n_max + 1):
    axes = torch.randn(num_axes_per_n, n, generator=generator, dtype=F64)  # (A, n), not normalised: the library does it
    strengths = (2 * torch.rand(num_axes_per_n, num_s_per_axis, generator=generator, dtype=F64) - 1) * s_max  # (A, K)
    v = axes / axes.norm(dim=1, keepdim=True)  # (A, n)
    identity = torch.eye(n, dtype=F64)
    for variant in variants:
        # (A, K, n, n) stacks: one random axis per row, one strength per column.
        squeeze = torch.stack([sdmlib.squeeze_matrix(axis, s, variant) for axis, s in zip(axes, strengths)])
        closed_form = torch.stack([sdmlib.inverse_squeeze_matrix(axis, s, variant)  # eq. (11)
                                   for axis, s in zip(axes, strengths)])
        flipped = torch.stack([sdmlib.squeeze_matrix(axis, -s, variant) for axis, s in zip(axes, strengths)])  # S(−s)
        numerical = torch.linalg.inv(squeeze)

        # Sherman–Morrison with the (A, u, w) of the table, typed out: A = a I, u = (e^{−s} − a) v̂, w = v̂.
        a = torch.ones_like(strengths) if variant == "sdm" else torch.exp(strengths / (n - 1))  # (A, K)
        u = (torch.exp(-strengths) - a)[..., None] * v[:, None, :]  # (A, K, n)
        denominator = 1 + (u * v[:, None, :]).sum(-1) / a  # 1 + wᵀA⁻¹u, (A, K)
        sherman_morrison = (identity / a[..., None, None]
                            - u[..., :, None] * v[:, None, None, :] / (a**2 * denominator)[..., None, None])

        torch.testing.assert_close(closed_form, numerical, rtol=rtol, atol=rtol)
        torch.testing.assert_close(closed_form, sherman_morrison, rtol=rtol, atol=rtol)
        torch.testing.assert_close(closed_form, flipped, rtol=rtol, atol=rtol)
        torch.testing.assert_close(squeeze @ closed_form, identity.expand_as(squeeze), rtol=rtol, atol=rtol)
        expected_det = torch.exp(-strengths) if variant == "sdm" else torch.ones_like(strengths)
        determinant = torch.linalg.det(squeeze)  # (A, K)
        torch.testing.assert_close(determinant, expected_det, rtol=rtol, atol=0)
        torch.testing.assert_close(denominator * a**n, expected_det, rtol=rtol, atol=0)  # the determinant lemma

        scale = numerical.abs().amax(dim=(-2, -1))  # (A, K)
        rows.append(pd.DataFrame(dict(
            variant=variant, n=n, s=strengths.flatten().numpy(),
            inverse_error=((closed_form - numerical).abs().amax(dim=(-2, -1)) / scale).flatten().numpy(),
            sherman_morrison_error=((closed_form - sherman_morrison).abs().amax(dim=(-2, -1)) / scale)
            .flatten().numpy(),
            det=determinant.flatten().numpy(),
            det_error=((determinant - expected_det).abs() / expected_det).flatten().numpy(),
        )))
checks = pd.concat(rows, ignore_index=True)
print(f"{len(checks)} (axis, s, variant) cases, n = {n_min}…{n_max}, s ∈ [−{s_max}, {s_max}]: "
      f"all pass at rtol = {rtol}")
checks.groupby("variant")[["inverse_error", "sherman_morrison_error", "det_error"]].max()

# %% [markdown]
# **The check can fail.** Two plausible slips, each of which the assertions above reject: forgetting to flip the sign
# (taking $S(s)$ itself as its inverse, i.e. $e^{-s}$ where (11) has $e^{s}$), and, for HDM, inverting only the
# $\hat v$ eigenvalue (keeping $e^{s/(n-1)}$ on $\hat v^\perp$).

# %%
axis = torch.randn(3, generator=generator, dtype=F64)
v = axis / axis.norm()
for s in (-1.0, 0.5, 2.0):
    truth = torch.linalg.inv(sdmlib.squeeze_matrix(axis, s, "hdm"))
    sign_slip = sdmlib.squeeze_matrix(axis, s, "sdm")
    half_inverted = torch.exp(torch.tensor(s, dtype=F64)) * torch.outer(v, v) + torch.exp(
        torch.tensor(s / 2, dtype=F64)) * (torch.eye(3, dtype=F64) - torch.outer(v, v))
    sdm_truth = torch.linalg.inv(sdmlib.squeeze_matrix(axis, s, "sdm"))
    for wrong, reference in ((sign_slip, sdm_truth), (half_inverted, truth)):
        try:
            torch.testing.assert_close(wrong, reference, rtol=rtol, atol=rtol)
        except AssertionError:
            continue
        raise AssertionError(f"a wrong inverse passed the check at s = {s}: the check has no power")
print("both wrong inverses are rejected")

# %% [markdown]
# ## The inverse as an operator: `apply_squeeze(..., inverse=True)`
#
# The sampler never builds a matrix: `apply_squeeze` applies $S(s)$ to a $(B, n, H, W)$ batch as one projection
# $p = \hat v^\top x$ per pixel and one rank-1 update, $S(s)\,x = \lambda_\perp x + (\lambda_\parallel - \lambda_\perp)
# \hat v p$, with one $s$ per sample; `inverse=True` applies $S(-s)$ (eq. 11). Checks, for every $n$ and variant, on
# random batches with $s_b \sim U[-3, 3]$ per sample:
#
# * `apply_squeeze` equals the per-sample matrix product $\sum_j S(s_b)_{ij}\,x_{bjhw}$ (einsum), and
#   `inverse=True` equals the product with `torch.linalg.inv`;
# * the round trip $S^{-1}(S x)$ returns $x$, in float64 to round-off and in float32 (the training dtype) to a
#   few float32 ulps scaled by the condition number: the squeeze multiplies the $\hat v$ component by up to
#   $e^{|s|}$ (SDM) and the other components by up to $e^{|s|/(n-1)}$ (HDM), so a rounding error of one ulp of the
#   largest intermediate comes back as up to $e^{2|s|}$ ulps of $x$. Tolerance: $4\,\epsilon_{32}\,e^{2 s_{\max}}
#   \approx 1.9\times 10^{-4}$.

# %%
float32_tolerance = 4 * torch.finfo(torch.float32).eps * math.exp(2 * s_max)  # ≈ 1.9e-4: 4 ulps × condition number
roundtrip_rows = []
for n in range(n_min, n_max + 1):
    axis = torch.randn(n, generator=generator, dtype=F64)
    s = (2 * torch.rand(batch_size, generator=generator, dtype=F64) - 1) * s_max  # (B,)
    x = torch.randn(batch_size, n, image_size, image_size, generator=generator, dtype=F64)  # (B, n, H, W)
    for variant in variants:
        squeezed = sdmlib.apply_squeeze(x, axis, s, variant)
        unsqueezed = sdmlib.apply_squeeze(squeezed, axis, s, variant, inverse=True)
        matrices = sdmlib.squeeze_matrix(axis, s, variant)  # (B, n, n)
        torch.testing.assert_close(squeezed, torch.einsum("bij,bjhw->bihw", matrices, x), rtol=rtol, atol=rtol)
        torch.testing.assert_close(sdmlib.apply_squeeze(x, axis, s, variant, inverse=True),
                                   torch.einsum("bij,bjhw->bihw", torch.linalg.inv(matrices), x), rtol=rtol, atol=rtol)
        torch.testing.assert_close(unsqueezed, x, rtol=rtol, atol=rtol)

        x32 = x.float()
        unsqueezed32 = sdmlib.apply_squeeze(sdmlib.apply_squeeze(x32, axis, s, variant), axis, s, variant, inverse=True)
        assert unsqueezed32.dtype == torch.float32
        torch.testing.assert_close(unsqueezed32, x32, rtol=float32_tolerance, atol=float32_tolerance)
        roundtrip_rows.append(dict(variant=variant, n=n,
                                   roundtrip_error_float64=float((unsqueezed - x).abs().max()),
                                   roundtrip_error_float32=float((unsqueezed32 - x32).abs().max())))
roundtrip = pd.DataFrame(roundtrip_rows)
print("apply_squeeze matches the matrix product, and inverse=True undoes it, for every n and variant")
roundtrip.groupby("variant")[["roundtrip_error_float64", "roundtrip_error_float32"]].max()

# %% [markdown]
# ## Figure
#
# Left and middle: for $n = 3$ and each variant, the eigenvalues of $S(s)$ (solid) and of the closed-form inverse
# (dashed; read off `inverse_squeeze_matrix` as $\hat v^\top S^{-1}\hat v$ and $p^\top S^{-1} p$ for a unit
# $p \perp \hat v$), and `torch.linalg.det` of $S(s)$ (thick, translucent). The dashed curves are the solid ones
# mirrored in $s$: $S(s)^{-1} = S(-s)$. The determinant is $e^{-s}$ for SDM (on top of $\lambda_\parallel$, since
# $\lambda_\perp = 1$) and the constant 1 for HDM. Right: the relative error of the closed form against
# `torch.linalg.inv` over all random cases: round-off, growing with $|s|$ as the condition number $e^{|s|}$ (SDM) or
# $e^{|s|\,n/(n-1)}$ (HDM) does (exact zeros are drawn at $10^{-18}$).

# %%
s_grid = torch.linspace(-s_max, s_max, 121, dtype=F64)
axis = torch.tensor([0.57, 0.59, 0.57], dtype=F64)  # any axis: the eigenvalues do not depend on it
v = axis / axis.norm()
p = torch.tensor([1.0, -1.0, 0.0], dtype=F64)
p = (p - (p @ v) * v) / (p - (p @ v) * v).norm()  # a unit vector orthogonal to v̂
colors = {"λ∥": "C0", "λ⊥": "C1", "det": "C2"}
with sns.axes_style("whitegrid"):
    fig, panels = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw=dict(width_ratios=[1, 1, 1.4]))
    for ax, variant in zip(panels[:2], variants):
        squeeze = sdmlib.squeeze_matrix(axis, s_grid, variant)  # (121, 3, 3)
        inverse = sdmlib.inverse_squeeze_matrix(axis, s_grid, variant)
        ax.plot(s_grid, torch.linalg.det(squeeze), color=colors["det"], linewidth=6, alpha=0.35, label="det S(s)")
        ax.plot(s_grid, v @ squeeze @ v, color=colors["λ∥"], label="λ∥ of S(s), on v̂")
        ax.plot(s_grid, p @ squeeze @ p, color=colors["λ⊥"], label="λ⊥ of S(s), on v̂⊥")
        ax.plot(s_grid, v @ inverse @ v, color=colors["λ∥"], linestyle="--", label="λ∥ of S(s)⁻¹")
        ax.plot(s_grid, p @ inverse @ p, color=colors["λ⊥"], linestyle="--", label="λ⊥ of S(s)⁻¹")
        ax.set(yscale="log", xlabel="squeeze strength s", ylabel="eigenvalue / determinant (log scale)",
               title=f"{variant.upper()}, n = 3: S(s), S(s)⁻¹ = S(−s), det S")
        ax.legend(fontsize=8, loc="upper center")
    right = panels[2]
    for variant, color in zip(variants, ("C0", "C3")):
        errors = checks[checks.variant == variant]
        right.scatter(errors.s, errors.inverse_error.clip(lower=1e-18), s=3, alpha=0.3, color=color, linewidths=0,
                      rasterized=True, label=f"{variant.upper()} ({len(errors)} cases)")
    right.axhline(rtol, color="k", linestyle="--", linewidth=1, label=f"tolerance {rtol:g}")
    right.set(yscale="log", xlabel="squeeze strength s", ylabel="max |closed form − linalg.inv| / max |inv|",
              title=f"Eq. (11) and the HDM inverse vs torch.linalg.inv, n = {n_min}…{n_max}")
    right.legend(fontsize=8, loc="upper center", markerscale=4)
    fig.tight_layout()
figures.save_figure(fig, output_dir / "02_sherman_morrison.png")
plt.show()

# %% [markdown]
# ## What we found
#
# * Sherman–Morrison with $A = I$, $u = (e^{-s}-1)\hat v$ gives eq. (11) exactly; with $A = e^{s/(n-1)}I$ it gives
#   the HDM inverse $e^{s}\hat v\hat v^\top + e^{-s/(n-1)}(I - \hat v\hat v^\top)$. Both are $S(-s)$.
# * $\det S^{\mathrm{HDM}} = 1$ and $\det S^{\mathrm{SDM}} = e^{-s}$, for every $n$ and $s$; the Sherman–Morrison
#   denominator is the determinant ratio $\det S / \det A$.
# * `sdmlib.inverse_squeeze_matrix` agrees with `torch.linalg.inv` to round-off over all random cases, and
#   `apply_squeeze(..., inverse=True)` undoes `apply_squeeze` with per-sample strengths, in float64 and float32.
#
# The numbers (also in `02_sherman_morrison.json`):

# %%
runtime_seconds = time.perf_counter() - start_time
worst = checks.groupby("variant")[["inverse_error", "sherman_morrison_error", "det_error"]].max()
summary = dict(
    seed=seed, n_range=[n_min, n_max], s_max=s_max, num_cases=len(checks), rtol=rtol,
    max_inverse_error={variant: float(worst.loc[variant, "inverse_error"]) for variant in variants},
    max_sherman_morrison_error={variant: float(worst.loc[variant, "sherman_morrison_error"]) for variant in variants},
    max_det_error={variant: float(worst.loc[variant, "det_error"]) for variant in variants},
    hdm_det_range=[float(checks[checks.variant == "hdm"].det.min()), float(checks[checks.variant == "hdm"].det.max())],
    max_roundtrip_error_float64=float(roundtrip.roundtrip_error_float64.max()),
    max_roundtrip_error_float32=float(roundtrip.roundtrip_error_float32.max()),
    runtime_seconds=runtime_seconds,
)
figures.save_json(output_dir / "02_sherman_morrison.json", summary)
print(f"{len(checks)} cases; runtime {runtime_seconds:.1f} s\n")
print(worst.to_string(float_format="{:.2e}".format), "\n")
print(roundtrip.groupby("variant")[["roundtrip_error_float64", "roundtrip_error_float32"]].max()
      .to_string(float_format="{:.2e}".format))
