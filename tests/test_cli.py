"""The command line: help, printed config, and one-paragraph errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SMALL, run_train


def test_help_lists_the_groups_and_their_options() -> None:
    out = run_train("--help").stdout
    for line in ("task: cartpole", "trainer: rl_games, rsl_rl, sb3, skrl", "seeding: default", "determinism: default, strict",
                 "renderer: default, deterministic"):
        assert line in out


def test_cfg_job_prints_the_composed_config() -> None:
    out = run_train("--cfg", "job", "seed=7", "num_envs=256").stdout
    assert "seed: 7" in out and "num_envs: 256" in out and "class_name: PPO" in out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed=abc", ["seed", "abc", "Integer"]),
        ("seed=-5", ["seed=-5", "0 to 4294967295", "-1 (or null)"]),
        ("num_envs=0", ["num_envs=0", ">= 1"]),
        ("max_iterations=0", ["max_iterations=0", ">= 1"]),
        ("device=tpu", ["device='tpu'", "cpu, cuda"]),
        ("trainer=nope", ["trainer/nope", "Available options in 'trainer'", "rsl_rl"]),
        ("task=nope", ["task/nope", "Available options in 'task'", "cartpole"]),
        ("task.env.mass=2", ["task.env.mass", "Key 'mass' is not in struct"]),
        ("+task.env.mass=2", ["'mass'", "valid keys", "action_scale"]),
        ("determinism.cublas_workspace_config=:1:1", ["cublas_workspace_config", ":4096:8"]),
        ("determinism.conv_weight_grad=fast", ["determinism.conv_weight_grad='fast'", "matmul", "cudnn"]),
    ],
)
def test_bad_input_fails_with_the_key_value_and_choices(tmp_path: Path, override: str, expected: list[str]) -> None:
    extra = ["torch_deterministic=true"] if "cublas" in override else []
    result = run_train("num_envs=4", "max_iterations=1", f"run_dir={tmp_path / 'run'}", *extra, override, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in message
    for fragment in expected:
        assert fragment in message
    assert not (tmp_path / "run" / "fingerprints.jsonl").exists()


def test_the_progress_bar_shows_when_asked_and_stays_out_of_logs(tmp_path: Path) -> None:
    shown = run_train(*SMALL, "progress=true", f"run_dir={tmp_path / 'shown'}")
    assert "training" in shown.stderr and "3/3" in shown.stderr and "env-steps/s" in shown.stderr
    quiet = run_train(*SMALL, f"run_dir={tmp_path / 'quiet'}")  # progress=auto; stderr is a pipe here
    assert "env-steps/s" not in quiet.stderr + quiet.stdout
    bad = run_train("progress=maybe", f"run_dir={tmp_path / 'bad'}", check=False)
    assert bad.returncode == 2 and "progress='maybe' is not valid" in bad.stderr
