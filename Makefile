# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs into .venv first
# (once; again only when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := outputs

DERIVATIONS := $(sort $(wildcard notebooks/0*_*.py))
EXECUTED := $(patsubst notebooks/%.py,%.ipynb,$(DERIVATIONS))

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

demo: derivations
	@echo
	@echo "Done. Executed notebooks, figures and numbers are in $(OUT)/derivations/:"
	@ls -1 $(OUT)/derivations
	@echo "Open them with: $(BIN)/jupyter lab $(OUT)/derivations"

test: $(STAMP)
	$(BIN)/python -m pytest tests/
	$(MAKE) --no-print-directory derivations

# After editing a notebook's .py source: regenerate its .ipynb (without outputs) from it.
sync: $(STAMP)
	$(BIN)/jupytext --sync $(DERIVATIONS)

clean:
	rm -rf $(OUT)/derivations
