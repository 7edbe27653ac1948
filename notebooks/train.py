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
# # Train, sample and evaluate one squeezed diffusion model
#
# One run of the paper's experiment: a UNet trained with the squeezed objective (eq. 4), sampled with the
# whiten–denoise–re-squeeze sampler (eqs. 5–7) in 50 steps, and scored with FID-10K, Inception Score and
# precision/recall against the training set (and, everywhere, an offline metric that needs no downloaded weights).
#
# ```bash
# papermill notebooks/train.ipynb outputs/train.ipynb -p s0 -0.3                      # the paper's CIFAR-10 run
# papermill notebooks/train.ipynb outputs/train.ipynb -f params/cifar100.yaml -p s0 -0.3 # another dataset
# papermill notebooks/train.ipynb outputs/train.ipynb -f params/quick.yaml -p s0 -0.3    # offline, CPU, minutes
# ```
#
# The work is done by `sdmlib` (`sdmlib.train.train`, `sdmlib.evaluate.evaluate_run`); `python -m sdmlib.train`
# takes the same parameters and does the same thing without a notebook (and under `accelerate launch`). Everything
# the run writes goes into its run folder (`output_dir`); running the notebook again resumes an interrupted run from
# its last checkpoint and does not redo finished work.

# %%
import json

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display
from torch.utils.data import DataLoader
from torchvision.utils import make_grid

from sdmlib.config import TrainConfig
from sdmlib.data import build_dataset
from sdmlib.evaluate import evaluate_run, evaluation_dir
from sdmlib.train import principal_axis_for, train

_names_before_parameters = set(globals())

# %% tags=["parameters"]
dataset = "cifar10"  # cifar10 | cifar100 | celeba64 | folder | photos (offline crops of packaged photographs)
data_root = "data"  # datasets live (and are downloaded) here; relative to the repository root
image_size = 32  # 32 for CIFAR, 64 for CelebA-64
s0 = 0.0  # squeeze strength: 0 is DDPM, < 0 anti-squeezes (the paper's best CIFAR-10 value is about -0.4)
variant = "sdm"  # sdm | hdm (eq. 9)
squeeze_schedule = "linear"  # linear: s(t) is s0 β_t / β_max (the paper's) | constant
forward = "paper"  # training marginal: paper: √(1−ᾱ_t) S_t ε (the authors') | exact: eq. 3's Σ_t^½ ε
protocol = "paper-text"  # paper-text: eq. 7 as printed | authors: their public code; sets the next four when empty
resqueeze = ""  # previous: S_(t-1), eq. 7 | current: S_t, the authors' code | empty: the protocol's
clip_box = ""  # where x̂_0 is clipped to [-1, 1]: data | whitened (the authors') | none | empty: the protocol's
initial_squeeze = ""  # S of the starting noise at: first_step (of sampling) | t_max (T - 1, the authors') | empty
num_train_timesteps = 1000  # T
beta_start = 0.0001  # linear β schedule, diffusers' default
beta_end = 0.02
model_size = "paper"  # paper: UNet2D (128, 256, 512, 512) | small | tiny (CPU)
model = "unet"  # unet | jit: the JiT-style transformer on patches (sdmlib.jit), sized by model_size
patch_size = 4  # jit only: patch side (divides image_size); the patch dimension is 3·patch_size²
bottleneck_dim = 0  # jit only: low-rank patch embedding 3p² → d′ → width (JiT's bottleneck); 0: none
prediction_type = "epsilon"  # network output: epsilon (ε^sq, the paper's) | sample (x_0) | v_prediction
loss_space = "epsilon"  # where the squared error is taken: epsilon | sample | v_prediction
max_loss_weight = 20.0  # bound on a conversion's 1/a_t or 1/b_t weight (JiT clamps 1 − t at 0.05)
seed = 0  # seeds the weights, the batch order, the noise and the sampler
train_steps = 3910  # 10 epochs of CIFAR-10 at batch 128 (the authors' code)
batch_size = 128
learning_rate = 0.0001  # AdamW, as in the authors' code
adam_beta1 = 0.95
adam_beta2 = 0.999
adam_weight_decay = 0.000001
adam_epsilon = 0.00000001
lr_warmup_steps = 500  # then cosine decay
grad_clip = 1.0  # max gradient norm
ema_decay = 0.9999  # EMA of the weights, with warm-up (inv_gamma 1, power 3/4)
ema_inv_gamma = 1.0
ema_power = 0.75
mixed_precision = "auto"  # auto: fp16 on CUDA, fp32 on CPU | no | fp16 | bf16
num_workers = 4  # DataLoader workers (when the data is not held on the device)
tf32 = True  # TF32 matrix products on CUDA; no effect on the CPU
channels_last = "auto"  # NHWC layout of the UNet: on | off | auto (on for CUDA)
compile = False  # torch.compile the network for training and sampling (eager, with a note, where unavailable)
data_on_device = "auto"  # training set as uint8 on the device: on | off | auto (CUDA, when it fits)
num_inference_steps = 50  # sampling steps
sampler = "ddpm"  # ddpm (the paper's) | ddim | exact | exact_ddim (sdmlib.samplers); the run trains the same
eta = -1.0  # η of ddim / exact: 0 deterministic, 1 ancestral; -1: the sampler's own
num_eval_samples = 10000  # FID-10K
eval_batch_size = 500
metrics = ["fid", "isc", "prc", "pca_fd", "pca_prc"]  # FID, IS, precision/recall (k 3); pixel-PCA FD and P/R offline
pca_components = 64  # dimension of the offline metric's pixel-PCA space
prc_num_real = -1  # real images of precision/recall: 0 = as many as generated | N = up to N | -1: the protocol's
inception_weights = ""  # local path to torch-fidelity's Inception weights; empty: download them
vgg_weights = ""  # local path to the VGG16 weights of precision/recall; empty: download them
num_grid_samples = 36  # images in the sample grid
grid_seed = 1234  # the grid's noise: the same images for every s0
output_dir = ""  # the run folder; empty: outputs/runs/DATASET-VARIANT-s0_S0-seedSEED[-PROTOCOL]
checkpoint_every = 500  # optimisation steps between checkpoints
log_every = 10  # steps between loss records

# %%
config = TrainConfig.from_namespace(globals(), _names_before_parameters)
print(f"run folder: {config.run_dir}")
config

# %% [markdown]
# ## Data and its principal axis
#
# The squeeze acts along v̂, the first principal component of the per-pixel RGB covariance of the training set
# (eq. 9). It is computed once per dataset, in one streaming float64 pass, and cached; the run records the axis it
# used in `principal_axis.json`.

# %%
training_images = build_dataset(config.dataset, config.data_dir, config.image_size)
axis_info = principal_axis_for(config, training_images)
print("v̂ =", [round(v, 4) for v in axis_info["axis"]], " eigenvalues:", [f"{e:.4g}" for e in axis_info["eigenvalues"]])
images = next(iter(DataLoader(training_images, batch_size=64)))
plt.figure(figsize=(6, 6))
plt.imshow(make_grid(images * 0.5 + 0.5, nrow=8).permute(1, 2, 0).clamp(0, 1))
plt.axis("off")
plt.title(f"training images ({config.dataset})")
plt.show()

# %% [markdown]
# ## Training (eq. 4)
#
# x_t = √ᾱ_t x_0 + √(1−ᾱ_t) S_t ε and the network learns the squeezed noise S_t ε; with s0 = 0 this is DDPM through
# the same code. Checkpoints are written atomically every `checkpoint_every` steps; re-running resumes.

# %%
run_dir = train(config)
display(Image(filename=str(run_dir / "loss.png")))
print(json.dumps(json.loads((run_dir / "training.json").read_text()), indent=2))

# %% [markdown]
# ## Sampling and evaluation
#
# 50 steps of the squeezed sampler from S_T ε. The grid uses fixed noise seeds, so grids of runs with different s0
# compare image for image. FID, IS and precision/recall come from torch-fidelity; without Inception/VGG weights
# (offline) they are reported as unavailable, and the PCA Fréchet distance is the metric to compare runs by.

# %%
result = evaluate_run(config)
display(Image(filename=str(evaluation_dir(config) / "samples_grid.png")))
print(json.dumps(result["metrics"], indent=2))
print(f"sampling: {result['sampling']['images_per_second']} images/s on {result['sampling']['device']}")
