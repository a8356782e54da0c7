# seedlock — `make train` and `make test` each work as the first command on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.seedlock-installed

# The local CPU build of torch; installed only when the venv has no torch at all, so a
# user's own (CUDA) torch is never replaced and pip never pulls a multi-GB CUDA wheel.
TORCH_LOCAL ?= torch==2.13.0

.PHONY: install train test test-all test-gpu bench bench-gpu bench-time-to-cap clean

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

# Two pytest-xdist workers (one per core here); a library's tests share a worker (--dist loadgroup),
# so the runs they read (tests/conftest.py: trained_runs) are trained once.
XDIST ?= -n 2 --dist loadgroup

## Fast tests (CI runs this): every feature's contract at small sizes, about 4 minutes on 2 cores.
test: install
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

## Every test: also full-length training, every library for each launcher, gym task and torchrun.
test-all: install
	$(PY) -m pytest -q $(XDIST) -m "slow or not slow" $(PYTEST_ARGS)

## CUDA determinism for every library (device=cuda); skipped cleanly without an NVIDIA GPU.
## Results, with the GPU's name and the date: bench/results/gpu_determinism.jsonl
test-gpu: install
	$(PY) -m pytest -q -m gpu -rs $(PYTEST_ARGS)

## CPU: env alone (cartpole, cartpole_rgb at 1/256/4096 envs), then training throughput of each
## library through seedlock vs a hand-written script (overhead) and with torch_deterministic=true
## (determinism tax). Results: bench/results/{env,train}_throughput_cpu.{json,md}. About 15 min on 2 cores.
bench: install
	$(PY) -m bench.env_throughput
	$(PY) -m bench.train_throughput $(ARGS)

## The same on an NVIDIA GPU (16384 envs too; the camera task's determinism tax as well).
## Results: bench/results/{env,train}_throughput_cuda.{json,md}
bench-gpu: install
	$(PY) -m bench.env_throughput --device cuda
	$(PY) -m bench.train_throughput --device cuda --tasks cartpole cartpole_rgb $(ARGS)
	$(PY) -m bench.conv_wgrad --device cuda

## Wall time and iterations to the episode cap for each library's default CartPole run.
bench-time-to-cap: install
	$(PY) -m bench.time_to_cap $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
