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
# # 03 · The drift $R_t = S_t^{-1}S_{t-1}$ (eq. 12) and what it costs the sampler
#
# The sampler whitens with $S_t^{-1}$ (eq. 5), takes the DDPM posterior step of Ho et al. (eq. 6) and re-squeezes
# (eq. 7). Eq. (6) is the exact posterior of the whitened chain only if that chain is a DDPM; eq. (8) shows it is
# not when $S_t$ depends on $t$: whitening leaves a *drift* $R_t = S_t^{-1}S_{t-1}$, and Appendix B.2 argues it is
# negligible because $R_t \approx I$. This notebook
#
# 1. derives eq. (12) and checks `sdmlib.drift` against the matrix product and the closed form;
# 2. reproduces the appendix's step sizes ($\Delta\beta \approx 2\times10^{-5}$ for 1000 steps, $\approx 4\times
#    10^{-4}$ for 50) and tabulates $\lVert R_t - I\rVert$ over $s_0 \in [-1, 1]$;
# 3. shows that the per-step drifts *telescope*: their product over a trajectory is $S_{t_1}^{-1}$, an
#    $e^{\pm s_0}$-sized squeeze, however small each factor is;
# 4. measures what that does to sampling, with no training: for Gaussian data the optimal noise predictor is known
#    in closed form, so the real sampler (`SqueezedDDPMScheduler.step`) is run with that exact predictor, for both
#    `resqueeze` options and 50 and 1000 steps, and the covariance of its samples is compared with the data's;
# 5. derives the size of that error to first order in $s_0$ and checks the formula.
#
# The sampler with an affine predictor is an affine map of Gaussian noise, so the law of its samples is Gaussian and
# its mean and covariance can be propagated exactly (`sdmlib.drift_study.sampler_moments`). Every Monte Carlo run is
# checked against that exact propagation, with a tolerance in standard errors; the curves are the exact values.

# %% tags=["parameters"]
output_dir = "outputs/derivations"  # figures and JSON summary go to <output_dir>/seed<seed>/ (from the repo root)
seed = 0  # seeds every random draw below; sampler runs use seed + the index of their s0
n_min = 2  # smallest dimension n of the random drift checks (HDM needs n ≥ 2)
n_max = 8  # largest dimension n of the random drift checks
num_drift_checks = 50  # random (s_t, s_{t−1}) pairs per random axis and dimension
table_s0_values = [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]  # s0 of the ‖R_t − I‖ table
step_counts = [1000, 50]  # sampling steps: every training step, and the paper's 50
axis = [0.57, 0.59, 0.57]  # v̂ before normalisation: luminance-like, as the first PC of RGB pixels
data_eigenvalues = [0.20, 0.012, 0.004]  # eigenvalues of C on data in [−1, 1]: one dominant axis, as for pixels
data_mean = [-0.02, -0.04, -0.11]  # μ, per channel, in [−1, 1]
monte_carlo_s0_values = [-1.0, -0.6, -0.3, 0.0, 0.3, 0.6, 1.0]  # s0 of the Monte Carlo runs at 50 steps
monte_carlo_s0_values_1000 = [-1.0, 0.0, 1.0]  # s0 of the Monte Carlo runs at 1000 steps (the slow ones)
hdm_monte_carlo_s0_values = [-1.0, 1.0]  # s0 of the HDM Monte Carlo runs (50 steps)
num_samples_50 = 40000  # samples per 50-step run: relative SE of a variance √(2/N) ≈ 0.7 %
num_samples_1000 = 5000  # samples per 1000-step run: relative SE ≈ 2.0 %
exact_grid_points_50 = 21  # s0 grid of the exact curves at 50 steps (spacing 0.1)
exact_grid_points_1000 = 9  # s0 grid of the exact curves at 1000 steps (spacing 0.25)
control_s0_values = [-1.0, -0.5, 0.0, 0.5, 1.0]  # s0 of the drift-free control (constant squeeze schedule)
convergence_steps = [10, 20, 50, 100, 250, 500, 1000]  # step counts of the convergence study (divisors of 1000)
slope_step = 0.01  # half-width in s0 of the finite difference that checks the first-order formula
false_alarm_rate = 0.01  # family-wise bound on a spurious Monte Carlo failure; sets the tolerance k

# %%
import functools
import math
import time

import matplotlib.pyplot as plt
import pandas as pd
import scipy.stats
import seaborn as sns
import torch

import sdmlib
from sdmlib import drift_study, figures
from sdmlib.config import seeded_output_dir

start_time = time.perf_counter()
output_dir = seeded_output_dir(output_dir, seed)  # <output_dir>/seed<seed>/, relative to the repository root
# The samplers work on (N, 3) tensors and 3×3 matrices: too small to gain from intra-op threads, which only contend
# with one another (and with other jobs) on a small CPU.
torch.set_num_threads(1)
torch.manual_seed(seed)
generator = torch.Generator().manual_seed(seed)
variants = ("sdm", "hdm")
resqueeze_options = ("previous", "current")
F64 = torch.float64

# %% [markdown]
# ## Eq. (12): the drift
#
# Whitening the forward step (2), $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{1-\alpha_t}\,S_t\varepsilon_t$, with
# $\tilde x_t = S_t^{-1}x_t$ gives eq. (8),
#
# $$\tilde x_t = \sqrt{\alpha_t}\;S_t^{-1}S_{t-1}\;\tilde x_{t-1} + \sqrt{1-\alpha_t}\;\varepsilon_t,
#   \qquad R_t := S_t^{-1}S_{t-1}:$$
#
# a DDPM step except for the matrix $R_t$ in front of $\tilde x_{t-1}$.
#
# **The squeezes form a one-parameter group.** Every $S(s)$ of one variant has the eigenvectors $\hat v$ and
# $\hat v^\perp$, with eigenvalues $e^{-s}$ on $\hat v$ and $1$ (SDM) or $e^{s/(n-1)}$ (HDM) on $\hat v^\perp$; each
# eigenvalue is an exponential *linear* in $s$. So squeezes commute, and multiplying two multiplies their eigenvalues,
# i.e. adds their strengths: $S(a)\,S(b) = S(a+b)$, and $S(s)^{-1} = S(-s)$ (notebook 02). Hence
#
# $$R_t = S(-s_t)\,S(s_{t-1}) = S\big(-(s_t - s_{t-1})\big)
#   = I + \hat v\hat v^\top\big(e^{\,s_t - s_{t-1}} - 1\big)\quad\text{(SDM)},$$
#
# $$R_t^{\mathrm{HDM}} = e^{\,s_t - s_{t-1}}\,\hat v\hat v^\top + e^{-(s_t - s_{t-1})/(n-1)}\,(I - \hat v\hat v^\top).$$
#
# With the paper's schedule $s(t) = s_0\,\beta_t/\beta_{\max}$, $s_t - s_{t-1} = s_0\,\Delta\beta/\beta_{\max}$ with
# $\Delta\beta = \beta_t - \beta_{t-1}$, which is eq. (12):
#
# $$S_t^{-1}S_{t-1} = I + \hat v\hat v^\top\Big(\exp\Big[\frac{s_0\,\Delta\beta}{\beta_{\max}}\Big] - 1\Big). \tag{12}$$
#
# The drift is itself a squeeze, of strength $-s_0\Delta\beta/\beta_{\max}$. Check: `sdmlib.drift` against the
# product `inverse_squeeze_matrix @ squeeze_matrix`, against $S(s_{t-1} - s_t)$ and against the closed forms above,
# over random axes ($n = 2 \dots 8$) and strengths $s_t, s_{t-1} \sim U[-3, 3]$; float64, round-off tolerance.

# %%
for n in range(n_min, n_max + 1):
    random_axis = torch.randn(n, generator=generator, dtype=F64)  # (n,), normalised by the library
    v = random_axis / random_axis.norm()
    projector, identity = torch.outer(v, v), torch.eye(n, dtype=F64)
    s_t, s_prev = (6 * torch.rand(2, num_drift_checks, generator=generator, dtype=F64) - 3)  # (K,) each
    delta = (s_t - s_prev)[:, None, None]  # (K, 1, 1)
    for variant in variants:
        drift = sdmlib.drift(random_axis, s_t, s_prev, variant)  # (K, n, n)
        product = sdmlib.inverse_squeeze_matrix(random_axis, s_t, variant) @ sdmlib.squeeze_matrix(random_axis, s_prev,
                                                                                                   variant)
        if variant == "sdm":
            closed_form = identity + projector * (torch.exp(delta) - 1)
        else:
            closed_form = torch.exp(delta) * projector + torch.exp(-delta / (n - 1)) * (identity - projector)
        for reference in (product, sdmlib.squeeze_matrix(random_axis, s_prev - s_t, variant), closed_form):
            torch.testing.assert_close(drift, reference, rtol=1e-12, atol=1e-12)
print(f"sdmlib.drift = S_t⁻¹ S_(t−1) = S(s_(t−1) − s_t) = eq. (12), n = {n_min}…{n_max}, both variants")

# %% [markdown]
# ## The appendix's step sizes
#
# diffusers' default linear schedule, which the paper uses: $T = 1000$ values of $\beta$ evenly spaced from
# $10^{-4}$ to $0.02 = \beta_{\max}$. Between training steps $\Delta\beta = (0.02 - 10^{-4})/999 \approx 1.99\times
# 10^{-5}$. With 50 sampling steps diffusers' "leading" spacing visits $t = 980, 960, \dots, 20, 0$ (stride
# $1000/50 = 20$), so consecutive sampling steps are 20 training steps apart and $\Delta\beta = 20 \times 1.99\times
# 10^{-5} \approx 3.98\times10^{-4}$. The $\beta$ come from `SqueezedDDPMScheduler` (float32, as in diffusers, so
# differences carry float32 round-off of $\sim 10^{-9}$).

# %%
scheduler = sdmlib.SqueezedDDPMScheduler()
betas = scheduler.betas.to(F64)  # (T,), float32 values
num_train_timesteps = len(betas)
beta_start, beta_max = float(betas[0]), float(betas.max())
delta_beta_train_nominal = (scheduler.config.beta_end - scheduler.config.beta_start) / (num_train_timesteps - 1)
torch.testing.assert_close(betas.diff(), torch.full((num_train_timesteps - 1,), delta_beta_train_nominal, dtype=F64),
                           rtol=0, atol=4e-9)  # float32 rounding of β ≤ 0.02: ≤ 1 ulp (1.9e-9) per value

scheduler.set_timesteps(50)
timesteps_50 = scheduler.timesteps.tolist()
stride = num_train_timesteps // 50
assert timesteps_50 == list(range(num_train_timesteps - stride, -1, -stride)), timesteps_50
delta_beta_50 = betas[timesteps_50[:-1]] - betas[timesteps_50[1:]]  # (49,) between consecutive sampling steps
torch.testing.assert_close(delta_beta_50, torch.full_like(delta_beta_50, stride * delta_beta_train_nominal),
                           rtol=0, atol=4e-9)

delta_beta = {1000: delta_beta_train_nominal, 50: stride * delta_beta_train_nominal}
assert f"{delta_beta[1000]:.0e}" == "2e-05" and f"{delta_beta[50]:.0e}" == "4e-04", delta_beta  # the appendix's values
print(f"Δβ = {delta_beta[1000]:.4e} between training steps (appendix: ≈ 2e−5); 50 sampling steps at t = "
      f"{timesteps_50[0]}, {timesteps_50[1]}, …, {timesteps_50[-1]} (stride {stride}): Δβ = {delta_beta[50]:.4e} "
      f"(appendix: ≈ 4e−4); β_max = {beta_max}")

# %% [markdown]
# ## Which $S$ the sampler uses, step by step
#
# Every check below (the exact moments, the predictor, the Monte Carlo) reads $s(t)$ through the scheduler's own
# `strength_at`, so a wrong timestep there would pass them all. This check does not: it records, at each of the 50
# sampling steps, the strength the real `step` whitens with (eq. 5) and re-squeezes with (eq. 7), and that of the
# starting noise (`drift_study.sampler_strengths` spies on the squeezes `step` performs), and compares them with a
# reference typed out here from the paper's schedule alone: $\beta_t$ evenly spaced from $10^{-4}$ to $0.02$ in float64,
# $s(t) = s_0\beta_t/\beta_{\max}$, $s = 0$ past the end ($S_0 = I$), diffusers' "leading" timesteps $T - k\cdot$stride.
# Eq. (7) re-squeezes with the next timestep's $s$; the authors' code with the same $t$'s, and it squeezes the
# starting noise at $t = T-1$ rather than at the first sampling step. The tolerance $10^{-6}$ (relative) covers
# diffusers' float32 $\beta$; a timestep off by one training step is off by $\sim 10^{-3}$.
# `tests/test_derivation_checks.py` plants such off-by-ones and checks that this comparison fails.

# %%
reference_betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)  # eq.: the linear schedule, (T,)
strength_rows = []
for s0 in (-1.0, -0.4, 0.7):
    s_ext = torch.cat([s0 * reference_betas / reference_betas.max(), torch.zeros(1, dtype=F64)])  # [-1]: S_0 = I
    reference_timesteps = [1000 - 20 * (k + 1) for k in range(50)]  # 980, 960, …, 0
    for resqueeze, initial_squeeze in (("previous", "first_step"), ("current", "t_max")):
        recorded = drift_study.sampler_strengths(
            sdmlib.SqueezedDDPMScheduler(s0=s0, resqueeze=resqueeze, initial_squeeze=initial_squeeze), 50)
        reference_whiten = s_ext[reference_timesteps]
        reference_resqueeze = reference_whiten if resqueeze == "current" else s_ext[reference_timesteps[1:] + [-1]]
        reference_initial = s_ext[999] if initial_squeeze == "t_max" else s_ext[980]
        assert recorded.timesteps == reference_timesteps, recorded.timesteps
        for name, got, want in (("whiten", recorded.whiten, reference_whiten),
                                ("resqueeze", recorded.resqueeze, reference_resqueeze),
                                ("initial", [recorded.initial], reference_initial.reshape(1))):
            torch.testing.assert_close(torch.tensor(got, dtype=F64), want, rtol=1e-6, atol=1e-9,
                                       msg=lambda m: f"{name}, s0 = {s0}, {resqueeze}: {m}")
        strength_rows.append(dict(s0=s0, resqueeze=resqueeze, initial_squeeze=initial_squeeze,
                                  initial=recorded.initial, first_whiten=recorded.whiten[0],
                                  first_resqueeze=recorded.resqueeze[0], last_resqueeze=recorded.resqueeze[-1]))
print("at every one of the 50 steps the sampler whitens and re-squeezes with the reference's s(t)")
pd.DataFrame(strength_rows).round(5)

# %% [markdown]
# ## The size of $R_t - I$
#
# $R_t - I$ is symmetric with eigenvalues $e^{x} - 1$ on $\hat v$ and, for HDM, $e^{-x/(n-1)} - 1$ on $\hat v^\perp$,
# $x = s_0\Delta\beta/\beta_{\max}$, so its spectral norm is $|e^{x} - 1| \approx |s_0|\,\Delta\beta/\beta_{\max}$
# for SDM and the larger of the two for HDM, which is the $\hat v$ one (for $n = 3$ the $\hat v^\perp$ deviation is
# half as large and of opposite sign). The table takes every step of the actual sampling trajectories and measures
# `torch.linalg.matrix_norm(R - I, ord=2)`, checked step by step against $|e^{x} - 1|$ with the scheduler's own
# $\beta$ values.
#
# **The last step is different.** Past the end of the schedule the scheduler reads $s$ at $\beta = 0$: under the
# linear schedule `strength_at(-1)` is 0, the paper's $S_0 = I$ (no noise at $t = 0$, and $s(t) \propto \beta_t$). So the last step, from diffusers' $t = 0$
# (the paper's $t = 1$) to the data, has drift $R_1 = S_1^{-1}S_0 = S(s_1)^{-1}$ with $s_1 = s_0\beta_1/\beta_{\max} =
# 0.005\,s_0$ (paper's indices): with `resqueeze="previous"` the final re-squeeze is the identity and the sampler ends
# in data space. Its size is $|e^{0.005 s_0} - 1|$ whatever the number of steps: five times an interior step's at
# 1000 steps ($\beta_1 = 10^{-4} \approx 5\,\Delta\beta$), a quarter of it at 50.

# %%
drift_rows = []
for steps in step_counts:
    for variant in variants:
        for s0 in table_s0_values:
            trajectory_scheduler = drift_study.make_scheduler(axis, s0, variant=variant)
            trajectory_scheduler.set_timesteps(steps)
            _, s_t, s_prev = drift_study.trajectory_strengths(trajectory_scheduler)
            norms = drift_study.trajectory_drift_norms(trajectory_scheduler)  # (steps,) ‖R − I‖₂ at every step
            x = torch.tensor(s_t, dtype=F64) - torch.tensor(s_prev, dtype=F64)  # s0 Δβ/β_max at each step
            expected = torch.maximum((torch.exp(x) - 1).abs(), (torch.exp(-x / 2) - 1).abs()) if variant == "hdm" \
                else (torch.exp(x) - 1).abs()
            torch.testing.assert_close(norms, expected, rtol=1e-9, atol=1e-15)
            drift_rows.append(dict(
                steps=steps, variant=variant, s0=s0,
                interior_norm=float(norms[:-1].max()),
                closed_form_norm=abs(math.expm1(s0 * delta_beta[steps] / beta_max)),
                last_step_norm=float(norms[-1]),
                hdm_perpendicular_deviation=(float((torch.exp(-x[:-1] / 2) - 1).abs().max())
                                             if variant == "hdm" else 0.0),
                sum_of_norms=float(norms.sum()),
            ))
drift_table = pd.DataFrame(drift_rows)
torch.testing.assert_close(torch.tensor(drift_table.interior_norm.values),
                           torch.tensor(drift_table.closed_form_norm.values),
                           rtol=1e-3, atol=1e-12)  # nominal Δβ against float32 β: equal to the round-off of Δβ
(drift_table[drift_table.variant == "sdm"]
 .pivot(index="s0", columns="steps", values=["interior_norm", "last_step_norm", "sum_of_norms"])
 .map(lambda value: f"{value:.2e}"))

# %% [markdown]
# At $|s_0| = 1$ an interior step moves the state by $10^{-3}$ (1000 steps) or $2\times10^{-2}$ (50 steps) of
# itself along $\hat v$, the appendix's "both small". HDM's $\lVert R_t - I\rVert_2$ equals SDM's (the $\hat v$
# eigenvalue dominates); its $\hat v^\perp$ deviation is in `hdm_perpendicular_deviation` of the JSON. The last column
# already hints at the next point: the per-step norms *add up* to about $|s_0|$ over a trajectory.
#
# ## The drifts telescope
#
# Along a sampling trajectory $t_1 > t_2 > \dots > t_K$ (then the data, where $S = I$), consecutive drifts share
# their middle factor, so their product collapses:
#
# $$\prod_{k=1}^{K} R_{t_k} = S_{t_1}^{-1}S_{t_2}\;S_{t_2}^{-1}S_{t_3}\cdots S_{t_K}^{-1}S_{\mathrm{end}}
#   = S_{t_1}^{-1}\,S_{\mathrm{end}} = S_{t_1}^{-1} = S\big(-s(t_1)\big),$$
#
# in any order, since all factors commute. For 1000 steps $t_1 = 999$ with $\beta_{999} = \beta_{\max}$, so
# $s(t_1) = s_0$ exactly and the product is $S(s_0)^{-1}$: eigenvalue $e^{s_0}$ on $\hat v$. For 50 steps $t_1 = 980$
# and $s(t_1) = s_0\,\beta_{980}/\beta_{\max} \approx 0.981\,s_0$. Each factor is $\approx I$; the product is not:
# at $s_0 = -1$ it shrinks $\hat v$ by $e^{-1} \approx 0.37$, whatever the number of steps. A sampler that ignored
# every $R_t$ *and* remembered its whole trajectory would be off by that whole factor; what matters is whether, and
# where along the trajectory, the sampler corrects for it.

# %%
telescoping_rows = []
for steps in step_counts:
    for variant in variants:
        for s0 in (-1.0, -0.5, 0.5, 1.0):
            trajectory_scheduler = drift_study.make_scheduler(axis, s0, variant=variant)
            trajectory_scheduler.set_timesteps(steps)
            drifts = drift_study.trajectory_drifts(trajectory_scheduler)  # (steps, 3, 3)
            product = functools.reduce(torch.matmul, drifts)  # R_(t_1) R_(t_2) ⋯ R_(t_K)
            t_first = int(trajectory_scheduler.timesteps[0])
            s_first = trajectory_scheduler.strength_at(t_first)
            torch.testing.assert_close(product, sdmlib.inverse_squeeze_matrix(axis, s_first, variant), rtol=1e-10,
                                       atol=1e-12)
            torch.testing.assert_close(functools.reduce(torch.matmul, drifts.flip(0)), product, rtol=1e-10, atol=1e-12)
            v = sdmlib.unit_axis(axis)
            telescoping_rows.append(dict(steps=steps, variant=variant, s0=s0, t_first=t_first,
                                         s_first_over_s0=s_first / s0,
                                         product_eigenvalue_on_axis=float(v @ product @ v),
                                         exp_s_first=math.exp(s_first)))
telescoping = pd.DataFrame(telescoping_rows)
torch.testing.assert_close(torch.tensor(telescoping.product_eigenvalue_on_axis.values),
                           torch.tensor(telescoping.exp_s_first.values), rtol=1e-10, atol=0)
assert (telescoping[telescoping.steps == 1000].s_first_over_s0 == 1.0).all()
print("∏ R_t over the trajectory = S(t_first)⁻¹ = S(−s(t_first)), in either order; eigenvalue on v̂ = e^{s(t_first)}")
telescoping[telescoping.variant == "sdm"].round(4)

# %% [markdown]
# ## What the sampler does with the drift
#
# **Gaussian data.** $x_0 \sim \mathcal N(\mu, C)$ in $n = 3$ with $C = \sum_i c_i\,u_iu_i^\top$, $u_1 = \hat v$ and
# $(c_1, c_2, c_3) = (0.20, 0.012, 0.004)$: *synthetic*, shaped like the per-pixel statistics of natural RGB images
# in $[-1, 1]$ (one luminance-like component carrying most of the variance, two small chromatic ones). It is
# synthetic because for Gaussian data the minimiser of eq. (4) is known in closed form
# (`sdmlib.gaussian.optimal_noise_predictor`): under the training marginal $x_t = \sqrt{\bar\alpha_t}x_0 +
# \sqrt{1-\bar\alpha_t}S_t\varepsilon$,
#
# $$\hat\varepsilon^*(x_t, t) = \mathbb E[S_t\varepsilon \mid x_t]
#   = \sqrt{1-\bar\alpha_t}\;S_t^2\big(\bar\alpha_t C + (1-\bar\alpha_t)S_t^2\big)^{-1}
#     \big(x_t - \sqrt{\bar\alpha_t}\mu\big).$$
#
# With it, whatever error the samples show is the sampler's own: discretisation, and the posterior approximation
# of eq. (6). $\hat v$ is exactly the top eigenvector of $C$, as PCA of the data would return it.
#
# **The sampler is affine, so its output law is exact.** With $\hat\varepsilon = G_t x + h_t$, one call of
# `scheduler.step` at $t$ (next timestep $t'$, $\bar\alpha' = 1$ past the end) is: eq. (5) $\tilde x = S_t^{-1}x$,
# $\tilde\varepsilon = S_t^{-1}\hat\varepsilon$; eq. (6)
# $\hat x_0 = (\tilde x - \sqrt{1-\bar\alpha_t}\,\tilde\varepsilon)/\sqrt{\bar\alpha_t}$,
# $\tilde x' = a\,\hat x_0 + b\,\tilde x + \sigma z$ with Ho et al.'s coefficients over the
# stride $t \to t'$ ($\beta = 1 - \bar\alpha_t/\bar\alpha'$, $a = \sqrt{\bar\alpha'}\beta/(1-\bar\alpha_t)$,
# $b = \sqrt{1-\beta}\,(1-\bar\alpha')/(1-\bar\alpha_t)$, $\sigma^2 = \beta(1-\bar\alpha')/(1-\bar\alpha_t)$, 0 at the
# last step); eq. (7) $x' = S_{\mathrm{next}}\tilde x'$, with $S_{\mathrm{next}} = S_{t'}$ (`resqueeze="previous"`,
# eq. 7) or $S_t$ (`"current"`, the authors' code). So
#
# $$x' = A\,x + c + \sigma S_{\mathrm{next}}z, \quad
#   A = S_{\mathrm{next}}S_t^{-1}\Big[\tfrac{a}{\sqrt{\bar\alpha_t}}\big(I - \sqrt{1-\bar\alpha_t}\,G_t\big)
#       + b\,I\Big],
#   \quad c = -S_{\mathrm{next}}S_t^{-1}\tfrac{a}{\sqrt{\bar\alpha_t}}\sqrt{1-\bar\alpha_t}\,h_t,$$
#
# and mean and covariance follow $m' = Am + c$, $P' = APA^\top + \sigma^2 S_{\mathrm{next}}S_{\mathrm{next}}^\top$ from
# $m = 0$, $P = S_{t_1}^2$ (the sampler starts from $S_{t_1}\varepsilon$). `drift_study.sampler_moments` runs this
# recursion; $G_t, h_t$ are read off the predictor itself by calling it on $0$ and the basis vectors.
#
# **Where the drift goes.** $\hat v$ is an eigenvector of $C$ and of every $S_t$, so along $\hat v$ the sampler is
# scalar. In whitened coordinates the data variance along $\hat v$ is $d_t = c_1 e^{2s_t}$, and step (6) at $t$ is
# DDPM's step for data of variance $d_t$: it aims at the whitened marginal
# $\bar\alpha' d_t + 1 - \bar\alpha'$ at $t'$, while the next step expects $\bar\alpha' d_{t'} + 1 - \bar\alpha'$.
# The two options handle the mismatch differently. With $\delta = s_t - s_{t'}$, the exponent of eq. (12):
#
# * `"previous"` re-squeezes with $S_{t'}$ and the next step whitens with $S_{t'}^{-1}$: nothing is corrected, the
#   signal keeps the scale of $d_t$. Variance error left behind:
#   $\bar\alpha'(d_t - d_{t'}) \approx +2c_1\bar\alpha'\delta$.
# * `"current"` re-squeezes with $S_t$ and the next step whitens with $S_{t'}^{-1}$: it multiplies the whole whitened
#   state by $S_{t'}^{-1}S_t = R^{-1}$ (eigenvalue $e^{-\delta}$ on $\hat v$). That is the exact correction for the
#   signal, but it scales the noise too: $(e^{-2\delta} - 1)(1 - \bar\alpha') \approx -2(1-\bar\alpha')\delta$.
#
# Each later step $j$ carries a variance error forward multiplied by $A_j^2$, the squared gain of the whitened step
# along $\hat v$. To first order in $s_0$ the relative error of the generated variance along $\hat v$ is then
#
# $$\frac{\hat v^\top\hat C\hat v}{c_1} - 1 \;\approx\; \text{(DDPM's own error)} +
#   \frac1{c_1}\sum_{k} G_k\,\mathrm{source}_k, \qquad G_k = \prod_{j > k} A_j^2,$$
#
# the sampler's *memory* of step $k$: every step here contracts ($A_j^2 < 1$), so $G_k$ is 1 for the last step and
# decays towards the start of the trajectory, fastest where the whitened data variance is small.
#
# `drift_study.first_order_drift_slopes`. Three predictions follow.
#
# 1. **Sign.** $\delta_k$ has the sign of $s_0$, so the drift error has the sign of $s_0$ with `"previous"` (too
#    little variance along $\hat v$ when anti-squeezing) and the opposite sign with `"current"`.
# 2. **No decay with the number of steps.** $\sum_k \delta_k = s(t_1) \approx s_0$ (the telescoping); more steps only
#    cut the same total into smaller pieces, and the memory $G_k$ is a property of the process, not of the grid. The
#    per-step drift falls as 1/steps; its effect does not.
# 3. **Size.** For `"previous"` the slope is $2\sum_k G_k\bar\alpha'_k\,\delta_k/s_0 < 2$: a sampler that remembered the
#    whole trajectory ($G_k = 1$) near $\bar\alpha = 1$ would be off by the whole telescoped squeeze, $e^{2s_0} - 1$ in
#    variance; the memory of the last part of the trajectory decides how much of it survives.
#
# The formula ignores that the DDPM discretisation error itself depends on the data variance $d_t$, hence on $s_0$;
# that part vanishes as the number of steps grows, so the formula is checked at 1000 steps.

# %%
eigenvalues = torch.tensor(data_eigenvalues, dtype=F64)
data = drift_study.GaussianMoments(torch.tensor(data_mean, dtype=F64),
                                   drift_study.covariance_with_axis(axis, eigenvalues))
v = sdmlib.unit_axis(axis)
variance_on_axis = float(v @ data.covariance @ v)
pca = sdmlib.principal_axis([torch.distributions.MultivariateNormal(data.mean, data.covariance)
                             .sample((20000,)).view(-1, 3, 1, 1)])
assert float(pca.axis @ v) > 0.999, "PCA of the synthetic data should return v̂"
torch.testing.assert_close(torch.linalg.eigvalsh(data.covariance).flip(0), eigenvalues, rtol=1e-12, atol=1e-15)
print(f"v̂ = {v.numpy().round(4)}, v̂ᵀCv̂ = {variance_on_axis:.3f}, PCA of 20 000 samples: {pca.axis.numpy().round(4)}")

# %% [markdown]
# ## Exact moments of the sampler over $s_0$
#
# The exact recursion on grids of $s_0$, for SDM with both options and 50 and 1000 steps, for HDM at 50 steps, and a
# **drift-free control**: the same sampler with `squeeze_schedule="constant"` ($s = s_0$ at every $t$, so
# $R_t = I$ at every step and the whitened chain is an exact DDPM of the data $S^{-1}x_0$). The control uses
# `resqueeze="current"`; under the constant schedule both options re-squeeze the last step with $S(s_0)$
# (`strength_at(-1)` reads the schedule at $\beta = 0$, which is $s_0$ there), so they coincide.
# Errors reported: variance along $\hat v$, $\hat v^\top\hat C\hat v / \hat v^\top C\hat v - 1$; the same on
# $\hat v^\perp$; the relative Frobenius error $\lVert\hat C - C\rVert_F / \lVert C\rVert_F$; the mean error along
# $\hat v$ in units of the data's standard deviation; and the Fréchet distance between $\mathcal N(\hat m, \hat C)$ and
# $\mathcal N(\mu, C)$.

# %%
exact_start = time.perf_counter()
# Rounded (and + 0.0, which turns −0.0 into 0.0) so that the grids contain s0 = 0 exactly.
grid_50 = [round(s0, 10) + 0.0 for s0 in torch.linspace(-1, 1, exact_grid_points_50, dtype=F64).tolist()]
grid_1000 = [round(s0, 10) + 0.0 for s0 in torch.linspace(-1, 1, exact_grid_points_1000, dtype=F64).tolist()]
exact = pd.DataFrame(
    [drift_study.exact_errors(data, axis, s0, 50, r, variant) for variant in variants for r in resqueeze_options
     for s0 in grid_50]
    + [drift_study.exact_errors(data, axis, s0, 1000, r) for r in resqueeze_options for s0 in grid_1000]
    + [drift_study.exact_errors(data, axis, s0, steps, "current", "sdm", "constant") for steps in step_counts
       for s0 in control_s0_values]
)
ddpm = exact[(exact.s0 == 0) & (exact.variant == "sdm") & (exact.schedule == "linear")
            & (exact.resqueeze == "previous")].set_index("steps")  # s0 = 0: diffusers' DDPM
baseline = ddpm.variance_error_axis
exact["excess_axis"] = exact.variance_error_axis - exact.steps.map(baseline)
exact["excess_perp"] = exact.variance_error_perp - exact.steps.map(ddpm.variance_error_perp)
print(f"{len(exact)} exact runs in {time.perf_counter() - exact_start:.1f} s; DDPM (s0 = 0) variance error along v̂: "
      f"{baseline[50]:+.4f} at 50 steps, {baseline[1000]:+.4f} at 1000 steps")

# %% [markdown]
# ## Monte Carlo: the real sampler against the exact moments
#
# `drift_study.sample` runs `initial_noise` and `scheduler.step` at every timestep with the exact predictor, as a
# pipeline would with a network (float64, one pixel per sample: shape $(N, 3, 1, 1)$). The two `resqueeze` options
# share the seed at each $s_0$; different $s_0$ get different seeds, so the points of a curve are independent.
#
# **Tolerance.** The samples are exactly Gaussian (affine map of Gaussian noise) with the exact covariance $P$, so
# the sample variance along $\hat v$ has relative standard error $\sqrt{2/(N-1)}$ around $\hat v^\top P\hat v$, the
# total sample variance on $\hat v^\perp$ has standard error $\sqrt{2\,\mathrm{tr}(P_\perp^2)/(N-1)}$ around
# $\mathrm{tr}\,P_\perp$ ($P_\perp = \Pi P\Pi$, $\Pi = I - \hat v\hat v^\top$), and the sample mean along $\hat v$ has
# standard error $\sqrt{\hat v^\top P\hat v/N}$. For $N = 40\,000$ (50 steps) that is 0.7 % of
# the variance, for $N = 5000$ (1000 steps, whose cost is per step, not per sample) 2.0 %. The drift effects found
# below are 6–26 % at $|s_0| \ge 0.6$, i.e. 5–35 SE; the 1000-step runs are at $s_0 \in \{-1, 0, 1\}$, where they
# are largest. We require $|z| \le k$ for all three statistics of every run, with $k$ from the union bound at a
# family-wise false-alarm rate of 1 %.
#
# **Power.** The same samples are also scored against the exact moments of the *other* re-squeeze option; at
# $|s_0| = 1$ that must fail, or the check could not tell the two samplers apart.

# %%
runs = ([("sdm", 50, r, s0, num_samples_50) for r in resqueeze_options for s0 in monte_carlo_s0_values]
        + [("sdm", 1000, r, s0, num_samples_1000) for r in resqueeze_options for s0 in monte_carlo_s0_values_1000
           if not (r == "current" and s0 == 0)]  # s0 = 0: both options are the same sampler (checked at 50 steps)
        + [("hdm", 50, r, s0, num_samples_50) for r in resqueeze_options for s0 in hdm_monte_carlo_s0_values])
# One seed per s0, shared by the two options (so that at s0 = 0 they must agree bit for bit); different s0 get
# independent draws, so the Monte Carlo errors of neighbouring points are independent, as the error bars assume.
all_s0_values = sorted({s0 for *_, s0, _ in runs})
run_seed = {s0: seed + index for index, s0 in enumerate(all_s0_values)}
num_checks = 3 * len(runs)  # variance on v̂, total variance on v̂⊥, mean on v̂
k = float(scipy.stats.norm.isf(false_alarm_rate / (2 * num_checks)))  # tolerance in standard errors
print(f"{len(runs)} runs, {num_checks} checked statistics: tolerance k = {k:.2f} SE")

monte_carlo_start = time.perf_counter()
monte_carlo_rows, samples = [], {}
for variant, steps, resqueeze, s0, num_samples in runs:
    row, samples[variant, steps, resqueeze, s0] = drift_study.monte_carlo_run(data, axis, s0, steps, resqueeze, variant,
                                                                              num_samples, run_seed[s0])
    monte_carlo_rows.append(row)
monte_carlo = pd.DataFrame(monte_carlo_rows)
monte_carlo_seconds = time.perf_counter() - monte_carlo_start
print(f"Monte Carlo: {monte_carlo_seconds:.1f} s in all; one run of 50 steps × {num_samples_50} samples: "
      f"{monte_carlo[monte_carlo.steps == 50].seconds.median():.2f} s, 1000 steps × {num_samples_1000}: "
      f"{monte_carlo[monte_carlo.steps == 1000].seconds.median():.2f} s")
monte_carlo.drop(columns=["seconds"]).round(4)

# %% [markdown]
# The checks, each following from the math above:
#
# * every run agrees with its exact moments (variance along $\hat v$, total variance on $\hat v^\perp$, mean along
#   $\hat v$) within $k$ SE;
# * the check has power: at $|s_0| = 1$ the samples of one option are rejected by the exact moments of the other;
# * at $s_0 = 0$ every squeeze is the identity, so the two options must give *bit-identical* samples (same seed);
# * at $s_0 = 0$ and 1000 steps the sampler is diffusers' DDPM, whose error with the exact predictor is small: the
#   exact value is checked above by Monte Carlo, and it must shrink as the number of steps grows.

# %%
z_columns = ["z_variance_error_axis", "z_variance_error_perp", "z_mean_axis"]
failed = monte_carlo[(monte_carlo[z_columns].abs() > k).any(axis=1)]
assert failed.empty, f"Monte Carlo disagrees with the exact sampler moments (|z| > {k:.2f}):\n{failed}"
powerless = monte_carlo[(monte_carlo.s0.abs() == 1) & (monte_carlo.z_variance_axis_other_option.abs() <= k)]
assert powerless.empty, f"the check cannot tell the re-squeeze options apart:\n{powerless}"
for variant, steps in {(variant, steps) for variant, steps, r, s0, _ in runs if s0 == 0 and r == "current"}:
    assert torch.equal(samples[variant, steps, "previous", 0.0], samples[variant, steps, "current", 0.0]), \
        f"at s0 = 0 the two re-squeeze options must give identical samples ({variant}, {steps} steps)"
assert abs(baseline[1000]) < abs(baseline[50]), "DDPM's own error should shrink with more steps"
print(f"all {len(runs)} runs within {k:.2f} SE of the exact moments (max |z| = "
      f"{monte_carlo[z_columns].abs().max().max():.2f}); the other option's moments are rejected at "
      f"|s0| = 1 (min |z| = {monte_carlo[monte_carlo.s0.abs() == 1].z_variance_axis_other_option.abs().min():.1f}); "
      f"s0 = 0 samples are identical for both options")

# %% [markdown]
# ## The sign and the first-order size of the drift error
#
# Prediction 1 on the exact grids (every $s_0 \ne 0$, both step counts). For HDM, along $\hat v$ everything must be
# identical to SDM, and on $\hat v^\perp$ the drift exponent is $-\delta/(n-1)$, so the signs there are reversed.
# Then the first-order formula against a central finite difference of the exact moments at $s_0 = \pm$`slope_step`.

# %%
linear = exact[(exact.schedule == "linear") & (exact.s0 != 0)]
for resqueeze, sign in (("previous", 1), ("current", -1)):
    rows = linear[linear.resqueeze == resqueeze]
    assert (sign * rows.excess_axis * rows.s0 > 0).all(), \
        f"resqueeze={resqueeze!r}: the drift error along v̂ should have the sign of {'+' if sign > 0 else '−'}s0"
    hdm = rows[rows.variant == "hdm"]
    assert (-sign * hdm.excess_perp * hdm.s0 > 0).all(), f"resqueeze={resqueeze!r}: HDM's v̂⊥ error has the wrong sign"
    sdm_50 = rows[(rows.variant == "sdm") & (rows.steps == 50)].set_index("s0")
    torch.testing.assert_close(torch.tensor(hdm.set_index("s0").variance_error_axis.values),
                               torch.tensor(sdm_50.variance_error_axis.loc[hdm.s0].values), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(torch.tensor(sdm_50.excess_perp.values), torch.zeros(len(sdm_50), dtype=F64), rtol=0,
                               atol=1e-9)  # SDM's v̂⊥ is never squeezed

slope_rows = []
for steps in step_counts:
    predicted = drift_study.first_order_drift_slopes(drift_study.make_scheduler(axis, 0.0), variance_on_axis, steps)
    for resqueeze in resqueeze_options:
        plus, minus = (drift_study.exact_errors(data, axis, h, steps, resqueeze)["variance_error_axis"]
                       for h in (slope_step, -slope_step))
        slope_rows.append(dict(steps=steps, resqueeze=resqueeze,
                               finite_difference_slope=(plus - minus) / (2 * slope_step),
                               first_order_slope=getattr(predicted, resqueeze)))
slopes = pd.DataFrame(slope_rows)
slopes["relative_difference"] = slopes.first_order_slope / slopes.finite_difference_slope - 1
at_1000 = slopes[slopes.steps == 1000]
assert (at_1000.relative_difference.abs() < 0.03).all(), f"first-order formula off at 1000 steps:\n{at_1000}"
slopes.round(4)

# %% [markdown]
# ## Prediction 2: more steps do not remove it
#
# The exact moments for $s_0 = \pm1$ and the DDPM baseline over `convergence_steps`, next to the size of one
# interior drift step. The per-step drift falls like 1/steps; the excess error (over the DDPM baseline at the same
# number of steps) settles at a non-zero value.

# %%
convergence_configs = [("previous", 0.0)] + [(r, s0) for r in resqueeze_options for s0 in (-1.0, 1.0)]
convergence = pd.DataFrame([drift_study.exact_errors(data, axis, s0, steps, r) for steps in convergence_steps
                            for r, s0 in convergence_configs])
convergence_baseline = convergence[convergence.s0 == 0].set_index("steps").variance_error_axis
convergence["excess_axis"] = convergence.variance_error_axis - convergence.steps.map(convergence_baseline)
drift_sizes = {}  # steps -> (one interior step, whole trajectory) at s0 = 1
for steps in convergence_steps:
    trajectory_scheduler = drift_study.make_scheduler(axis, 1.0)
    trajectory_scheduler.set_timesteps(steps)
    norms = drift_study.trajectory_drift_norms(trajectory_scheduler)
    product = functools.reduce(torch.matmul, drift_study.trajectory_drifts(trajectory_scheduler))
    trajectory_norm = torch.linalg.matrix_norm(product - torch.eye(3, dtype=F64), ord=2)
    drift_sizes[steps] = (float(norms[:-1].max()), float(trajectory_norm))
for resqueeze in resqueeze_options:
    for s0 in (-1.0, 1.0):
        rows = convergence[(convergence.resqueeze == resqueeze) & (convergence.s0 == s0)].set_index("steps")
        assert abs(rows.excess_axis[1000]) > 0.5 * abs(rows.excess_axis[50]), \
            f"{resqueeze}, s0 = {s0}: the drift error should not shrink like the per-step drift (20× from 50 to 1000)"
assert convergence_baseline.abs().is_monotonic_decreasing, "DDPM's own error should shrink with more steps"
(convergence[convergence.s0 != 0]
 .pivot(index="steps", columns=["resqueeze", "s0"], values="excess_axis")
 .assign(ddpm_baseline=convergence_baseline,
         step_drift_at_1=pd.Series({steps: sizes[0] for steps, sizes in drift_sizes.items()}),
         trajectory_drift_at_1=pd.Series({steps: sizes[1] for steps, sizes in drift_sizes.items()}))
 .round(4))

# %% [markdown]
# ## Clipping: the whitened box and the images' box
#
# With `clip_sample=True` diffusers clips the prediction $\hat x_0$ to $[-1, 1]$ inside the parent's step, which
# here runs on the *whitened* chain: the box is $\lVert S_t^{-1}\hat x_0\rVert_\infty \le 1$, not the images'
# $\lVert\hat x_0\rVert_\infty \le 1$ (the authors' code does the same; `clip_space="data"` clips $\hat x_0$ itself).
# Where does it bite? $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}$ divides the
# predictor's error by $\sqrt{\bar\alpha_t}$, which is $6\times10^{-3}$ at $t = 980$: at large $t$, where $s(t)$ is
# largest and the two boxes differ most, a small error in $\hat\varepsilon$ throws $\hat x_0$ far outside either box.
# The table: under the training marginal of the Gaussian data above, the exact predictor plus independent noise of
# RMS $r$ (a stand-in for a trained network's error), the fraction of entries of $\hat x_0$ outside the box in each
# space, and the fraction of pixels whose clipped $\hat x_0$ differs between the two boxes.

# %%
from sdmlib import clip_study  # noqa: E402  (imported here: the study of this section)

clip_rows = [clip_study.clip_fractions(data, axis, s0, t, error, 20000, seed)
             for s0 in (-1.0, -0.4, 0.4, 1.0) for t in (980, 900, 800, 600, 400, 200, 20) for error in (0.0, 0.02)]
clip_table = pd.DataFrame(clip_rows)
at_980 = clip_table[(clip_table.t == 980) & (clip_table.s0 == -0.4) & (clip_table.predictor_rms_error == 0.02)].iloc[0]
late = clip_table[clip_table.t <= 400]
# The claim of the text: with a predictor error, clipping bites at large t in both boxes and the boxes disagree
# there; from t = 400 down it (almost) never acts. 20 000 pixels: fractions carry an SE below 0.4 percentage points.
assert at_980.clipped_whitened > 0.5 and at_980.samples_differing > 0.9, at_980
assert (late.clipped_whitened < 0.002).all() and (late.clipped_data < 0.002).all(), late
(clip_table.pivot(index=["predictor_rms_error", "t"], columns="s0",
                  values=["clipped_whitened", "clipped_data", "samples_differing"]).round(4))

# %% [markdown]
# **What each box does to the sampler.** The real sampler, 50 steps, with the exact predictor (and with $r = 0.02$),
# for each re-squeeze option and each box: the variance of the samples along $\hat v$ relative to the data's. The
# runs of one $s_0$ share their seed, so the columns differ only by the clipping. (The Gaussian data itself has
# $\sim 2\%$ of its entries outside $[-1, 1]$, which any clipping at small $t$ would cut.)

# %%
clip_sampler_rows = [clip_study.clipped_sampler_errors(data, axis, s0, box, resqueeze, num_samples_50 // 8, 50,
                                                       seed + index, predictor_rms_error=error)
                     for index, s0 in enumerate((-1.0, -0.4, 1.0)) for error in (0.0, 0.02)
                     for resqueeze in resqueeze_options for box in clip_study.CLIP_BOXES]
clip_sampler = pd.DataFrame(clip_sampler_rows)
clip_effect = clip_sampler.pivot(index=["predictor_rms_error", "resqueeze", "s0"], columns="clip_box",
                                 values="variance_error_axis")
clip_effect["whitened_minus_none"] = clip_effect["whitened"] - clip_effect["none"]
clip_effect["data_minus_none"] = clip_effect["data"] - clip_effect["none"]
largest_clip_effect = float(clip_effect[["whitened_minus_none", "data_minus_none"]].abs().max().max())
# Paired runs (same noise): the clipping effect is measured without the Monte Carlo error of either run. It is far
# below the re-squeeze option's (≈ 12 percentage points at s0 = −0.4) and below one SE of a single run (~1%).
assert largest_clip_effect < 0.01, clip_effect
print(f"largest change of the variance along v̂ by clipping (either box): {100 * largest_clip_effect:.3f} "
      f"percentage points")
clip_effect.round(4)

# %% [markdown]
# ## The two protocols on the exact-predictor sampler
#
# A run follows one reading of the paper (`TrainConfig.protocol`): **paper-text** re-squeezes with $S_{t-1}$
# (eq. 7), clips in the images' box and starts from $S\varepsilon$ at the first sampling step; **authors** re-squeezes
# with $S_t$, clips the whitened $\hat x_0$ and starts from $S\varepsilon$ at $t = T-1$. Clipping changes little
# (above), so the exact moments without clipping measure how far apart the two samplers are: the variance error along
# $\hat v$, 50 steps, and its excess over DDPM at the same number of steps.

# %%
protocol_rows = []
for s0 in (-1.0, -0.6, -0.4, -0.2, 0.0, 0.4, 1.0):
    for protocol, resqueeze, initial_squeeze in (("paper-text", "previous", "first_step"),
                                                 ("authors", "current", "t_max")):
        scheduler = drift_study.make_scheduler(axis, s0, resqueeze, initial_squeeze=initial_squeeze)
        errors = drift_study.distribution_errors(drift_study.moments_of_sampler(data, scheduler, 50), data, axis)
        protocol_rows.append(dict(s0=s0, protocol=protocol, variance_error_axis=errors["variance_error_axis"],
                                  excess_axis=errors["variance_error_axis"] - baseline[50],
                                  frechet=errors["frechet"]))
protocols = pd.DataFrame(protocol_rows)
protocols_table = protocols.pivot(index="s0", columns="protocol", values=["variance_error_axis", "excess_axis"])
at_04 = protocols[protocols.s0 == -0.4].set_index("protocol").excess_axis
# The direction the text states (eq. 7 loses variance along v̂ when anti-squeezing, the authors' code gains it).
assert at_04["paper-text"] < 0 < at_04["authors"], at_04
protocols_table.round(4)

# %% [markdown]
# ## Figures
#
# **Sampling error.** Left: the relative error of the generated variance along $\hat v$ against $s_0$ (lines: exact;
# points: Monte Carlo with ±2 SE bars; grey: the drift-free constant-schedule control). Middle: the same with the DDPM
# baseline ($s_0 = 0$, same number of steps) subtracted, i.e. the part caused by $s_0$, with the first-order lines
# $\text{slope}\times s_0$ at 1000 steps (dotted). Right: HDM against SDM at 50 steps, on $\hat v^\perp$. Along $\hat v$
# the two variants are *identical* (same $\lambda_\parallel = e^{-s}$, and the sampler does not mix $\hat v$ with
# $\hat v^\perp$), so HDM differs from SDM only on $\hat v^\perp$, where its drift has exponent $-\delta/(n-1)$:
# half the size and the opposite sign. On $\hat v^\perp$ DDPM's own 50-step error dominates: the small data variances
# there (0.012 and 0.004) are the hardest for a 50-step sampler with the `fixed_small` posterior variance.

# %%
palette = {"previous": "C0", "current": "C3"}
dashes = {50: (4, 2), 1000: ""}
markers = {50: "o", 1000: "s"}
sdm_linear = exact[(exact.variant == "sdm") & (exact.schedule == "linear")]
control = exact[exact.schedule == "constant"]
with sns.axes_style("whitegrid"):
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(18, 7.2))
    for ax, column in ((left, "variance_error_axis"), (middle, "excess_axis")):
        sns.lineplot(data=sdm_linear, x="s0", y=column, hue="resqueeze", style="steps", palette=palette,
                     dashes=dashes, ax=ax)
        if column == "variance_error_axis":
            for steps in step_counts:
                rows = control[control.steps == steps]
                ax.plot(rows.s0, rows[column], color="grey", dashes=dashes[steps] or (None, None), linewidth=1.2,
                        label=f"constant schedule (R = I), {steps} steps")
        for (resqueeze, steps), rows in monte_carlo[monte_carlo.variant == "sdm"].groupby(["resqueeze", "steps"]):
            shift = 0 if column == "variance_error_axis" else rows.steps.map(baseline)
            ax.errorbar(rows.s0, rows.variance_error_axis - shift,
                        yerr=2 * rows.se_variance_error_axis, fmt=markers[steps], color=palette[resqueeze],
                        markersize=5, capsize=2, label=f"Monte Carlo, {resqueeze}, {steps} steps")
        ax.axhline(0, color="k", linewidth=0.8)
    for resqueeze in resqueeze_options:
        slope = float(slopes[(slopes.steps == 1000) & (slopes.resqueeze == resqueeze)].first_order_slope.iloc[0])
        middle.plot([-1, 1], [-slope, slope], color=palette[resqueeze], linestyle=":", linewidth=2,
                    label=f"first order, {resqueeze}: {slope:+.3f}·s0")
    left.set(xlabel="s0", ylabel="v̂ᵀĈv̂ / v̂ᵀCv̂ − 1",
             title=f"SDM: variance of the samples along v̂ (data: {variance_on_axis:.2f})")
    middle.set(xlabel="s0", ylabel="minus the DDPM (s0 = 0) error at the same steps",
               title="SDM: the part caused by s0 (drift)")
    hdm_vs_sdm = exact[(exact.steps == 50) & (exact.schedule == "linear")]
    sns.lineplot(data=hdm_vs_sdm, x="s0", y="variance_error_perp", hue="resqueeze", style="variant", palette=palette,
                 ax=right)
    for resqueeze, rows in monte_carlo[(monte_carlo.variant == "hdm") & (monte_carlo.steps == 50)].groupby("resqueeze"):
        right.errorbar(rows.s0, rows.variance_error_perp, yerr=2 * rows.se_variance_error_perp, fmt="D",
                       color=palette[resqueeze], markersize=5, capsize=2, label=f"Monte Carlo HDM, {resqueeze}")
    right.set(xlabel="s0", ylabel="tr(ΠĈΠ) / tr(ΠCΠ) − 1,  Π = I − v̂v̂ᵀ",
              title="50 steps: total variance on v̂⊥, HDM vs SDM")
    for ax in (left, middle, right):
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
figures.save_figure(fig, output_dir / "03_sampling_error.png")
plt.show()

# %% [markdown]
# **Drift against the number of steps** ($s_0 = \pm1$, exact). Left: one interior drift step $\lVert R_t - I\rVert$
# falls like 1/steps, while the telescoped product $\lVert\prod R_t - I\rVert = |e^{s(t_1)} - 1|$ stays put. Right: the
# excess variance error along $\hat v$ follows the product, not the single step; DDPM's own error (dashed black)
# vanishes with more steps.

# %%
with sns.axes_style("whitegrid"):
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    left.plot(list(drift_sizes), [sizes[0] for sizes in drift_sizes.values()], "o-", color="C2",
              label="one interior step ‖R_t − I‖, s0 = 1")
    left.plot(list(drift_sizes), [sizes[1] for sizes in drift_sizes.values()], "s-", color="C4",
              label="whole trajectory ‖∏R_t − I‖, s0 = 1")
    left.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="spectral norm",
             title="The drift: per step vs telescoped")
    left.legend(fontsize=8)
    for (resqueeze, s0), rows in convergence[convergence.s0 != 0].groupby(["resqueeze", "s0"]):
        right.plot(rows.steps, rows.excess_axis, marker="o", color=palette[resqueeze],
                   linestyle="-" if s0 > 0 else "--", label=f"{resqueeze}, s0 = {s0:+.0f}")
    right.plot(convergence_baseline.index, convergence_baseline.values, "k--", marker="x", label="DDPM error (s0 = 0)")
    right.axhline(0, color="k", linewidth=0.8)
    right.set(xscale="log", xlabel="sampling steps", ylabel="variance error along v̂ (colours: minus DDPM's)",
              title="What the sampler makes of it")
    right.legend(fontsize=8, ncol=2)
    fig.tight_layout()
figures.save_figure(fig, output_dir / "03_drift_vs_steps.png")
plt.show()

# %% [markdown]
# ## What we found
#
# * **Eq. (12) holds**, for SDM and (with the $\hat v^\perp$ factor $e^{-\delta/(n-1)}$) for HDM: squeezes form a
#   one-parameter group, so $R_t = S(-(s_t - s_{t-1}))$, itself a squeeze of strength $-s_0\Delta\beta/\beta_{\max}$.
#   The appendix's step sizes are reproduced: $\Delta\beta = 1.99\times10^{-5}$ (1000 steps) and $3.98\times
#   10^{-4}$ (50 sampling steps, stride 20). Per step, $\lVert R_t - I\rVert_2 \approx 1.0\times10^{-3}\,|s_0|$
#   (1000 steps) and $\approx 2.0\times10^{-2}\,|s_0|$ (50 steps); the last step, into the data, is
#   $|e^{0.005 s_0} - 1|$.
# * **But the drifts telescope**: their product over a trajectory is $S_{t_1}^{-1} = S(-s(t_1))$, eigenvalue
#   $e^{s_0}$ (1000 steps) or $e^{0.981 s_0}$ (50 steps) on $\hat v$, independent of how finely the trajectory is cut.
#   "$R_t \approx I$ at every step" does not make the approximation of eq. (6) harmless: the small errors add up
#   along the trajectory, and the sampler forgets only the early ones.
# * **What it costs, with the exact predictor** (Gaussian data, no training): the generated variance along $\hat v$
#   is off by an amount *roughly linear in $s_0$ and independent of the number of steps*: to first order
#   $+0.205\,s_0$ with `resqueeze="previous"` (eq. 7) and $-0.121\,s_0$ with `"current"` (the authors' code), on top
#   of DDPM's own error. At $s_0 = -1/+1$ that is $-17\%/+26\%$ (previous) and $+14\%/-11\%$ (current) at 1000
#   steps, where DDPM's own error is $-1.7\%$ and the drift-free constant-schedule control stays within $3\%$ of it;
#   $\pm 8$–$26\%$ at every step count from 10 to 1000. At the paper's best $s_0 \approx -0.4$ and 50 steps it is
#   $-7\%$ (previous) or $+5\%$ (current). The first-order formula, a memory-weighted sum of the per-step drifts,
#   matches the exact slopes to $1\%$ at 1000 steps. Which one suffers and how depends on the option:
#   `"previous"` leaves the drift on the signal (too little variance along $\hat v$ when anti-squeezing), `"current"`
#   corrects the signal but scales the noise (too much). Neither is the exact posterior.
# * **HDM** is identical to SDM along $\hat v$; on $\hat v^\perp$ its drift has half the exponent and the opposite
#   sign, and costs about $2\%$ at $|s_0| = 1$ and 50 steps, small next to DDPM's own $-55\%$ there.
# * **A caution for reading FID curves.** At 50 steps DDPM itself under-disperses along $\hat v$ ($-23\%$ with the
#   exact predictor and the `fixed_small` posterior variance). With `"current"` and anti-squeezing ($s_0 < 0$) the
#   drift adds variance along $\hat v$ and partly cancels that: the Fréchet distance to the data falls from
#   $4.6\times10^{-3}$ at $s_0 = 0$ to $2.2\times10^{-3}$ at $s_0 = -1$, although the sampler is not more correct;
#   with `"previous"` the mirror image happens for $s_0 > 0$. That is what happens for Gaussian data; whether the
#   same cancellation contributes to the paper's FID gains at $s_0 \approx -0.4$ on CIFAR-10 is a question for a
#   trained network (whose predictor is not the Gaussian optimum), not something this notebook can settle.
# * **The sampler uses the $S$ it should.** At each of the 50 steps it whitens with $s(t)$ and re-squeezes with
#   $s$ at the next sampling timestep (eq. 7; $0$ after the last step) or at the same one (the authors'), and starts
#   from $S\varepsilon$ at $t = 980$ (or $999$), exactly as a reference built from the $\beta$ schedule alone says.
# * **Clipping acts at large $t$, not near $t = 0$.** With the exact predictor x̂_0 is almost never outside the box
#   (≤ 0.02% of entries, at small $t$, from the Gaussian data's own tails). With a predictor error of RMS 0.02 it is
#   outside in 65–83% of entries at $t = 980$ in the whitened box (70% in the images' box), 2–20% at $t = 800$, and
#   never from $t = 600$ down; at $t = 980$ the two boxes give a different clipped x̂_0 for 97–99% of pixels. But
#   the weight of x̂_0 in a step at large $t$ is small ($\approx 3\times10^{-3}$ at $t = 980$) and later steps contract:
#   the variance of the samples along $\hat v$ changes by at most 0.08 percentage points with either box (paired
#   runs), far below the 12 points between the two re-squeeze options at $s_0 = -0.4$.
# * **The two protocols** (exact moments, 50 steps): at $s_0 = -0.4$ the variance along $\hat v$ is off by
#   $-29.7\%$ (paper-text) against $-17.8\%$ (authors), i.e. $-7.1$ and $+4.8$ points from DDPM's own $-22.6\%$;
#   at $s_0 = -1$, $-15.8$ and $+13.2$ points. The authors' start at $t = 999$ instead of 980 changes these by
#   less than $0.01$ points.
#
# The numbers (also in `03_drift.json`):

# %%
runtime_seconds = time.perf_counter() - start_time
summary = dict(
    seed=seed, axis=v.tolist(), data_mean=data_mean, data_eigenvalues=data_eigenvalues,
    delta_beta={"1000_steps": delta_beta[1000], "50_steps": delta_beta[50]}, beta_max=beta_max,
    timesteps_50=dict(first=timesteps_50[0], last=timesteps_50[-1], stride=stride),
    drift_norms=drift_rows, telescoping=telescoping_rows,
    ddpm_baseline_variance_error_axis={str(steps): float(baseline[steps]) for steps in step_counts},
    exact=exact.to_dict(orient="records"), monte_carlo=monte_carlo.to_dict(orient="records"),
    tolerance_k=k, false_alarm_rate=false_alarm_rate, max_abs_z=float(monte_carlo[z_columns].abs().max().max()),
    first_order_slopes=slopes.to_dict(orient="records"), convergence=convergence.to_dict(orient="records"),
    drift_sizes_at_s0_1={str(steps): dict(one_step=one, trajectory=whole)
                         for steps, (one, whole) in drift_sizes.items()},
    monte_carlo_seconds=monte_carlo_seconds, runtime_seconds=runtime_seconds,
    sampler_strengths=strength_rows, clip_fractions=clip_rows, clip_sampler=clip_sampler.to_dict(orient="records"),
    largest_clip_effect_variance_axis=largest_clip_effect, protocols_50_steps=protocols.to_dict(orient="records"),
)
figures.save_json(output_dir / "03_drift.json", summary)

table = (exact[(exact.variant == "sdm") & (exact.schedule == "linear") & exact.s0.isin(set(grid_50) & set(grid_1000))]
         .assign(frechet_times_1000=lambda rows: 1000 * rows.frechet)
         .pivot(index="s0", columns=["steps", "resqueeze"],
                values=["variance_error_axis", "relative_frobenius", "frechet_times_1000"]))
print(f"runtime {runtime_seconds:.1f} s (Monte Carlo {monte_carlo_seconds:.1f} s); "
      f"Monte Carlo tolerance k = {k:.2f} SE, max |z| = {summary['max_abs_z']:.2f}\n")
print("Per-step drift ‖R_t − I‖₂ (SDM; HDM is the same):")
print(drift_table[drift_table.variant == "sdm"].pivot(index="s0", columns="steps", values=["interior_norm",
      "last_step_norm"]).to_string(float_format="{:.2e}".format), "\n")
print("Exact sampler errors, SDM: variance along v̂ relative to the data's, relative Frobenius error, "
      "Fréchet distance × 1000:")
print(table.to_string(float_format="{:+.4f}".format), "\n")
print("First-order drift slopes (per unit s0) against finite differences of the exact moments:")
print(slopes.to_string(index=False, float_format="{:+.4f}".format), "\n")
print("Clipped entries of x̂_0 (whitened box, data box) and pixels whose clipped x̂_0 differs, by t and s0:")
print(clip_table.pivot(index=["predictor_rms_error", "t"], columns="s0",
                       values=["clipped_whitened", "clipped_data", "samples_differing"]).to_string(
                           float_format="{:.4f}".format), "\n")
print("Variance error along v̂ with each clipping box (50 steps, paired runs):")
print(clip_effect.to_string(float_format="{:+.4f}".format), "\n")
print("The two protocols, exact moments at 50 steps (variance error along v̂, and its excess over DDPM):")
print(protocols_table.to_string(float_format="{:+.4f}".format), "\n")
print("Monte Carlo (real sampler) against exact:")
print(monte_carlo[["variant", "steps", "resqueeze", "s0", "variance_error_axis", "variance_error_axis_exact",
                   "se_variance_error_axis", "z_variance_error_axis", "z_variance_error_perp", "z_mean_axis"]]
      .to_string(index=False, float_format="{:+.4f}".format))
