# The README's two commands: `make demo` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# bash: the test loop reads pytest's status through a pipe (PIPESTATUS).
SHELL := /bin/bash
BACKENDS ?= tensorflow jax torch
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test lint benchmark

setup: $(VENV)/.installed

# torch is pinned to 2.13.0 in pyproject.toml: any other spec can pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# The main job: CC-MobileNetV1 and its plain baseline on the embedded digits, evaluated,
# exported (SavedModel; LiteRT float32 and int8, each evaluated in the LiteRT interpreter), with
# the results table and the output paths.
demo: setup
	$(BIN)/keras-routing train zoo/cc_mobilenet_v1-digits-quick.toml --export saved_model litert litert_int8

# The whole suite once per backend. Every backend runs even after one fails; then one summary
# line per backend, and a non-zero exit if any failed. Each backend's full log: $(VENV)/test-<backend>.log.
test: setup
	@failed=""; \
	for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS) 2>&1 | tee $(VENV)/test-$$backend.log; \
		[ $${PIPESTATUS[0]} -eq 0 ] || failed="$$failed $$backend"; \
	done; \
	echo "=== summary"; \
	for backend in $(BACKENDS); do \
		echo "$$backend: $$(tail -n 1 $(VENV)/test-$$backend.log | tr -d '=' | sed 's/^ *//; s/ *$$//')"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED on:$$failed"; exit 1; fi

benchmark: setup
	@for backend in $(BACKENDS); do \
		KERAS_BACKEND=$$backend $(BIN)/python benchmarks/condconv.py || exit 1; \
		KERAS_BACKEND=$$backend $(BIN)/python benchmarks/zoo_speed.py --repeats 3 || exit 1; \
	done
	cd benchmarks && ../$(BIN)/python litert_speed.py && ../$(BIN)/python litert_int8_depthwise.py

# The formatter's check (CI runs it after the tests). `$(BIN)/ruff format .` fixes what it reports.
lint: setup
	$(BIN)/ruff format --check .
