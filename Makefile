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

.PHONY: demo test install derivations sync clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Execute every derivation notebook with papermill; each asserts its own checks, so a wrong derivation fails here.
derivations: $(STAMP)
	mkdir -p $(OUT)/derivations
	@for nb in $(EXECUTED); do \
	  echo "== papermill notebooks/$$nb -> $(OUT)/derivations/$$nb"; \
	  $(BIN)/papermill --cwd notebooks --log-level WARNING notebooks/$$nb $(OUT)/derivations/$$nb \
	    -p output_dir ../$(OUT)/derivations || exit 1; \
	done

# The main job on the offline CPU profile: train, sample and evaluate one SDM (s0 = -0.3) on packaged photographs.
# Running it again resumes an interrupted run and skips finished work.
demo: $(STAMP)
	mkdir -p $(OUT)/demo
	$(BIN)/papermill --cwd notebooks --log-level WARNING notebooks/train.ipynb $(OUT)/demo/train-quick.ipynb \
	  -f params/quick.yaml -p s0 -0.3 -p output_dir $(DEMO_RUN)
	@echo
	@echo "Done. The executed notebook:   $(OUT)/demo/train-quick.ipynb"
	@echo "      sample grid and metrics: $(DEMO_RUN)/samples_grid.png, $(DEMO_RUN)/metrics.json"
	@echo "      the derivations:         make derivations (results in $(OUT)/derivations/)"

test: $(STAMP)
	$(BIN)/python -m pytest tests/
	$(MAKE) --no-print-directory derivations

# After editing a notebook's .py source: regenerate its .ipynb (without outputs) from it.
sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean:
	rm -rf $(OUT)/derivations $(OUT)/demo $(DEMO_RUN)
