"""The command line: help, printed config, and one-paragraph errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SMALL, TrainedRuns, run_train


def test_help_lists_the_groups_and_their_options() -> None:
    out = run_train("--help").stdout
    for line in ("task: cartpole", "trainer: rl_games, rsl_rl, sb3, skrl", "seeding: default", "determinism: default, strict",
                 "renderer: default, deterministic"):
        assert line in out


def test_cfg_job_prints_the_composed_config() -> None:
    out = run_train("--cfg", "job", "seed=7", "num_envs=256").stdout
    assert "seed: 7" in out and "num_envs: 256" in out and "class_name: PPO" in out


@pytest.mark.slow  # two more runs in a pseudo-terminal: make test-all
@pytest.mark.xdist_group("rsl_rl")
def test_the_progress_bar_shows_when_asked_and_stays_out_of_logs(trained_runs: TrainedRuns, tmp_path: Path) -> None:
    shown = run_train(*SMALL, "progress=true", f"run_dir={tmp_path / 'shown'}")
    assert "training" in shown.stderr and "3/3" in shown.stderr and "env-steps/s" in shown.stderr
    quiet = trained_runs.output(trained_runs.base("rsl_rl"))  # progress=auto; stderr is a pipe there
    assert "env-steps/s" not in quiet.stderr + quiet.stdout
