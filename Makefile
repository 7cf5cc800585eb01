# Two commands on a fresh clone, with nothing but python3 and pip:
#   make test        set up .venv (once), run the test suite, then every notebook under nbval (smoke profile)
#   make reproduce   set up .venv (once) and run the notebook pipeline
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test reproduce study lab bench

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a second `make test` installs nothing.
# facenet-pytorch goes in with --no-deps: its metadata pins torch<2.3 and numpy<2 (see pyproject.toml).
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing qcslib and its pinned dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install -e '.[dev]' && $(BIN)/python -m pip install --no-deps facenet-pytorch==2.6.0; } \
		> $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; echo "pip install failed, see $(VENV)/install.log"; exit 1; }
	@touch $@

# nbval runs the notebooks as they are stored (their parameters cells read QCS_PROFILE) and writes nothing back;
# --nbval-lax: a cell fails only by raising, its outputs are not compared. It is the one run of each notebook in a
# test run (pytest checks the pipeline on small notebooks of its own). The runs land in runs/smoke.
test: setup
	$(BIN)/python -m pytest
	QCS_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax notebooks

reproduce: setup
	$(BIN)/python -m qcslib.pipeline --profile $(PROFILE)

# The gallery of converged results (the study profile: more seeds), rendered into docs/study/.
study: setup
	$(BIN)/python -m qcslib.pipeline --profile study --gallery docs/study

# Jupyter refuses to run as root (containers, CI machines) unless told to.
lab: setup
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	for b in machine model_cost sampler_speed synthfer_speed train_speed inference_speed loader_speed manifest_speed video_speed int8_speed student_speed distill_speed; do $(BIN)/python benchmarks/$$b.py || exit 1; done
