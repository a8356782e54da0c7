"""``seedlock-train``: compose the run config, apply determinism, build the task, train.

The order is the contract: ``determinism.apply`` runs before the env exists and before anything
can initialise CUDA, identically for every library.
"""

from __future__ import annotations

import contextlib
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
from determinism.physics import torch_physics
from determinism.trace import Tracer
import tasks
import trainers
from trainers import distributed
from determinism import FingerprintWriter
from determinism.manifest import config_sha256
from trainers.agent_config import construction_error
from trainers.interface import CheckpointError, TrainingRun, TrainSummary, read_checkpoint_header, resolve_checkpoint
from trainers.distributed import Ranks
from trainers.hydra_errors import run_hydra_program
from trainers.progress import ProgressBar, progress_enabled
from trainers.run_config import ConfigError, register, validate
from trainers.run_dir import RunDirClaim, claim, disk_error, is_disk_error
from trainers.fast_path import FastPathError, check_fast_path
from trainers.sweep import in_sweep, job_run_dir, restart_count, run_sweep_job

register()

# Errors that are the user's input, reported as one paragraph without a traceback.
USER_ERRORS = (
    ConfigError,
    determinism.SeedError,
    determinism.DeterminismError,
    tasks.TaskConfigError,
    CheckpointError,
    FastPathError,
)
RUN_SUMMARY_FILE = "summary.json"  # written when training ends


def main() -> None:
    """``seedlock-train``: a bad override is one paragraph and exit 2, as every other bad input."""
    run_hydra_program("seedlock-train", hydra_main)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    if in_sweep():  # a failed job is recorded; the sweep goes on (trainers/sweep.py)
        run_sweep_job(run_training, cfg, USER_ERRORS)
        return
    try:
        run_training(cfg)
    except USER_ERRORS as error:
        print(f"seedlock-train: error: {error}", file=sys.stderr)
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
    """Claim the run dir (rank 0), run, and leave no half-written run dir behind: a run that
    fails before its first iteration is fingerprinted removes what it wrote."""
    claims: list[RunDirClaim] = []

    def claim_run_dir() -> Path:
        claims.append(claim(current_run_dir(cfg)))
        return claims[0].path

    # Every rank named a dir by its own clock: rank 0's is the run's, and only rank 0 claims it.
    run_dir = distributed.agree(ranks, claim_run_dir)
    run_claim = claims[0] if claims else None
    try:
        summary = train_in(run_dir, cfg, ranks)
    except BaseException as error:
        if run_claim is not None:
            run_claim.release(keep=training_started(run_dir))
        if isinstance(error, OSError) and is_disk_error(error):
            raise disk_error(run_dir, error, note=what_is_kept(run_dir)) from None
        raise
    if run_claim is not None:
        run_claim.release(keep=True)
    return summary


def training_started(run_dir: Path) -> bool:
    """A fingerprinted iteration (or more) is in the run dir: from then on it is kept, whatever
    ends the run, so that it can be continued with checkpoint=<run_dir>."""
    fingerprints = run_dir / "fingerprints.jsonl"
    return fingerprints.is_file() and fingerprints.stat().st_size > 0


def what_is_kept(run_dir: Path) -> str:
    if not training_started(run_dir):
        return ""
    try:
        latest = resolve_checkpoint(run_dir)
    except CheckpointError:
        return "The iterations fingerprinted so far are kept there; no checkpoint was complete."
    return (
        f"The run so far is kept there, and its latest complete checkpoint, {latest}, is intact: "
        f"free space, then continue with checkpoint={run_dir} and a new run_dir."
    )


def train_in(run_dir: Path, cfg: DictConfig, ranks: Ranks) -> TrainSummary:
    check_fast_path(cfg)  # refused before anything is built
    if cfg.checkpoint:
        continue_from_checkpoint(cfg)
    run_seed = distributed.agree(ranks, lambda: determinism.resolve_seed_of(cfg))
    manifest = determinism.apply(cfg, rank=ranks.rank, resolved=run_seed)  # before the env, before CUDA
    warn_unlocked_renderer(cfg)
    if manifest.seed_source == "random" and ranks.is_main:
        print(f"seedlock: seed={cfg.seed} drew seed {run_seed.value}; repeat this run with seed={run_seed.value}")
    if ranks.is_main:
        print_start(cfg, run_seed.value, run_dir)
    cfg.seed = run_seed.value  # config.yaml records the seed the run used
    cfg.run_dir = str(run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    manifest.config_sha256 = config_sha256({k: v for k, v in resolved.items() if k not in ("run_dir", "checkpoint")})
    manifest.run = run_info(run_dir, cfg)
    if ranks.is_distributed:
        seeds = [determinism.rank_seed(run_seed.value, rank) for rank in range(ranks.world_size)]
        manifest.distributed = {**ranks.record(), "seeds": seeds}
    # The env before the run dir's files: a task that cannot be built (bad task.env key, Isaac Lab
    # missing) leaves no half-made run behind.
    env = tasks.make_for_run(cfg, manifest.seed)
    env.observation_digests.enabled = bool(cfg.fingerprints.observations)
    manifest.renderer = rendering_applied(cfg, env)
    manifest.physics = getattr(env, "physics", None) or torch_physics(
        str(cfg.task.name), str(cfg.task.backend), str(cfg.device), bool(cfg.torch_deterministic)
    )
    files_dir = ranks.files_dir(run_dir)  # rank r > 0: run_dir/ranks/<r>
    files_dir.mkdir(parents=True, exist_ok=True)
    if ranks.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    manifest.write(files_dir / "manifest.json")
    adapter = trainers.adapter(cfg.trainer.name)
    start = time.perf_counter()
    show_bar = progress_enabled(str(cfg.progress), ranks.is_main and not in_sweep())
    tracer = Tracer(files_dir) if cfg.fingerprints.get("trace") else None
    env.observation_digests.tracer = tracer
    with (
        FingerprintWriter(files_dir, snapshots=cfg.fingerprints.snapshots) as fingerprints,
        ProgressBar("training", cfg.max_iterations, show_bar) as bar,
        tracer or contextlib.nullcontext(),
    ):
        try:
            summary = adapter.train(TrainingRun(env, cfg, run_dir, manifest.seed, fingerprints, ranks, bar))
        except (ValueError, TypeError) as error:
            # Raised before the first iteration, by the library building its agent from the
            # agent config: the user's input, said with the agent keys they set.
            overrides = agent_overrides()
            if isinstance(error, USER_ERRORS) or fingerprints.written or not overrides:
                raise
            raise construction_error(str(cfg.trainer.name), error, overrides) from None
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


def agent_overrides() -> list[str]:
    """The ``agent.`` overrides of the command line (``+agent.x=`` and ``agent.x=``)."""
    if not HydraConfig.initialized():
        return []
    return [item for item in HydraConfig.get().overrides.task if item.lstrip("+~").startswith("agent.")]


def print_start(cfg: DictConfig, seed: int, run_dir: Path) -> None:
    """What the run is, before anything slow: the task, library, envs, device, seed and run dir."""
    print(
        f"seedlock: training task={cfg.task.name} with trainer={cfg.trainer.name}: {cfg.num_envs} envs on "
        f"{cfg.device}, seed {seed}, {cfg.max_iterations} iterations, "
        f"torch_deterministic={str(bool(cfg.torch_deterministic)).lower()}"
    )
    print(f"seedlock: writing the run to {run_dir}")


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
    """A sweep job's own dir (Hydra's job subdir; a new one for each time Slurm requeues the job),
    else ``run_dir``: seedlock creates and claims it (trainers/run_dir.py), Hydra does not
    (``hydra.run.dir`` is the working dir)."""
    if in_sweep():
        return job_run_dir()
    return Path(cfg.run_dir)


def run_info(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    info: dict[str, Any] = {"run_dir": str(run_dir), "argv": sys.argv, "continued_from": cfg.checkpoint or None}
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        info["overrides"] = list(hydra_cfg.overrides.task)
        info["mode"] = str(hydra_cfg.mode)
        info["job_num"] = hydra_cfg.job.get("num")
        info["job_id"] = hydra_cfg.job.get("id")  # submitit: the Slurm (or local) job id
        info["sweep_dir"] = hydra_cfg.sweep.dir if str(hydra_cfg.mode) == "RunMode.MULTIRUN" else None
        if in_sweep():
            info["restart_count"] = restart_count()  # Slurm requeued the job this many times
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
