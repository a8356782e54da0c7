"""Learning: the default config balances the embedded CartPole on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import run_train


@pytest.mark.slow
def test_default_config_balances_cartpole_to_the_episode_cap(tmp_path: Path) -> None:
    result = run_train(f"run_dir={tmp_path / 'run'}")
    last = read_fingerprints(tmp_path / "run" / "fingerprints.jsonl")[-1]
    assert last["iteration"] == 149
    assert last["mean_episode_length"] == 300.0
    assert "(at the cap)" in result.stdout
