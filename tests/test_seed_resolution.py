"""The seed table: 42 by default, N for seed=N, random for -1/null, 42 for -1 with determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from determinism import SeedError, resolve_seed
from tests.support import compose_config


def test_config_default_seed_is_42() -> None:
    cfg = compose_config()
    resolved = resolve_seed(cfg.seed, cfg.torch_deterministic)
    assert (resolved.value, resolved.source) == (42, "config")


def test_seed_n_gives_n() -> None:
    cfg = compose_config("seed=7")
    assert resolve_seed(cfg.seed, cfg.torch_deterministic).value == 7


@pytest.mark.parametrize("override", ["seed=-1", "seed=null"])
def test_seed_minus_one_or_null_draws_a_random_seed(override: str) -> None:
    cfg = compose_config(override)
    draws = {resolve_seed(cfg.seed, False).value for _ in range(5)}
    assert len(draws) == 5
    assert all(0 <= seed < 2**31 for seed in draws)
    assert resolve_seed(cfg.seed, False).source == "random"


def test_random_seed_does_not_come_from_an_already_seeded_rng() -> None:
    draws = []
    for _ in range(2):
        random.seed(0), np.random.seed(0), torch.manual_seed(0)
        draws.append(resolve_seed(-1, False).value)
    assert draws[0] != draws[1]


@pytest.mark.parametrize("override", ["seed=-1", "seed=null"])
def test_seed_minus_one_with_torch_deterministic_gives_42(override: str) -> None:
    cfg = compose_config(override, "torch_deterministic=true")
    resolved = resolve_seed(cfg.seed, cfg.torch_deterministic)
    assert (resolved.value, resolved.source) == (42, "deterministic_default")


def test_explicit_seed_with_torch_deterministic_is_kept() -> None:
    assert resolve_seed(5, True).value == 5


def test_determinism_strict_implies_torch_deterministic() -> None:
    cfg = compose_config("determinism=strict", "seed=-1")
    assert cfg.torch_deterministic is True
    assert resolve_seed(cfg.seed, cfg.torch_deterministic).value == 42


@pytest.mark.parametrize("bad", [-2, 2**32, True])
def test_out_of_range_seed_is_rejected_with_the_valid_range(bad: int) -> None:
    with pytest.raises(SeedError, match=r"seed=.* is not a valid seed.*0 to 4294967295.*-1"):
        resolve_seed(bad, False)
