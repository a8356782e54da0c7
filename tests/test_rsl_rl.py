"""RSL-RL adapter: checkpoints load back into the policy, and a run continues from one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from determinism import read_fingerprints
from tests.support import SMALL, in_process_run, run_train
from trainers import rsl_rl
from trainers.interface import CheckpointError, TrainingRun


def _run(tmp_path: Path, *overrides: str) -> TrainingRun:
    return in_process_run(tmp_path, *SMALL, *overrides)


@pytest.mark.usefixtures("restore_torch_state")
def test_load_policy_acts_like_the_trained_actor(tmp_path: Path) -> None:
    run = _run(tmp_path)
    rsl_rl.train(run)
    policy = rsl_rl.load_policy(run, tmp_path / "checkpoints" / "model_2.pt")
    actor = torch.load(tmp_path / "checkpoints" / "model_2.pt", weights_only=True)["library"]["actor_state_dict"]
    obs = run.env.observations()
    with torch.no_grad():
        hidden = torch.nn.functional.elu(obs @ actor["mlp.0.weight"].T + actor["mlp.0.bias"])
        hidden = torch.nn.functional.elu(hidden @ actor["mlp.2.weight"].T + actor["mlp.2.bias"])
        expected = hidden @ actor["mlp.4.weight"].T + actor["mlp.4.bias"]
    assert torch.allclose(policy(obs), expected, atol=1e-6)


@pytest.mark.slow  # make test-all; make test proves continuing with test_resume's run of every library
def test_checkpoint_continues_the_run_to_max_iterations(tmp_path: Path) -> None:
    run_train(*SMALL, f"run_dir={tmp_path / 'first'}", "trainer.checkpoint_interval=1")
    checkpoint = tmp_path / "first" / "checkpoints" / "model_1.pt"
    run_train("num_envs=64", "max_iterations=5", f"run_dir={tmp_path / 'resumed'}", f"checkpoint={checkpoint}")
    assert [line["iteration"] for line in read_fingerprints(tmp_path / "resumed" / "fingerprints.jsonl")] == [2, 3, 4]


@pytest.mark.usefixtures("restore_torch_state")
def test_checkpoint_of_another_library_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"seedlock": {"task": "cartpole", "trainer": "sb3", "iteration": 0, "seed": 1}, "library": {}}, path)
    run = _run(tmp_path / "run", f"checkpoint={path}")
    with pytest.raises(CheckpointError, match=r"trainer=sb3.*this run is task=cartpole trainer=rsl_rl"):
        rsl_rl.train(run)
