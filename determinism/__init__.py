"""The one place that seeds RNGs and sets PyTorch determinism flags.

Every entry point calls :func:`apply` first, before anything touches CUDA or builds an env.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig

from determinism.fingerprint import (
    Fingerprint,
    FingerprintWriter,
    fingerprint_optimizer,
    fingerprint_parameters,
    read_fingerprints,
)
from determinism.manifest import (
    RunManifest,
    collect_devices,
    collect_versions,
    git_state,
    tracked_env_vars,
)
from determinism.physics import PhysicsLock, lock_isaaclab_physics
from determinism.seeding import ResolvedSeed, SeedError, env_seeds, make_generator, rank_seed, resolve_seed, seed_everything
from determinism.torch_flags import DeterminismError, lock_torch, reserve_cublas_workspace

__all__ = [
    "DeterminismError", "env_seeds", "Fingerprint", "FingerprintWriter", "ResolvedSeed", "RunManifest",
    "PhysicsLock", "SeedError", "apply", "lock_isaaclab_physics", "fingerprint_optimizer", "fingerprint_parameters", "make_generator",
    "rank_seed", "read_fingerprints", "reserve_cublas_workspace", "resolve_seed", "resolve_seed_of",
]

_applied: RunManifest | None = None


def apply(cfg: DictConfig | Any, rank: int = 0, resolved: ResolvedSeed | None = None) -> RunManifest:
    """Resolve the seed, set the environment, seed every RNG and lock PyTorch, in that order.

    The environment variables come before anything that could start CUDA; seeding comes after
    them so that nothing seeded is consumed by the locking itself. Rank ``rank`` of a distributed
    run seeds with seed + rank; ``resolved`` is the run's seed when rank 0 already resolved it (a
    random seed is drawn once for all ranks).
    """
    global _applied
    resolved = resolved or resolve_seed_of(cfg)
    process_seed = rank_seed(resolved.value, rank)
    flags = lock_torch(
        cfg.torch_deterministic,
        cublas_workspace_config=cfg.determinism.cublas_workspace_config,
        warn_only=cfg.determinism.warn_only,
        num_threads=cfg.determinism.num_threads,
        conv_weight_grad=cfg.determinism.conv_weight_grad,
        fill_uninitialized_memory=cfg.determinism.fill_uninitialized_memory,
    )
    seeded = seed_everything(process_seed)
    flag_values = dataclasses.asdict(flags)
    env_vars_set = flag_values.pop("env_vars_set")
    _applied = RunManifest(
        seed_requested=resolved.requested,
        seed=process_seed,
        seed_source=resolved.source,
        run_seed=resolved.value,
        torch_deterministic=bool(cfg.torch_deterministic),
        seeded_rngs=seeded,
        flags=flag_values,
        env_vars={**tracked_env_vars(), **env_vars_set},
        versions=collect_versions(),
        devices=collect_devices(),
        git=git_state(),
    )
    return _applied


def resolve_seed_of(cfg: DictConfig | Any) -> ResolvedSeed:
    """The run config's seed as the run uses it (a random one drawn now)."""
    return resolve_seed(cfg.seed, cfg.torch_deterministic, cfg.seeding.deterministic_default)


def applied() -> RunManifest | None:
    """The manifest of the last :func:`apply` in this process, or None if it has not run;
    env factories check it so that an env is never built before determinism is applied."""
    return _applied
