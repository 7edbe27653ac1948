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
# # Post-training quantization of a trained (squeezed) diffusion model: PTQ4DM and Q-Diffusion
#
# One quantization setting of one trained run (`docs/quant.md`): every Conv2d and Linear of its UNet
# (first and last layers and the time embedding included) fake-quantized with brevitas, weights per output
# channel, activations per tensor, calibrated on samples of the full-precision model's own trajectories; then the
# squeezed sampler run through the quantized network from the same noise as the full-precision one.
#
# ```bash
# papermill notebooks/quantize.ipynb outputs/quantize.ipynb -p run_dir outputs/runs/X -p method ptq4dm -p weight_bits 8
# papermill notebooks/quantize.ipynb outputs/quantize.ipynb -p run_dir outputs/runs/X -p method qdiffusion \
#   -p weight_bits 4
# ```
#
# Each setting writes `<output_dir>/<setting>/` (default `<run_dir>/quant/<setting>/`): quantizer state,
# metrics.json, sample grids. Running the notebook again skips a finished setting, and refuses a folder made with
# other parameters. The figures at the end compare every finished setting of the run.

# %%
import matplotlib.pyplot as plt

from sdmlib.quant.config import QuantConfig
from sdmlib.quant.run import load_settings, quantize_run, setting_folder, shortcut_report

_names_before_parameters = set(globals())

# %% tags=["parameters"]
run_dir = ""  # a trained run folder (relative to the repository root)
output_dir = ""  # where the setting folders go; "" = <run_dir>/quant
method = "qdiffusion"  # ptq4dm | qdiffusion | minmax
weight_bits = 8  # 4 | 8
activation_bits = 8  # 8 | 16
calibration = "auto"  # auto (the method's) | ndtc | uniform | noised_real | single_timestep
calibration_size = 1024  # PTQ4DM: 1024; Q-Diffusion CIFAR-10: 5120
shortcut_split = "auto"  # auto | on | off
reconstruction = "auto"  # auto | on | off
reconstruction_iterations = 200  # per block (Q-Diffusion: 20000 on a GPU)
activation_iterations = 100  # step-size iterations per block (Q-Diffusion: 5000)
sampler = "ddpm"  # ddpm: the run's SqueezedDDPMScheduler
num_inference_steps = 50  # sampler steps
num_eval_samples = 64  # samples from the float and the quantized network, same noise
batch_size = 32  # network batch
mse_candidates = 100  # PTQ4DM's clipping ranges searched per quantizer
search_norm = 2.4  # PTQ4DM's code: the clipping search minimises the L_2.4 error (2: squared error)
ndtc_labelling = "paper"  # paper | code (PTQ4DM's script labels the image near T-1-t with t)
attention_matmuls = False  # also quantize the inputs of QK^T and AV (Q-Diffusion's code does)
device = "auto"  # auto (CUDA when available) | cpu | cuda
# %%
config = QuantConfig.from_namespace(globals(), _names_before_parameters)
folder = setting_folder(config)
print(folder)

# %% [markdown]
# ## Quantize and measure
# Calibration set → shortcut split (Q-Diffusion) → brevitas layers → activation ranges → block reconstruction
# (Q-Diffusion), then the per-timestep relative error ‖ε̂_q − ε̂‖/‖ε̂‖ along full-precision trajectories and the
# samples of both networks from the same noise.

# %%
result = quantize_run(config, progress=False)
print("mean relative error over timesteps:", round(result["mean_relative_error"], 4))
print("sample distance (RMS, [-1, 1] units):", result["sample_distance"])
print("metrics:", result["metrics"])

# %% [markdown]
# The quantized network must stay close to the full-precision one: at 8 bits its error is a rounding error of a
# few per cent, far below the network's output (relative error < 1; a broken quantizer gives ≈ 1 or more).

# %%
assert 0 < result["mean_relative_error"] < 1, result["mean_relative_error"]

# %% [markdown]
# ## Shortcut splitting on this run's UNet
# Each up-block resnet of diffusers reads the concatenation h ⊕ skip of the upsampled deep features and the
# encoder's skip features, directly in its 1×1 `conv_shortcut`. Q-Diffusion quantizes the two parts separately.
# Below, on this run's trained UNet and with this setting's quantizers, the largest |value| of each part, and the
# layer's output error (‖y_q − y‖/‖y‖ against the float layer) with one quantizer for the whole concatenation
# and with the split (calibration: a uniform set of at most 64 samples from the float model's trajectories).

# %%
split_report = shortcut_report(config)
print(f"{'layer':40s} {'max|h|':>8s} {'max|skip|':>9s} {'ratio':>6s} {'error, one':>11s} {'error, split':>12s}")
for name, row in split_report.items():
    ratio = max(row["h_range"], row["skip_range"]) / min(row["h_range"], row["skip_range"])
    print(f"{name:40s} {row['h_range']:8.2f} {row['skip_range']:9.2f} {ratio:6.1f} {row['error_single']:11.4f} "
          f"{row['error_split']:12.4f}")
fig, ax = plt.subplots(figsize=(7, 3))
names = [name.replace("up_blocks.", "up").replace(".resnets.", ".r").replace(".conv_shortcut", "")
         for name in split_report]
positions = range(len(names))
ax.bar([p - 0.2 for p in positions], [r["error_single"] for r in split_report.values()], 0.4, label="one quantizer")
ax.bar([p + 0.2 for p in positions], [r["error_split"] for r in split_report.values()], 0.4, label="split")
ax.set_xticks(list(positions), names)
ax.set_ylabel("relative output error")
ax.legend()
fig.savefig(folder / "shortcut_split.png", dpi=120, bbox_inches="tight")
plt.show()

# %% [markdown]
# Each part's range lies inside the joint one, so its quantization step is no larger: the split cannot cost
# accuracy beyond rounding noise. Asserted: the mean error over the split layers is lower with the split, and no
# layer's error grows by more than 10 % (the margin covers layers whose two ranges are alike, where the two
# errors are equal up to which values happen to round which way).

# %%
single = [row["error_single"] for row in split_report.values()]
split = [row["error_split"] for row in split_report.values()]
assert sum(split) < sum(single), (split, single)
assert all(b <= 1.1 * a for a, b in zip(single, split)), (split, single)

# %% [markdown]
# ## Error against timestep, every finished setting of this run

# %%
settings = load_settings(config)
fig, ax = plt.subplots(figsize=(7, 4))
for name, record in settings.items():
    curve = {int(t): e for t, e in record["timestep_relative_error"].items()}
    ax.plot(list(curve), list(curve.values()), marker="o", ms=3, label=name)
ax.set_xlabel("timestep t")
ax.set_ylabel("relative error of ε̂")
ax.set_yscale("log")
ax.legend(fontsize=6)
fig.savefig(folder / "error_vs_timestep.png", dpi=120, bbox_inches="tight")
plt.show()

# %%
for name, record in settings.items():
    print(f"{name:70s} mean rel. error {record['mean_relative_error']:.4f}  "
          f"sample RMS {record['sample_distance']['rms_mean']:.4f}")

# %% [markdown]
# ## Full-precision (left) and quantized (right) samples from the same noise

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, name, title in zip(axes, ("grid_fp.png", "grid_quant.png"), ("full precision", config.setting_name())):
    ax.imshow(plt.imread(folder / name))
    ax.set_title(title, fontsize=7)
    ax.axis("off")
fig.savefig(folder / "grids.png", dpi=120, bbox_inches="tight")
plt.show()
