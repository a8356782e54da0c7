"""What every adapter receives and returns, and the per-iteration bookkeeping they share.

An adapter module (``trainers/<library>.py``) exposes two functions:

``train(run: TrainingRun) -> TrainSummary``
    Train ``run.env`` with the library for ``run.max_iterations`` iterations in total, calling
    :func:`record_iteration` after every update and :func:`save_checkpoint` for checkpoints.
``load_policy(run: TrainingRun, checkpoint: Path) -> Policy``
    Rebuild the policy from a checkpoint and return a deterministic ``obs -> action`` function.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from determinism import Fingerprint, FingerprintWriter, fingerprint_optimizer, fingerprint_parameters
from tasks.cartpole import CartpoleEnv

Policy = Callable[[torch.Tensor], torch.Tensor]
CHECKPOINT_FORMAT = 1


@dataclass
class TrainingRun:
    """One run, with determinism already applied and the env already built."""

    env: CartpoleEnv
    cfg: DictConfig
    run_dir: Path
    seed: int
    fingerprints: FingerprintWriter

    @property
    def device(self) -> str:
        return str(self.cfg.device)

    @property
    def max_iterations(self) -> int:
        return int(self.cfg.max_iterations)

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard"


@dataclass
class TrainSummary:
    iterations: int
    env_steps: int
    mean_return: float | None
    mean_episode_length: float | None
    max_episode_length: int
    last_checkpoint: Path | None


def record_iteration(
    run: TrainingRun,
    iteration: int,
    env_steps: int,
    modules: Mapping[str, torch.nn.Module],
    optimizer_state: Mapping[str, Any],
    losses: Mapping[str, float],
) -> Fingerprint:
    """Fingerprint the state after one iteration's update and append it to fingerprints.jsonl."""
    parameters_sha256, per_tensor = fingerprint_parameters(modules)
    fingerprint = Fingerprint(
        iteration=iteration,
        env_steps=env_steps,
        parameters_sha256=parameters_sha256,
        optimizer_sha256=fingerprint_optimizer(optimizer_state),
        mean_return=run.env.statistics.mean_return(),
        mean_episode_length=run.env.statistics.mean_length(),
        losses={key: float(value) for key, value in losses.items()},
        parameters=per_tensor,
    )
    run.fingerprints.write(fingerprint)
    return fingerprint


def summarize(run: TrainingRun, iterations: int, env_steps: int, last_checkpoint: Path | None) -> TrainSummary:
    return TrainSummary(
        iterations=iterations,
        env_steps=env_steps,
        mean_return=run.env.statistics.mean_return(),
        mean_episode_length=run.env.statistics.mean_length(),
        max_episode_length=run.env.max_episode_length,
        last_checkpoint=last_checkpoint,
    )


def save_checkpoint(run: TrainingRun, iteration: int, library_state: dict[str, Any]) -> Path:
    """Write ``checkpoints/model_<iteration>.pt`` atomically: a temp file in the same directory,
    then a rename, so a crash mid-write leaves the previous checkpoint intact."""
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = run.checkpoint_dir / f"model_{iteration}.pt"
    payload = {
        "seedlock": {
            "format": CHECKPOINT_FORMAT,
            "task": str(run.cfg.task.name),
            "trainer": str(run.cfg.trainer.name),
            "iteration": iteration,
            "seed": run.seed,
        },
        "library": library_state,
    }
    handle, tmp_name = tempfile.mkstemp(dir=run.checkpoint_dir, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this run's task and library."""


def load_checkpoint(path: Path, run: TrainingRun) -> dict[str, Any]:
    """Load a seedlock checkpoint safely (weights only) and check it matches the run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint={str(path)!r} is not a file.")
    payload = torch.load(path, map_location=run.device, weights_only=True)
    meta = payload.get("seedlock") if isinstance(payload, dict) else None
    if not meta:
        raise CheckpointError(f"checkpoint={str(path)!r} was not written by seedlock (no 'seedlock' header).")
    expected = (str(run.cfg.task.name), str(run.cfg.trainer.name))
    if (meta["task"], meta["trainer"]) != expected:
        raise CheckpointError(
            f"checkpoint={str(path)!r} is from task={meta['task']} trainer={meta['trainer']}, "
            f"but this run is task={expected[0]} trainer={expected[1]}."
        )
    return payload
