"""``seedlock-train``: compose the run config, apply determinism, build the task, train.

The order is the contract: ``determinism.apply`` runs before the env exists and before anything
can initialise CUDA, identically for every library.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import determinism
import tasks
import trainers
from trainers import distributed
from determinism import FingerprintWriter
from determinism.manifest import config_sha256
from trainers.interface import CheckpointError, TrainingRun, TrainSummary, read_checkpoint_header, resolve_checkpoint
from trainers.distributed import Ranks
from trainers.progress import ProgressBar, progress_enabled
from trainers.run_config import ConfigError, register, validate
from trainers.sweep import in_sweep, run_sweep_job

register()

# Errors that are the user's input, reported as one paragraph without a traceback.
USER_ERRORS = (
    ConfigError,
    determinism.SeedError,
    determinism.DeterminismError,
    tasks.TaskConfigError,
    CheckpointError,
)
RUN_ARTIFACTS = ("manifest.json", "fingerprints.jsonl", "config.yaml", "checkpoints")
RUN_SUMMARY_FILE = "summary.json"  # written when training ends


class RunDirError(ConfigError):
    """The run dir already holds a run."""


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    if in_sweep():  # a failed job is recorded; the sweep goes on (trainers/sweep.py)
        run_sweep_job(run_training, cfg, USER_ERRORS)
        return
    try:
        run_training(cfg)
    except USER_ERRORS as error:
        print(f"seedlock-train: error: {error}", file=sys.stderr)
        remove_if_empty(current_run_dir(cfg))  # Hydra made it before the job ran
        sys.exit(2)


def run_training(cfg: DictConfig) -> TrainSummary:
    """One run, end to end; ``cfg`` is a composed run config (from Hydra or its compose API).
    Under torchrun with ``distributed=true`` this is one rank of the run (trainers/distributed.py)."""
    validate(cfg)
    ranks = distributed.ranks_for(cfg)
    distributed.start(cfg, ranks)
    try:
        summary = run_rank(cfg, ranks)
    except BaseException:
        distributed.stop(ranks)
        raise
    distributed.stop(ranks, finished=True)
    return summary


def run_rank(cfg: DictConfig, ranks: Ranks) -> TrainSummary:
    hydra_dir = current_run_dir(cfg)
    # Every rank's Hydra named a dir by its own clock: rank 0's is the run's.
    run_dir = distributed.agree(ranks, lambda: checked_run_dir(hydra_dir))
    if run_dir != hydra_dir:
        remove_if_empty(hydra_dir)
    if cfg.checkpoint:
        continue_from_checkpoint(cfg)
    run_seed = distributed.agree(ranks, lambda: determinism.resolve_seed_of(cfg))
    manifest = determinism.apply(cfg, rank=ranks.rank, resolved=run_seed)  # before the env, before CUDA
    warn_unlocked_renderer(cfg)
    if manifest.seed_source == "random" and ranks.is_main:
        print(f"seedlock: seed={cfg.seed} drew seed {run_seed.value}; repeat this run with seed={run_seed.value}")
    cfg.seed = run_seed.value  # config.yaml records the seed the run used
    cfg.run_dir = str(run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    manifest.config_sha256 = config_sha256({k: v for k, v in resolved.items() if k not in ("run_dir", "checkpoint")})
    manifest.run = run_info(run_dir)
    if ranks.is_distributed:
        seeds = [determinism.rank_seed(run_seed.value, rank) for rank in range(ranks.world_size)]
        manifest.distributed = {**ranks.record(), "seeds": seeds}
    # The env before the run dir's files: a task that cannot be built (bad task.env key, Isaac Lab
    # missing) leaves no half-made run behind.
    env = tasks.make_for_run(cfg, manifest.seed)
    manifest.renderer = rendering_applied(cfg, env)
    files_dir = ranks.files_dir(run_dir)  # rank r > 0: run_dir/ranks/<r>
    files_dir.mkdir(parents=True, exist_ok=True)
    if ranks.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    manifest.write(files_dir / "manifest.json")
    adapter = trainers.adapter(cfg.trainer.name)
    start = time.perf_counter()
    show_bar = progress_enabled(str(cfg.progress), ranks.is_main and not in_sweep())
    with (
        FingerprintWriter(files_dir, snapshots=cfg.fingerprints.snapshots) as fingerprints,
        ProgressBar("training", cfg.max_iterations, show_bar) as bar,
    ):
        summary = adapter.train(TrainingRun(env, cfg, run_dir, manifest.seed, fingerprints, ranks, bar))
    seconds = time.perf_counter() - start
    if ranks.is_main:
        write_run_summary(run_dir, summary, seconds, fingerprints.written)
        print_summary(summary, seconds, run_dir)
        save_recording = getattr(env, "save_recording", None)
        if save_recording is not None and (gif := save_recording(run_dir)) is not None:
            print(f"seedlock: what the policy saw (env 0, last frames): {gif}")
    close = getattr(env, "close", None)
    if close is not None:
        close()  # last: closing Isaac Sim (task=isaaclab) can end the process
    return summary


def checked_run_dir(run_dir: Path) -> Path:
    refuse_existing_run(run_dir)
    return run_dir


def rendering_applied(cfg: DictConfig, env: Any) -> dict[str, Any]:
    """What the renderer group changed in this run: the embedded renderer's settings for a camera
    task, Isaac Sim's launch (the kit's path) for Isaac Lab, nothing for a state task (recorded as
    such, so a manifest never claims more)."""
    record: dict[str, Any] = {"name": str(cfg.renderer.name)}
    settings = getattr(env, "render_settings", None)
    launch_info = getattr(env, "launch_info", None)
    if settings is not None:
        record["embedded"] = dataclasses.asdict(settings)
    elif launch_info is not None:
        record["isaacsim"] = launch_info
        record["kit"] = launch_info.get("experience")
    else:
        record["applied"] = "nothing: this task draws no camera frames"
    return record


def warn_unlocked_renderer(cfg: DictConfig) -> None:
    """determinism=strict selects renderer=deterministic unless the command line named another
    renderer; say so when it did, since rendering then is not locked."""
    if cfg.determinism.name == "strict" and cfg.renderer.name != "deterministic":
        print(
            f"seedlock: warning: determinism=strict with renderer={cfg.renderer.name}: camera frames are "
            "rendered with that renderer's settings, not the deterministic ones.",
            file=sys.stderr,
        )


def continue_from_checkpoint(cfg: DictConfig) -> None:
    """``checkpoint=`` as the file to continue from (a run dir means its latest checkpoint). A run
    that asks for a random seed continues with the checkpointed run's seed, so the same command
    plus ``checkpoint=...`` restarts a pre-empted run as the same run."""
    path = resolve_checkpoint(cfg.checkpoint)
    header = read_checkpoint_header(path, str(cfg.task.name), str(cfg.trainer.name))
    cfg.checkpoint = str(path)
    print(f"seedlock: continuing from {path} (after iteration {header['iteration']})")
    if cfg.seed is None or cfg.seed == -1:
        requested = "null" if cfg.seed is None else "-1"
        cfg.seed = int(header["seed"])
        print(f"seedlock: seed={requested} continues the checkpointed run's seed {cfg.seed}")


def current_run_dir(cfg: DictConfig) -> Path:
    """Hydra's output dir for this job (a multirun job's own subdir), else the configured one."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.run_dir)


def remove_if_empty(run_dir: Path) -> None:
    try:
        run_dir.rmdir()  # only ever succeeds on an empty directory
    except OSError:
        pass


def refuse_existing_run(run_dir: Path) -> None:
    existing = [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]
    if existing:
        raise RunDirError(
            f"run_dir={str(run_dir)!r} already holds a run ({', '.join(existing)}); seedlock never "
            "overwrites a run. Choose another run_dir, leave run_dir unset for a fresh one, or "
            "continue that run with checkpoint=<run_dir>/checkpoints/model_<N>.pt and a new run_dir."
        )


def run_info(run_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"run_dir": str(run_dir), "argv": sys.argv}
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        info["overrides"] = list(hydra_cfg.overrides.task)
        info["mode"] = str(hydra_cfg.mode)
        info["job_num"] = hydra_cfg.job.get("num")
        info["job_id"] = hydra_cfg.job.get("id")  # submitit: the Slurm (or local) job id
        info["sweep_dir"] = hydra_cfg.sweep.dir if str(hydra_cfg.mode) == "RunMode.MULTIRUN" else None
    return info


def write_run_summary(run_dir: Path, summary: TrainSummary, seconds: float, iterations_trained: int) -> None:
    """``summary.json``: how the run ended and how long it took. Timing lives here, not in the
    fingerprints, which must be equal for equal runs; ``seedlock-report`` reads both."""
    steps_trained = summary.env_steps * iterations_trained // max(summary.iterations, 1)
    record = {
        "iterations": summary.iterations,
        "iterations_trained": iterations_trained,  # by this process; fewer when continuing a checkpoint
        "env_steps": summary.env_steps,
        "wall_seconds": round(seconds, 3),
        "env_steps_per_second": round(steps_trained / seconds, 1) if seconds > 0 else None,
        "mean_return": summary.mean_return,
        "mean_episode_length": summary.mean_episode_length,
        "max_episode_length": summary.max_episode_length,
        "last_checkpoint": str(summary.last_checkpoint) if summary.last_checkpoint else None,
    }
    (run_dir / RUN_SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n")


def print_summary(summary: TrainSummary, seconds: float, run_dir: Path) -> None:
    length = "n/a" if summary.mean_episode_length is None else f"{summary.mean_episode_length:.1f}"
    ret = "n/a" if summary.mean_return is None else f"{summary.mean_return:.2f}"
    balanced = summary.mean_episode_length is not None and summary.mean_episode_length >= summary.max_episode_length
    print(
        f"seedlock: trained {summary.iterations} iterations ({summary.env_steps:,} env steps) in {seconds:.1f} s; "
        f"mean episode length {length} / {summary.max_episode_length}"
        f"{' (at the cap)' if balanced else ''}, mean episode return {ret}"
    )
    print(f"seedlock: run dir: {run_dir}")


if __name__ == "__main__":
    main()
