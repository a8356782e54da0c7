# seedlock — `make train` and `make test` each work as the first command on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.seedlock-installed

# The local CPU build of torch; installed only when the venv has no torch at all, so a
# user's own (CUDA) torch is never replaced and pip never pulls a multi-GB CUDA wheel.
TORCH_LOCAL ?= torch==2.13.0

.PHONY: install train test test-all test-gpu install-isaaclab test-isaaclab test-slurm bench bench-gpu bench-time-to-cap clean

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

# Isaac Lab 3.0 kitless (Newton physics, no Isaac Sim) in its own venv, beside the local torch:
# Isaac Lab pins torch 2.11 and Python >= 3.12, and its code runs on 3.11 with torch 2.13. Its
# requirements are installed except torch/torchvision and what the classic tasks never import.
VENV_IL      ?= .venv-isaaclab
PY_IL        := $(VENV_IL)/bin/python
STAMP_IL     := $(VENV_IL)/.seedlock-installed
ISAACLAB     ?= isaaclab==3.0.0
ISAACLAB_SKIP ?= torch torchvision transformers pin pin-pink open3d

$(STAMP_IL): pyproject.toml
	$(PYTHON) -m venv $(VENV_IL)
	$(PY_IL) -m pip install -q --upgrade pip
	$(PY_IL) -c "import torch" 2>/dev/null || $(PY_IL) -m pip install -q "$(TORCH_LOCAL)"
	$(PY_IL) -m pip install -q -e ".[test]"
	$(PY_IL) -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: -d $(VENV_IL)/wheels "$(ISAACLAB)"
	$(PY_IL) -m pip install -q --no-deps --ignore-requires-python $(VENV_IL)/wheels/isaaclab-*.whl
	$(PY_IL) -c "import importlib.metadata as m, re, sys; skip = set(sys.argv[1:]); \
	print('\n'.join(r for r in m.requires('isaaclab') if 'extra ==' not in r and re.split('[<>=!~;\\[ ]', r, maxsplit=1)[0].lower() not in skip))" \
	$(ISAACLAB_SKIP) > $(VENV_IL)/isaaclab-requirements.txt
	# gym: Isaac Lab's rl_games wrapper imports gym.spaces
	$(PY_IL) -m pip install -q -r $(VENV_IL)/isaaclab-requirements.txt gym
	touch $(STAMP_IL)

## Isaac Lab 3.0 kitless beside seedlock, in .venv-isaaclab (about 2.6 GB).
install-isaaclab: $(STAMP_IL)

## The real Isaac Lab 3.0 tasks on the CPU (tests marked isaaclab), in .venv-isaaclab.
test-isaaclab: install-isaaclab
	$(PY_IL) -m pytest -q $(XDIST) -m isaaclab -rs $(PYTEST_ARGS)

## CUDA determinism for every library (device=cuda); skipped cleanly without an NVIDIA GPU.
## Results, with the GPU's name and the date: bench/results/gpu_determinism.jsonl
test-gpu: install
	$(PY) -m pytest -q -m gpu -rs $(PYTEST_ARGS)

## A real single-node Slurm cluster on this machine (root: installs slurm-wlm, slurmdbd, munge and
## mariadb-server with apt when missing; tests/slurm/start-cluster.sh), the tests marked slurm
## against it, then the cluster stopped by the pids it started, also when a test fails.
SLURM_DIR ?= /tmp/seedlock-slurm
test-slurm: install
	SEEDLOCK_SLURM_DIR=$(SLURM_DIR) bash tests/slurm/start-cluster.sh
	SEEDLOCK_SLURM_DIR=$(SLURM_DIR) SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf SEEDLOCK_SLURM_REQUIRED=1 \
	  $(PY) -m pytest -q -m slurm -rs $(PYTEST_ARGS); status=$$?; \
	  SEEDLOCK_SLURM_DIR=$(SLURM_DIR) bash tests/slurm/stop-cluster.sh; exit $$status

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
