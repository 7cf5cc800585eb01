# Two commands on a fresh clone, with nothing but python3 and pip:
#   make test        set up .venv (once) and run the test suite
#   make reproduce   set up .venv (once) and run the notebook pipeline
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test reproduce lab bench

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a second `make test` installs nothing.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing qcslib and its pinned dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install -e '.[dev]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; echo "pip install failed, see $(VENV)/install.log"; exit 1; }
	@touch $@

test: setup
	$(BIN)/python -m pytest

reproduce: setup
	@if ls notebooks/[0-9][0-9]_*.ipynb >/dev/null 2>&1; then \
		echo "will run, in order, through papermill into reports/$(PROFILE)/:"; ls notebooks/[0-9][0-9]_*.ipynb; \
	else \
		echo "no notebooks yet: the notebook issue adds notebooks/NN_*.ipynb, which this target will run in order through papermill into reports/$(PROFILE)/"; \
	fi

# Jupyter refuses to run as root (containers, CI machines) unless told to.
lab: setup
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(BIN)/python benchmarks/model_cost.py
