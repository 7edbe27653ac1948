# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs into .venv first
# (once; again only when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := outputs

DERIVATIONS := $(sort $(wildcard notebooks/0*_*.py))
EXECUTED := $(patsubst notebooks/%.py,%.ipynb,$(DERIVATIONS))

DEMO_RUN := $(OUT)/runs/quick-s0_-0.3
SMOKE := $(OUT)/sweeps/smoke
GRID ?= params/sweep-fig2a.yaml
PAPERMILL := $(BIN)/papermill --cwd notebooks --log-level WARNING

.PHONY: demo test install derivations smoke sweep figures sync clean quantize-smoke gpu-dry-run

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Execute every derivation notebook with papermill; each asserts its own checks, so a wrong derivation fails here.
# They run from the repository root (no --cwd): their relative paths resolve against it wherever they start.
# Figures and JSON go to outputs/derivations/seed<seed>/.
derivations: $(STAMP)
	mkdir -p $(OUT)/derivations
	@for nb in $(EXECUTED); do \
	  echo "== papermill notebooks/$$nb -> $(OUT)/derivations/$$nb"; \
	  $(BIN)/papermill --log-level WARNING notebooks/$$nb $(OUT)/derivations/$$nb \
	    -p output_dir $(OUT)/derivations || exit 1; \
	done

# The main job on the offline CPU profile: train, sample and evaluate one SDM (s0 = -0.3) on packaged photographs.
# Running it again resumes an interrupted run and skips finished work.
demo: $(STAMP)
	mkdir -p $(OUT)/demo
	$(PAPERMILL) notebooks/train.ipynb $(OUT)/demo/train-quick.ipynb \
	  -f params/quick.yaml -p s0 -0.3 -p output_dir $(DEMO_RUN)
	@echo
	@echo "Done. The executed notebook:   $(OUT)/demo/train-quick.ipynb"
	@echo "      sample grid and metrics: $(DEMO_RUN)/samples_grid.png, $(DEMO_RUN)/metrics.json"
	@echo "      the derivations:         make derivations (results in $(OUT)/derivations/)"

test: $(STAMP)
	$(BIN)/python -m pytest tests/
	$(MAKE) --no-print-directory derivations
	$(MAKE) --no-print-directory smoke
	$(MAKE) --no-print-directory quantize-smoke
	$(MAKE) --no-print-directory gpu-dry-run

# The sweep -> figures path on real tiny runs (params/sweep-smoke.yaml): offline, CPU, a few minutes. Every figure
# of the paper is drawn from them (photos stands in for every dataset; FID falls back to the offline metric).
smoke: $(STAMP)
	mkdir -p $(SMOKE)
	$(PAPERMILL) notebooks/sweep.ipynb $(SMOKE)/sweep.ipynb -p grid params/sweep-smoke.yaml -p output_dir $(SMOKE) \
	  -p poll_seconds 2
	$(PAPERMILL) notebooks/figures.ipynb $(SMOKE)/figures.ipynb -p sweep_dir $(SMOKE) -p output_dir $(SMOKE)/figures \
	  -p main_dataset photos -y 'cross_datasets: [photos, photos]' -p fit_half_width 2
	@echo "smoke figures: $(SMOKE)/figures/"

# Quantization (notebooks/quantize.ipynb) on a tiny run trained for seconds: PTQ4DM W8A8 and Q-Diffusion W4A8
# (reconstruction runs 5 iterations here, with the attention matmuls quantized; the README gives the study's settings).
QUANT_RUN := $(OUT)/quant-smoke/run
quantize-smoke: $(STAMP)
	mkdir -p $(OUT)/quant-smoke
	$(BIN)/python -m sdmlib.train -f params/quick.yaml -p train_steps 10 -p lr_warmup_steps 2 -p checkpoint_every 10 \
	  -p output_dir $(QUANT_RUN) --no-eval --no-progress
	$(PAPERMILL) notebooks/quantize.ipynb $(OUT)/quant-smoke/quantize-ptq4dm.ipynb -f params/quant-quick.yaml \
	  -p run_dir $(QUANT_RUN) -p method ptq4dm -p weight_bits 8
	$(PAPERMILL) notebooks/quantize.ipynb $(OUT)/quant-smoke/quantize-qdiffusion.ipynb -f params/quant-quick.yaml \
	  -p run_dir $(QUANT_RUN) -p method qdiffusion -p weight_bits 4 -p attention_matmuls True \
	  -p reconstruction_iterations 5 -p activation_iterations 2
	@echo "quantization smoke: $(QUANT_RUN)/quant/"

# The prepared GPU check (benchmarks/gpu/README.md) on the CPU: tiny sizes, CUDA-only parts skipped, < 1 min. It
# fails when a step of the script fails (check.sh's exit status), so the script cannot rot between GPU runs.
GPU_DRY := $(OUT)/gpu-dry-run
gpu-dry-run: $(STAMP)
	rm -rf $(GPU_DRY)
	PYTHON=$(BIN)/python bash benchmarks/gpu/check.sh $(GPU_DRY) --dry-run

# A grid of the paper on this machine's GPUs (see the README for SLURM): make sweep GRID=params/sweep-fig2d.yaml
sweep: $(STAMP)
	mkdir -p $(OUT)/sweeps/paper
	$(PAPERMILL) notebooks/sweep.ipynb $(OUT)/sweeps/paper/sweep-$(basename $(notdir $(GRID))).ipynb -p grid $(GRID)

# Figures 2a-2f and 3 and the paper-vs-ours table from the paper's sweep folder.
figures: $(STAMP)
	mkdir -p $(OUT)/figures
	$(PAPERMILL) notebooks/figures.ipynb $(OUT)/figures/figures.ipynb

# After editing a notebook's .py source: regenerate its .ipynb (without outputs) from it.
sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean:
	rm -rf $(OUT)/derivations $(OUT)/demo $(DEMO_RUN) $(SMOKE) $(OUT)/quant-smoke $(OUT)/gpu-dry-run
