# seedlock — `make train` and `make test` each work as the first command on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.seedlock-installed

# The local CPU build of torch; installed only when the venv has no torch at all, so a
# user's own (CUDA) torch is never replaced and pip never pulls a multi-GB CUDA wheel.
TORCH_LOCAL ?= torch==2.13.0

.PHONY: install train test test-all test-gpu bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_LOCAL)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Train the embedded CartPole with RSL-RL PPO on CPU (the default run config).
train: install
	$(VENV)/bin/seedlock-train $(ARGS)

## Fast tests (CI runs this).
test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Every test, the slow training runs included.
test-all: install
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

## CUDA determinism for every library (device=cuda); skipped cleanly without an NVIDIA GPU.
## Results, with the GPU's name and the date: bench/results/gpu_determinism.jsonl
test-gpu: install
	$(PY) -m pytest -q -m gpu -rs $(PYTEST_ARGS)

## Wall time and iterations to the episode cap for each library's default CartPole run.
bench: install
	$(PY) -m bench.time_to_cap $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
