"""Test helpers: real ``seedlock-train`` subprocesses and composed run configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import determinism
import tasks
from determinism import FingerprintWriter
from trainers.interface import TrainingRun
from trainers.run_config import register

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# Every library with a conf/trainer/<name>.yaml; end-to-end tests run for each.
TRAINERS = sorted(path.stem for path in (CONF_DIR / "trainer").glob("*.yaml"))
# The same, each in its own pytest-xdist group: a library's tests share one worker, and so the
# session's runs of that library (tests/conftest.py: trained_runs) are trained once.
TRAINER_PARAMS = [pytest.param(trainer, marks=pytest.mark.xdist_group(trainer)) for trainer in TRAINERS]


def _command(script: str, module: str) -> list[str]:
    """The console script beside this Python, or ``python -m`` where the project is on the path
    without being installed (the GPU machine)."""
    path = Path(sys.executable).with_name(script)
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


SEEDLOCK_TRAIN = _command("seedlock-train", "trainers.train")
SEEDLOCK_VERIFY = _command("seedlock-verify", "trainers.verify")
SEEDLOCK_REPORT = _command("seedlock-report", "trainers.report")
SEEDLOCK_PLAY = _command("seedlock-play", "trainers.play")
SEEDLOCK_EXPORT = _command("seedlock-export", "trainers.export")
# Small enough for a few seconds a run, big enough that PPO updates do real work.
SMALL = ("num_envs=64", "max_iterations=3")


def run_train(
    *overrides: str, check: bool = True, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``seedlock-train`` in its own process, as a user would; killed after ``timeout`` seconds."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [*SEEDLOCK_TRAIN, *overrides], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(f"seedlock-train {' '.join(overrides)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def run_torchrun(
    *overrides: str, processes: int = 2, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node=<processes> seedlock-train ...`` (torchrun picks a
    free port), as a user starts a distributed run; fails the test if any rank fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "--no-python", *SEEDLOCK_TRAIN, *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"torchrun seedlock-train {' '.join(overrides)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def run_play(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``seedlock-play`` in its own process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SEEDLOCK_PLAY, *args], capture_output=True, text=True, env=env, timeout=timeout)


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``seedlock-verify`` in its own process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SEEDLOCK_VERIFY, *args], capture_output=True, text=True, env=env, timeout=1800)


def compose_config(*overrides: str) -> DictConfig:
    """The run config Hydra would compose for these overrides, without launching a job."""
    register()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def in_process_run(run_dir: Path, *overrides: str, fingerprints: FingerprintWriter | None = None) -> TrainingRun:
    """A run as ``seedlock-train`` builds it, in this process: the composed config, determinism
    applied first, then the task. Tests that use it restore torch's state (``restore_torch_state``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = compose_config(*overrides, f"run_dir={run_dir}")
    manifest = determinism.apply(cfg)
    cfg.seed = manifest.seed
    env = tasks.make_for_run(cfg, manifest.seed)
    return TrainingRun(env, cfg, run_dir, manifest.seed, fingerprints or FingerprintWriter(run_dir))


# The session's shared run of each library: five iterations, checkpoints after 0, 2 and 4. One CPU
# thread keeps SB3's many small minibatch steps quick; every run compared with it uses it too.
BASE_RUN = ("num_envs=64", "max_iterations=5", "trainer.checkpoint_interval=2", "determinism.num_threads=1", "seed=3")


class TrainedRuns:
    """Runs trained once per test session (per xdist worker) and read by many tests: the base
    run of each library, its repeat, and whatever else tests ask for by name. Tests only read
    them; a test that writes copies first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}

    def get(self, name: str, *overrides: str) -> Path:
        run_dir = self.root / name
        if name not in self.results:
            self.results[name] = run_train(*overrides, f"run_dir={run_dir}")
        return run_dir

    def base(self, trainer: str, name: str = "base", *extra: str) -> Path:
        """``trainer``'s run of ``BASE_RUN`` (``name`` another process of it, ``extra`` changes)."""
        return self.get(f"{trainer}-{name}", f"trainer={trainer}", *BASE_RUN, *extra)

    def output(self, run_dir: Path) -> subprocess.CompletedProcess[str]:
        return self.results[run_dir.name]
