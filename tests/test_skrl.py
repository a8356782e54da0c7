"""SKRL adapter: seeding, time-outs, checkpoints and load_policy, and a run continued from one."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import pytest
import skrl
import torch

from determinism import FingerprintWriter, read_fingerprints
from tasks.cartpole import CartpoleConfig, CartpoleEnv
from tests.support import SMALL, compose_config, in_process_run, run_train
from trainers import skrl as adapter
from trainers.interface import TrainingRun

SKRL = ("trainer=skrl", *SMALL)


def _run(tmp_path: Path, *overrides: str) -> TrainingRun:
    return in_process_run(tmp_path, *SKRL, *overrides)


@pytest.mark.usefixtures("restore_torch_state")
def test_skrl_gets_the_run_seed_and_keeps_the_torch_flags(tmp_path: Path) -> None:
    run = _run(tmp_path, "seed=1234")
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    adapter.train(run)
    assert skrl.config.torch.key == 1234  # skrl's seed slot holds the run's seed, not its default 0
    # skrl's set_seed (never called) would have turned cudnn.benchmark on and deterministic off.
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == flags


@pytest.mark.slow  # make test-all; make test: test_reproducibility's drawn seed (rsl_rl)
def test_a_drawn_seed_repeats_the_run(tmp_path: Path) -> None:
    run_train(*SKRL, f"run_dir={tmp_path / 'drawn'}", "seed=-1")
    seed = json.loads((tmp_path / "drawn" / "manifest.json").read_text())["seed"]
    run_train(*SKRL, f"run_dir={tmp_path / 'repeat'}", f"seed={seed}")
    files = [tmp_path / name / "fingerprints.jsonl" for name in ("drawn", "repeat")]
    assert files[0].read_bytes() == files[1].read_bytes()


def test_models_are_built_without_unseeded_space_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """skrl's init_state_dict() would sample dummy inputs from gymnasium spaces seeded from OS
    entropy; the adapter passes fixed inputs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a gymnasium space was sampled")

    monkeypatch.setattr(gymnasium.spaces.Box, "sample", refuse)
    cfg = compose_config(*SKRL, f"run_dir={tmp_path}")
    run = TrainingRun(CartpoleEnv(64, seed=0), cfg, tmp_path, 0, FingerprintWriter(tmp_path))
    torch.manual_seed(0)
    first = adapter.build_agent(run).policy.state_dict()
    torch.manual_seed(0)
    second = adapter.build_agent(run).policy.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_time_outs_reach_skrl_as_truncations_and_bootstrap_from_the_last_observation(tmp_path: Path) -> None:
    cfg = compose_config(*SKRL, f"run_dir={tmp_path}", "agent.time_limit_bootstrap=true")
    env = CartpoleEnv(8, seed=0, config=CartpoleConfig(episode_length_s=2 / 60))  # 2-step episodes
    agent = adapter.build_agent(TrainingRun(env, cfg, tmp_path, 0, FingerprintWriter(tmp_path)))
    agent.init()
    agent.enable_training_mode(True)
    obs, _ = agent.env.reset()
    for step in range(2):
        with torch.no_grad():
            actions, _ = agent.act(obs, None, timestep=step, timesteps=2)
            next_obs, reward, terminated, truncated, info = agent.env.step(actions)
            agent.record_transition(
                observations=obs, states=None, actions=actions, rewards=reward.clone(),
                next_observations=next_obs, next_states=None, terminated=terminated, truncated=truncated,
                infos=info, timestep=step, timesteps=2,
            )
        obs = next_obs
    assert truncated.shape == terminated.shape == (8, 1)
    assert truncated.dtype == terminated.dtype == torch.bool
    assert truncated.all() and not terminated.any()
    final = info["final_observations"]
    assert not torch.equal(final, next_obs)  # next_obs is the next episode's first observation
    with torch.no_grad():
        inputs = {"observations": agent._observation_preprocessor(final), "states": None}
        value, _ = agent.value.act(inputs, role="value")
        value = agent._value_preprocessor(value, inverse=True)
    scale = cfg.agent.rewards_shaper_scale
    expected = reward * scale + cfg.agent.discount_factor * value
    assert torch.allclose(agent.memory.get_tensor_by_name("rewards")[1], expected)


@pytest.mark.usefixtures("restore_torch_state")
def test_checkpoint_loads_back_and_load_policy_acts_like_the_trained_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[adapter.SeedlockPPO] = []
    build_agent = adapter.build_agent
    monkeypatch.setattr(adapter, "build_agent", lambda run: built.append(build_agent(run)) or built[-1])
    run = _run(tmp_path)
    summary = adapter.train(run)
    assert summary.last_checkpoint == tmp_path / "checkpoints" / "model_2.pt"
    state = torch.load(summary.last_checkpoint, weights_only=True)["library"]
    assert {"policy", "optimizer", "observation_preprocessor", "value_preprocessor", "scheduler"} <= state.keys()
    last = read_fingerprints(tmp_path / "fingerprints.jsonl")[-1]
    assert any(name.startswith("observation_preprocessor.") for name in last["parameters"])

    trained = built[0]
    trained.enable_training_mode(False)
    obs = run.env.observations()
    with torch.no_grad():
        expected = trained.act(obs, None, timestep=0, timesteps=0)[1]["mean_actions"]
    policy = adapter.load_policy(run, summary.last_checkpoint)
    assert torch.equal(policy(obs), expected)
    assert torch.equal(policy(obs), policy(obs))  # the mean action, not a sample


@pytest.mark.slow  # make test-all; make test proves continuing with test_resume's run of every library
def test_checkpoint_continues_the_run_to_max_iterations(tmp_path: Path) -> None:
    first = run_train(*SKRL, f"run_dir={tmp_path / 'first'}", "trainer.checkpoint_interval=1")
    assert sorted(path.name for path in (tmp_path / "first" / "checkpoints").iterdir()) == [
        "model_0.pt", "model_1.pt", "model_2.pt",
    ]
    assert any((tmp_path / "first" / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = tmp_path / "first" / "checkpoints" / "model_1.pt"
    resumed = run_train(
        "trainer=skrl", "num_envs=64", "max_iterations=5", f"run_dir={tmp_path / 'resumed'}",
        f"checkpoint={checkpoint}",
    )
    lines = read_fingerprints(tmp_path / "resumed" / "fingerprints.jsonl")
    assert [line["iteration"] for line in lines] == [2, 3, 4]
    assert [line["env_steps"] for line in lines] == [(it + 1) * 32 * 64 for it in (2, 3, 4)]
    # No skrl warnings and no progress bar when the output is not a terminal.
    for result in (first, resumed):
        output = result.stdout + result.stderr
        assert "warn" not in output.lower() and "it/s" not in output
