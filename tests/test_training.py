"""Learning: each library's default config balances the embedded CartPole on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import TRAINERS, compose_config, run_train


@pytest.mark.slow
@pytest.mark.parametrize("trainer", TRAINERS)
def test_default_config_balances_cartpole_to_the_episode_cap(tmp_path: Path, trainer: str) -> None:
    result = run_train(f"trainer={trainer}", f"run_dir={tmp_path / 'run'}")
    fingerprints = read_fingerprints(tmp_path / "run" / "fingerprints.jsonl")
    assert fingerprints[-1]["iteration"] == compose_config(f"trainer={trainer}").max_iterations - 1
    assert fingerprints[-1]["mean_episode_length"] == 300.0
    assert "(at the cap)" in result.stdout
