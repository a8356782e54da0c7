"""Seed resolution and seeding of every RNG a run draws from.

The seed table is the one IsaacGymEnvs users know: configs default to 42, ``seed=N`` gives N,
``seed=-1`` (or null) draws a fresh seed from OS entropy, and ``seed=-1`` together with
``torch_deterministic=true`` gives 42, because a run that asks for determinism must be repeatable
from its config alone.
"""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

RANDOM_SEED_SENTINEL = -1
# numpy's legacy seeding takes [0, 2**32); random draws stay below 2**31 so that
# per-rank offsets (seed + rank) still fit.
MAX_SEED = 2**32 - 1
RANDOM_SEED_UPPER = 2**31

SeedSource = Literal["config", "random", "deterministic_default"]


class SeedError(ValueError):
    """A seed value that no RNG can take."""


@dataclass(frozen=True)
class ResolvedSeed:
    """The seed a run uses, and where it came from (recorded in the manifest)."""

    requested: int | None
    value: int
    source: SeedSource


def resolve_seed(
    seed: int | None, torch_deterministic: bool, deterministic_default: int = 42
) -> ResolvedSeed:
    """Turn the configured ``seed`` into the one the run uses."""
    if seed is None or seed == RANDOM_SEED_SENTINEL:
        if torch_deterministic:
            return ResolvedSeed(seed, deterministic_default, "deterministic_default")
        # OS entropy, not an RNG that an earlier seed call may already have fixed.
        return ResolvedSeed(seed, secrets.randbelow(RANDOM_SEED_UPPER), "random")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SeedError(
            f"seed={seed!r} is not a valid seed: seed must be an integer from 0 to {MAX_SEED}, "
            "or -1 (or null) to draw a random seed that is printed and recorded in manifest.json."
        )
    return ResolvedSeed(seed, seed, "config")


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank`` of a distributed run seeds with seed + rank (IsaacGymEnvs' and Isaac Lab's
    rule), so that ranks draw different envs and actions from one run seed."""
    if seed + rank > MAX_SEED:
        raise SeedError(
            f"seed={seed} with rank {rank}: seed + rank = {seed + rank} exceeds {MAX_SEED}, the largest seed "
            f"numpy takes; choose a seed of at most {MAX_SEED - rank}."
        )
    return seed + rank


def seed_everything(seed: int) -> list[str]:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device).

    Returns the names of the RNGs that were seeded, for the manifest. NVIDIA warp is not among
    them: it has no global RNG (its kernels take explicit seeds, and ``warp.rand_init(seed)``
    called from Python only returns a state), so there is nothing of warp's to seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    # manual_seed also seeds every CUDA device, lazily, so it does not initialise CUDA here.
    torch.manual_seed(seed)
    seeded = ["python", "numpy", "torch_cpu", "torch_cuda_all"]
    # Only child processes (launcher workers, torchrun ranks) see this: hash randomisation of
    # the running interpreter was fixed when it started.
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seeded


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """One seed per sub-env of a vectorised gymnasium task, drawn from numpy's SeedSequence of the
    run seed: independent streams, unlike seed + i, with which seed 1's env 1 would replay seed 2's
    env 0."""
    return [int(value) for value in np.random.SeedSequence(seed).generate_state(num_envs, dtype=np.uint32)]


def make_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """A private generator for one component (an env), so its draws do not depend on the
    order in which other code consumes the global torch RNG."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
