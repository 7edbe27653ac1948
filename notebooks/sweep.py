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
# # Sweep: the paper's grids of squeeze strengths
#
# The paper's claims are curves over the squeeze strength s (Figure 2): FID is U-shaped in s with its optimum in
# mild anti-squeezing, SDM against HDM, the same shape on CIFAR-100 and CelebA-64. This notebook trains every run of
# one grid file (s0 × variant × seed × dataset) into one sweep folder, each run exactly the run
# `notebooks/train.ipynb` does with those parameters (the executed copy of that notebook lands in each run folder),
# and records one row per run in the folder's `results.csv`. `notebooks/figures.ipynb` turns that table into the
# figures.
#
# ```bash
# papermill notebooks/sweep.ipynb outputs/sweep.ipynb -p grid params/sweep-fig2a.yaml          # this machine's GPUs
# papermill notebooks/sweep.ipynb outputs/sweep.ipynb -p grid params/sweep-fig2a.yaml -p executor slurm \
#     -p slurm_partition gpu
# papermill notebooks/sweep.ipynb outputs/sweep.ipynb -p grid params/sweep-smoke.yaml -p output_dir outputs/sweeps/smoke
# ```
#
# Running it again skips finished runs, resumes interrupted ones from their last checkpoint and retries failed ones;
# a failing run is recorded with its error while the rest of the grid goes on. The work is done by `sdmlib.sweep`
# through submitit: its local executor (one run per GPU, or `max_parallel` runs on a CPU machine), SLURM (one job
# array, one GPU per run), or its debug executor (every run in this process, for pdb).

# %%
from IPython.display import display

from sdmlib.sweep import SweepConfig, SweepGrid, grid_runs, raise_for_unfinished, read_results, run_sweep, sweep_status

_names_before_parameters = set(globals())

# %% tags=["parameters"]
grid = "params/sweep-fig2a.yaml"  # the grid file (params/sweep-*.yaml)
output_dir = "outputs/sweeps/paper"  # the sweep folder; the paper's grids share one, figures.ipynb reads it
executor = "local"  # local: this machine (submitit LocalExecutor) | slurm | debug: in this process, one by one
max_parallel = 0  # local runs at once; 0 means one per GPU (one on a machine without a GPU)
runner = "notebook"  # notebook: papermill notebooks/train.ipynb per run | python: the calls that notebook makes
retry_failed = True  # run again the runs whose last attempt failed
timeout_minutes = 1440  # per run
poll_seconds = 10.0  # progress refresh interval
slurm_partition = ""  # empty: the cluster's default partition
slurm_gpus_per_run = 1
slurm_cpus_per_run = 8
slurm_mem_gb = 64
slurm_array_parallelism = 64  # at most this many runs of the SLURM job array at once
allow_failed = False  # accept a partial grid; without it the notebook ends with an error if a run did not finish

# %%
config = SweepConfig.from_namespace(globals(), _names_before_parameters)
sweep_grid = SweepGrid.read(config.grid)
runs = grid_runs(sweep_grid, config.sweep_dir)
print(f"grid {sweep_grid.name!r}: {sweep_grid.description}")
print(f"{len(runs)} runs into {config.sweep_dir}")
before = sweep_status(runs, config.sweep_dir)
before.state.value_counts()

# %% [markdown]
# ## The runs
#
# Each row is one grid point; s0 = 0 is trained once and serves as the DDPM baseline of both variants (S(0) = I for
# SDM and HDM alike, eq. 9). The progress bar counts runs that ended; its postfix shows how many are running, how
# many failed, and the time left estimated from the runs that ended so far. The same numbers are rewritten to
# `progress.json` in the sweep folder, for a terminal to watch (`watch cat outputs/sweeps/paper/progress.json`).

# %%
report = run_sweep(config)
print(report)

# %% [markdown]
# ## Where the grid stands
#
# The state of every run after this call (finished, failed with its error, interrupted, pending) and the rows of the
# results table for this grid. A failed run's traceback is in its run folder's `error.log` (and, with the notebook
# runner, in its executed `train.ipynb`).

# %%
after = sweep_status(runs, config.sweep_dir)
display(after)
failed = after[after.state == "failed"]
for row in failed.itertuples():
    print(f"FAILED {row.run_id}: {row.error}")

# %%
results = read_results(config.sweep_dir)
metric_columns = ["fid", "isc_mean", "precision", "recall", "pca_fd", "pca_precision", "pca_recall"]
ours = results[results.run_id.isin([run.run_id for run in runs])]
shown = ours[["run_id", "status", *[c for c in metric_columns if ours[c].notna().any()], "wall_seconds"]]
shown.sort_values("run_id")

# %% [markdown]
# A sweep whose runs did not all finish ends here with an error that lists them (so papermill, and `make smoke`,
# exit with a non-zero status), unless `allow_failed` accepts a partial grid.

# %%
raise_for_unfinished(after, allow_failed=config.allow_failed)
