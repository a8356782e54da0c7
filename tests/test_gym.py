"""task=gym: gymnasium ids as seedlock tasks, seeded from the run seed, trained by every library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import determinism
import tasks
from tests.support import TRAINERS, compose_config, run_play, run_train
from tasks.gym_task import GymTaskError

# RL Baselines3 Zoo's benchmark.md: PPO on Pendulum-v1 with its tuned hyperparameters, 1e5 steps,
# deterministic evaluation over 750 episodes.
RL_ZOO_PPO_PENDULUM = -172.225
PENDULUM = ("task=gym", "task.id=Pendulum-v1", "num_envs=4", "max_iterations=2")


# SB3 (the RL Zoo's recipe) in make test; the other three libraries in make test-all.
@pytest.mark.parametrize("trainer", [t if t == "sb3" else pytest.param(t, marks=pytest.mark.slow) for t in TRAINERS])
def test_pendulum_fingerprints_reproduce_in_two_processes(tmp_path: Path, trainer: str) -> None:
    for name in ("a", "b"):
        run_train(f"trainer={trainer}", *PENDULUM, "seed=3", f"run_dir={tmp_path / name}")
    a, b = ((tmp_path / name / "fingerprints.jsonl").read_bytes() for name in ("a", "b"))
    assert a == b and a.count(b"\n") == 2
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and "mujoco" in manifest["versions"]


@pytest.mark.slow  # make test-all: MuJoCo Ant for every library
@pytest.mark.parametrize("trainer", TRAINERS)
def test_ant_trains_a_few_iterations_with_its_tuned_config(tmp_path: Path, trainer: str) -> None:
    pytest.importorskip("mujoco")
    short = ("agent.n_steps=64", "agent.batch_size=64") if trainer == "sb3" else ()
    run_train(f"trainer={trainer}", "task=gym/Ant-v5", "max_iterations=3", *short, f"run_dir={tmp_path}")
    lines = [json.loads(line) for line in (tmp_path / "fingerprints.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 1, 2]
    assert len({line["parameters_sha256"] for line in lines}) == 3  # every update changed the policy
    assert all(np.isfinite(value) for line in lines for value in line["losses"].values())
    assert "task: Ant-v5" not in (tmp_path / "config.yaml").read_text()  # the task is named by its id
    assert "id: Ant-v5" in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_the_tuned_pendulum_configs_are_the_rl_zoo_recipe(trainer: str) -> None:
    cfg = compose_config("task=gym/Pendulum-v1", f"trainer={trainer}")
    assert (cfg.task.id, cfg.num_envs, cfg.max_iterations) == ("Pendulum-v1", 4, 25)
    gamma = {"sb3": "gamma", "rsl_rl": "algorithm.gamma", "skrl": "discount_factor", "rl_games": "config.gamma"}
    rollout = {"sb3": "n_steps", "rsl_rl": "num_steps_per_env", "skrl": "rollouts", "rl_games": "config.horizon_length"}
    assert OmegaConf.select(cfg.agent, gamma[trainer]) == 0.9
    assert OmegaConf.select(cfg.agent, rollout[trainer]) == 1024


@pytest.mark.usefixtures("restore_torch_state")
def test_sub_envs_get_independent_seeds_from_the_run_seed_and_report_final_observations() -> None:
    cfg = compose_config(*PENDULUM, "seed=5")
    determinism.apply(cfg)
    env = tasks.make_for_run(cfg, 5)
    assert env.env_seeds == determinism.env_seeds(5, 4) and len(set(env.env_seeds)) == 4
    assert set(determinism.env_seeds(5, 4)).isdisjoint(determinism.env_seeds(6, 4))
    first = env.observations().clone()
    again = tasks.make_for_run(cfg, 5)
    assert torch.equal(again.observations(), first)  # the same seed, the same start
    for step in range(200):  # Pendulum-v1 truncates at 200 steps
        result = env.step(torch.full((4, 1), 5.0))  # clipped to the action space's [-2, 2]
    assert result.truncated.all() and not result.terminated.any()
    assert not torch.equal(result.final_obs, result.obs)  # last observation kept apart from the reset one
    assert env.statistics.mean_length() == 200.0 and torch.equal(env.episode_length, torch.zeros(4, dtype=torch.long))
    env.close()
    again.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("task.id=CartPole-v1",), "has a Discrete action space"),
        (("task.id=NoSuchEnv-v0",), "cannot be made by gymnasium"),
        (("task.id=null",), "task=gym needs task.id"),
        (("task.id=Pendulum-v1", "+task.env_kwargs.no_such_arg=1"), "task.env_kwargs is not valid"),
    ],
)
@pytest.mark.usefixtures("restore_torch_state")
def test_bad_gym_input_is_one_paragraph_naming_the_key(overrides: tuple[str, ...], message: str) -> None:
    cfg = compose_config("task=gym", "num_envs=2", *overrides)
    determinism.apply(cfg)
    with pytest.raises(GymTaskError, match=message):
        tasks.make_for_run(cfg, 0)


@pytest.mark.slow
def test_sb3_on_pendulum_with_the_zoos_hyperparameters_is_within_10_percent_of_the_zoo(tmp_path: Path) -> None:
    """Documented run (README): seed 42 gave -185.0 ± 108.0 over 750 episodes (the zoo: -172.2 ± 104.2)."""
    run_train("task=gym/Pendulum-v1", "trainer=sb3", "seed=42", f"run_dir={tmp_path / 'run'}", timeout=3600)
    played = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=750", f"out={tmp_path / 'eval.json'}", timeout=1800)
    assert played.returncode == 0, played.stderr
    mean = json.loads((tmp_path / "eval.json").read_text())["mean_return"]
    assert mean >= RL_ZOO_PPO_PENDULUM * 1.10, mean  # returns are negative: 10% worse is -189.4
