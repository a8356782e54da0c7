"""The typed schema of a run config (Hydra structured configs) and the checks types can't express.

Hydra merges the YAML groups in ``conf/`` onto these dataclasses, so an unknown key or a value
of the wrong type fails at composition time with the key's name; :func:`validate` then checks
ranges and choices, before anything runs.
"""

from __future__ import annotations

import importlib

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from omegaconf import MISSING, DictConfig

from determinism.conv import CONV_WEIGHT_GRADS
from determinism.physics import UNLOCKABLE_POLICIES


class ConfigError(ValueError):
    """A run-config value that is the right type but not a valid choice."""


@dataclass
class TaskConfig:
    name: str = MISSING
    backend: str = "embedded"
    num_envs: int = 4096
    env: Dict[str, Any] = field(default_factory=dict)  # the task's own parameters
    id: Optional[str] = None  # task=isaaclab: the Isaac Lab task id (gym registry)
    app: Dict[str, Any] = field(default_factory=dict)  # task=isaaclab: AppLauncher's keyword arguments
    physics: Optional[str] = None  # task=isaaclab, Isaac Lab 3.x: the physics preset (newton_mjwarp, ...)
    asset_root: Optional[str] = None  # task=isaaclab: ISAACSIM_ASSET_ROOT, set before Isaac Lab is imported
    env_kwargs: Dict[str, Any] = field(default_factory=dict)  # task=gym: gymnasium.make's keyword arguments


@dataclass
class TrainerConfig:
    name: str = MISSING
    checkpoint_interval: int = 50  # iterations between checkpoints; the last one is always saved
    fast_path: bool = False  # no host sync per env step from the library's bookkeeping (trainers/fast_path.py)
    library: Dict[str, Any] = field(default_factory=dict)  # library-wide options of this adapter


@dataclass
class SeedingConfig:
    name: str = "default"
    deterministic_default: int = 42  # the seed of seed=-1 when torch_deterministic=true


@dataclass
class DeterminismConfig:
    name: str = "default"
    cublas_workspace_config: str = ":4096:8"
    warn_only: bool = False  # true: non-deterministic ops warn instead of raising
    num_threads: Optional[int] = None  # pin torch's intra-op threads (null: leave as is)
    conv_weight_grad: str = "matmul"  # Conv2d's deterministic weight gradient on CUDA: matmul or cudnn
    fill_uninitialized_memory: bool = False  # torch's NaN fill of new tensors (determinism=strict: true)
    # torch_deterministic=true on physics with no deterministic mode here (MuJoCo Warp on a GPU):
    # warn (run unlocked, recorded as not_guaranteed) or refuse (determinism=strict). determinism/physics.py
    unlockable_physics: str = "warn"


@dataclass
class EmbeddedRendererConfig:
    """tasks.rasterizer.RenderSettings: what the embedded renderer leaves free or fixes."""

    supersampling: int = 2
    precision: str = "float32"
    channels_last: bool = False


@dataclass
class RendererConfig:
    name: str = "default"
    kit: Optional[str] = None  # the Isaac Sim experience file in kits/ (null: Isaac Lab's own)
    embedded: EmbeddedRendererConfig = field(default_factory=EmbeddedRendererConfig)


@dataclass
class FingerprintsConfig:
    # Keep each iteration's parameter tensors in run_dir/snapshots/, so that a divergence can be
    # measured; seedlock-verify turns it on.
    snapshots: bool = False
    # A digest of every env step's observations in each line, so that seedlock-verify can name the
    # rollout step where two runs' observations (the env, the physics) first differ.
    observations: bool = True
    # Every env step's and every module call's digest in run_dir/trace.jsonl, for seedlock-verify
    # --explain (determinism/trace.py); slow: for diagnosis.
    trace: bool = False


@dataclass
class TrainConfig:
    task: TaskConfig = MISSING
    trainer: TrainerConfig = MISSING
    agent: Dict[str, Any] = MISSING  # the library's own hyperparameters for this task
    seeding: SeedingConfig = MISSING
    determinism: DeterminismConfig = MISSING
    renderer: RendererConfig = MISSING
    fingerprints: FingerprintsConfig = field(default_factory=FingerprintsConfig)
    seed: Optional[int] = 42
    torch_deterministic: bool = False
    num_envs: int = "${task.num_envs}"  # type: ignore[assignment]
    max_iterations: int = "${agent.max_iterations}"  # type: ignore[assignment]
    device: str = "cpu"
    progress: str = "auto"  # the progress bar: auto (on an interactive terminal), true, false
    distributed: bool = False  # under torchrun: one run over its processes (rl_games, rsl_rl, skrl)
    checkpoint: Optional[str] = None  # a checkpoint file, or a run dir for its latest one
    experiment: str = "${task.name}_${trainer.name}"
    run_dir: str = "runs/${experiment}/${now:%Y-%m-%d_%H-%M-%S_%f}"


def register() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    register_launchers()


def register_launchers() -> None:
    """seedlock's Slurm launcher, with Hydra. Hydra finds plugins by scanning the directories of
    the ``hydra_plugins`` namespace; an editable install (``make install``) maps seedlock's package
    there from trainers/slurm_launcher/, which that scan does not see, so it is registered by its
    installed name, as the scan would (Hydra's ``Plugins.register``)."""
    try:
        launchers = importlib.import_module("hydra_plugins.seedlock_launchers.submitit_slurm")
    except ImportError:  # hydra-submitit-launcher not installed: hydra/launcher=submitit_* says so itself
        return
    Plugins.instance().register(launchers.SlurmLauncher)


def validate(cfg: DictConfig) -> None:
    """Range and choice checks, with the key, the bad value and what is allowed."""
    if cfg.num_envs < 1:
        raise ConfigError(f"num_envs={cfg.num_envs} is not valid: num_envs must be an integer >= 1.")
    if cfg.max_iterations < 1:
        raise ConfigError(
            f"max_iterations={cfg.max_iterations} is not valid: max_iterations must be an integer >= 1."
        )
    if cfg.trainer.checkpoint_interval < 1:
        raise ConfigError(
            f"trainer.checkpoint_interval={cfg.trainer.checkpoint_interval} is not valid: it must be >= 1."
        )
    if cfg.determinism.num_threads is not None and cfg.determinism.num_threads < 1:
        raise ConfigError(
            f"determinism.num_threads={cfg.determinism.num_threads} is not valid: give an integer >= 1, or null "
            "to leave torch's thread count as it is."
        )
    if str(cfg.progress).lower() not in ("auto", "true", "false"):
        raise ConfigError(f"progress={cfg.progress!r} is not valid: choose auto (a bar on an interactive terminal), true or false.")
    # Here, not at import: both modules raise this module's ConfigError.
    from trainers.agent_config import check_agent_config
    from trainers.device_check import check_device

    check_device(str(cfg.device))
    check_agent_config(str(cfg.trainer.name), cfg.agent)
    if cfg.determinism.unlockable_physics not in UNLOCKABLE_POLICIES:
        raise ConfigError(
            f"determinism.unlockable_physics={cfg.determinism.unlockable_physics!r} is not valid: choose warn "
            "(run physics that cannot be locked here unlocked, recorded as not_guaranteed) or refuse (stop first)."
        )
    if cfg.determinism.conv_weight_grad not in CONV_WEIGHT_GRADS:
        raise ConfigError(
            f"determinism.conv_weight_grad={cfg.determinism.conv_weight_grad!r} is not valid: choose "
            "matmul (a deterministic cuBLAS matmul, fast on large minibatches) or cudnn (cuDNN's own "
            "deterministic kernel)."
        )
