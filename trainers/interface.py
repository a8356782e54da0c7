"""What every adapter receives and returns, and the per-iteration bookkeeping they share.

An adapter module (``trainers/<library>.py``) exposes two functions:

``train(run: TrainingRun) -> TrainSummary``
    Train ``run.env`` with the library for ``run.max_iterations`` iterations in total, calling
    :func:`record_iteration` after every update and :func:`save_checkpoint` for checkpoints.
``load_policy(run: TrainingRun, checkpoint: Path) -> Policy``
    Rebuild the policy from a checkpoint and return a deterministic ``obs -> action`` function.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from determinism import Fingerprint, FingerprintWriter, fingerprint_optimizer
from determinism.compare import flatten
from determinism.fingerprint import fingerprint_named, named_parameters
from determinism.rng_state import capture_rng_state, restore_rng_state
from tasks.task import Task
from trainers.distributed import SINGLE_PROCESS, Ranks
from trainers.progress import ProgressBar

Policy = Callable[[torch.Tensor], torch.Tensor]
CHECKPOINT_FORMAT = 2
CHECKPOINT_NAME = re.compile(r"model_(\d+)\.pt")
# Keys a continued run may change without becoming a different run.
RESUME_FREE_KEYS = ("run_dir", "checkpoint", "max_iterations", "experiment")


@dataclass
class TrainingRun:
    """One run, with determinism already applied and the env already built."""

    env: Task
    cfg: DictConfig
    run_dir: Path
    seed: int  # this process's seed (seed + rank in a distributed run)
    fingerprints: FingerprintWriter
    ranks: Ranks = SINGLE_PROCESS
    progress: ProgressBar | None = None  # the terminal's progress bar (trainers/progress.py)

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
    named = named_parameters(modules)
    parameters_sha256, per_tensor = fingerprint_named(named)
    fingerprint = Fingerprint(
        iteration=iteration,
        env_steps=env_steps,
        parameters_sha256=parameters_sha256,
        optimizer_sha256=fingerprint_optimizer(optimizer_state),
        mean_return=run.env.statistics.mean_return(),
        mean_episode_length=run.env.statistics.mean_length(),
        losses={key: float(value) for key, value in losses.items()},
        parameters=per_tensor,
        observations=run.env.observation_digests.drain(),
    )
    run.fingerprints.write(fingerprint, named)
    tracer = run.env.observation_digests.tracer
    if tracer is not None:
        tracer.learn_names(modules)
        tracer.flush(iteration)
    if run.progress is not None:
        run.progress.update(iteration + 1, env_steps, fingerprint.mean_return)
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


def checkpoint_due(run: TrainingRun, iteration: int) -> bool:
    """Every ``trainer.checkpoint_interval`` iterations from iteration 0, and the run's last one."""
    return iteration % int(run.cfg.trainer.checkpoint_interval) == 0 or iteration == run.max_iterations - 1


def save_checkpoint(run: TrainingRun, iteration: int, library_state: dict[str, Any]) -> Path | None:
    """Write ``checkpoints/model_<iteration>.pt`` atomically: a temp file in the same directory,
    then a rename, so a crash mid-write leaves the previous checkpoint intact.

    Besides the library's state it holds what a continued run needs to be the same run: every
    global RNG state, the task's state (physics, counters, its generator, episode statistics),
    the iteration and the resolved run config. Call it right after the iteration's update, with
    nothing drawn from an RNG since.
    """
    if not run.ranks.is_main:
        return None  # a distributed run's checkpoints are rank 0's
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = run.checkpoint_dir / f"model_{iteration}.pt"
    payload = {
        "seedlock": {
            "format": CHECKPOINT_FORMAT,
            "task": str(run.cfg.task.name),
            "trainer": str(run.cfg.trainer.name),
            "iteration": iteration,
            "seed": run.seed,
            "config": json.dumps(OmegaConf.to_container(run.cfg, resolve=True), sort_keys=True),
        },
        "library": library_state,
        "rng": capture_rng_state(),
        "task": run.env.state_dict(),
    }
    # Serialised in memory first: torch.save into a file that hits a full disk fails with a bare
    # RuntimeError from its zip writer, a plain write with OSError(ENOSPC), which names the cause.
    serialised = io.BytesIO()
    torch.save(payload, serialised)
    handle, tmp_name = tempfile.mkstemp(dir=run.checkpoint_dir, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(serialised.getbuffer())
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(run.checkpoint_dir)  # the rename itself survives a power cut
    return path


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this run's task and library, or cannot be read."""


def resolve_checkpoint(path: str | Path) -> Path:
    """``checkpoint=`` as a file, or a run dir / its ``checkpoints/`` dir for its latest checkpoint."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = {int(m.group(1)): p for p in directory.iterdir() if (m := CHECKPOINT_NAME.fullmatch(p.name))}
        if found:
            return found[max(found)]
        raise CheckpointError(f"checkpoint={str(path)!r} is a directory with no model_<N>.pt checkpoints in it.")
    raise CheckpointError(
        f"checkpoint={str(path)!r} does not exist; give a checkpoints/model_<N>.pt file or a run dir "
        "(its latest checkpoint is used)."
    )


def load_checkpoint(path: Path, run: TrainingRun) -> dict[str, Any]:
    """Load a seedlock checkpoint safely (weights only) and check it matches the run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint={str(path)!r} is not a file.")
    payload = _load(path)
    _check_header(path, payload, str(run.cfg.task.name), str(run.cfg.trainer.name))
    return payload


def read_checkpoint_header(path: Path, task: str, trainer: str) -> dict[str, Any]:
    """The checkpoint's ``seedlock`` header, read on the CPU before the run starts (and before
    anything starts CUDA), so an unusable checkpoint fails before a run dir is written."""
    payload = _load(path)
    return _check_header(path, payload, task, trainer)


def _load(path: Path) -> Any:
    # On the CPU: the RNG and generator states must stay there; the libraries' load_state_dict
    # copies weights onto the device of the models they were built on.
    if not zipfile.is_zipfile(path):  # torch.save's format; torch.load's own error would blame weights_only
        kind = "is empty" if path.stat().st_size == 0 else "is not a PyTorch checkpoint (torch.save's zip format)"
        raise CheckpointError(
            f"checkpoint={str(path)!r} {kind}; give a checkpoints/model_<N>.pt that seedlock-train wrote, or its "
            "run dir (its latest checkpoint is used)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # a torch file holding more than tensors and plain data
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(
            f"checkpoint={str(path)!r} holds objects other than tensors and plain data, which seedlock does not "
            f"load (weights_only=True, so a checkpoint cannot run code): {reason}. Give a checkpoints/model_<N>.pt "
            "that seedlock-train wrote, or its run dir."
        ) from None
    except Exception as error:  # a damaged or truncated zip
        raise CheckpointError(
            f"checkpoint={str(path)!r} is damaged or truncated ({type(error).__name__}); give a "
            "checkpoints/model_<N>.pt that seedlock-train wrote, or its run dir (its latest checkpoint is used)."
        ) from None


def _check_header(path: Path, payload: Any, task: str, trainer: str) -> dict[str, Any]:
    meta = payload.get("seedlock") if isinstance(payload, dict) else None
    if not meta:
        raise CheckpointError(f"checkpoint={str(path)!r} was not written by seedlock (no 'seedlock' header).")
    if not isinstance(meta, dict) or not {"task", "trainer", "iteration", "seed"} <= set(meta):
        raise CheckpointError(f"checkpoint={str(path)!r} has an incomplete 'seedlock' header; it was not written by seedlock-train.")
    if (meta["task"], meta["trainer"]) != (task, trainer):
        raise CheckpointError(
            f"checkpoint={str(path)!r} is from task={meta['task']} trainer={meta['trainer']}, "
            f"but this run is task={task} trainer={trainer}."
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint={str(path)!r} has checkpoint format {meta.get('format')}, this seedlock reads "
            f"format {CHECKPOINT_FORMAT}."
        )
    return meta


def config_changes(payload: dict[str, Any], run: TrainingRun) -> list[str]:
    """The run-config keys (dotted) whose values differ from the checkpointed run's, other than
    those a continued run may change (run_dir, checkpoint, max_iterations, experiment)."""
    saved = flatten(json.loads(payload["seedlock"]["config"]))
    current = flatten(OmegaConf.to_container(run.cfg, resolve=True))
    keys = sorted(set(saved) | set(current))
    return [
        f"{key}: {saved.get(key, '<unset>')!r} -> {current.get(key, '<unset>')!r}"
        for key in keys
        if key.split(".")[0] not in RESUME_FREE_KEYS and saved.get(key) != current.get(key)
    ]


def restore_run_state(run: TrainingRun, payload: dict[str, Any]) -> None:
    """Put the task and every global RNG back where the checkpointed run had them.

    Call it last, after the library has built and loaded everything (building draws weights from
    the RNGs), right before training continues: from here on the run draws exactly what the
    uninterrupted run drew after that checkpoint.
    """
    changes = config_changes(payload, run)
    if changes:
        print(
            "seedlock: note: this run continues a checkpoint whose run config differs in "
            f"{'; '.join(changes)}. It will not be the same run as the uninterrupted one."
        )
    try:
        run.env.load_state_dict(payload["task"])
        restore_rng_state(payload["rng"])
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"checkpoint cannot continue this run: {error}") from None
