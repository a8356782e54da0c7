"""rl_games adapter: the run's seed reaches rl_games, rl_games leaves determinism alone, time-outs
are bootstrapped, and checkpoints load back into the policy and continue a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from determinism import read_fingerprints
from tests.support import SMALL, in_process_run, run_train
from trainers import rl_games
from trainers.interface import TrainingRun
from trainers.run_config import ConfigError


def _run(tmp_path: Path, *overrides: str) -> TrainingRun:
    return in_process_run(tmp_path, "trainer=rl_games", *SMALL, *overrides)


def _agent(run: TrainingRun, resume: dict | None = None) -> tuple[rl_games.SeedlockRunner, rl_games.SeedlockA2CAgent]:
    """The agent rl_games' Runner would train, without training it."""
    runner = rl_games.SeedlockRunner(run, resume)
    runner.load({"params": rl_games.rl_games_params(run)})
    agent = runner.algo_factory.create("a2c_continuous", base_name="run", params=runner.params)
    return runner, agent


def test_rl_games_is_given_the_resolved_seed_not_time(tmp_path: Path) -> None:
    # Without params["seed"], rl_games' Runner seeds every RNG from int(time.time()).
    result = run_train("trainer=rl_games", *SMALL, f"run_dir={tmp_path}", "seed=-1", "max_iterations=1")
    seed = json.loads((tmp_path / "manifest.json").read_text())["seed"]
    assert f"drew seed {seed}" in result.stdout
    assert f"self.seed = {seed}\n" in result.stdout  # what rl_games' Runner.load_config seeded with


@pytest.mark.usefixtures("restore_torch_state")
def test_agent_config_cannot_set_the_seed(tmp_path: Path) -> None:
    run = _run(tmp_path, "+agent.seed=5")
    with pytest.raises(ConfigError, match=r"agent.seed is set by seedlock.*seed="):
        rl_games.rl_games_params(run)


@pytest.mark.usefixtures("restore_torch_state")
def test_runner_leaves_determinism_flags_and_thread_count_alone(tmp_path: Path) -> None:
    # rl_games' own Runner() turns TF32 and cudnn.benchmark on and sets min(4, cpus) threads.
    run = _run(tmp_path, "determinism=strict", "max_iterations=1")
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark,
              torch.backends.mkldnn.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled())
    rl_games.train(run)
    after = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark,
             torch.backends.mkldnn.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled())
    assert after == before == ("highest", False, before[2], True)
    assert torch.get_num_threads() == 1


@pytest.mark.usefixtures("restore_torch_state")
def test_time_outs_reach_rl_games_and_are_bootstrapped(tmp_path: Path) -> None:
    run = _run(tmp_path, "+task.env.episode_length_s=0.1")  # 6-step episodes, inside one horizon
    runner, agent = _agent(run)
    seen = []
    step = runner.vec_env.step

    def spy(actions: torch.Tensor):
        obs, reward, dones, infos = step(actions)
        seen.append((reward.clone(), dones.clone(), infos["time_outs"].clone()))
        return obs, reward, dones, infos

    runner.vec_env.step = spy
    agent.init_tensors()
    agent.obs = agent.env_reset()
    with torch.no_grad():
        agent.play_steps()
    buffer = agent.experience_buffer.tensor_dict
    time_outs = torch.stack([t for _, _, t in seen])
    assert time_outs[5].any() and not time_outs[:5].any()
    assert torch.equal(torch.stack([d for _, d, _ in seen]).bool() & time_outs, time_outs)  # a time-out is done
    scale, gamma = run.cfg.agent.config.reward_shaper.scale_value, run.cfg.agent.config.gamma
    rewards = torch.stack([r for r, _, _ in seen]).unsqueeze(-1)
    expected = scale * rewards + gamma * buffer["values"] * time_outs.unsqueeze(-1)
    assert torch.allclose(buffer["rewards"], expected, atol=1e-6)


@pytest.mark.usefixtures("restore_torch_state")
def test_load_policy_acts_like_the_trained_model(tmp_path: Path) -> None:
    run = _run(tmp_path)
    rl_games.train(run)
    checkpoint = tmp_path / "checkpoints" / "model_2.pt"
    policy = rl_games.load_policy(run, checkpoint)
    model = torch.load(checkpoint, weights_only=True)["library"]["model"]
    obs = run.env.observations()
    with torch.no_grad():  # running mean/std normalisation (clipped at 5), then the mean action
        x = (obs.clamp(-5, 5) - model["running_mean_std.running_mean"].float()) / torch.sqrt(
            model["running_mean_std.running_var"].float() + 1e-5)
        x = x.clamp(-5, 5)
        for layer in ("a2c_network.actor_mlp.0", "a2c_network.actor_mlp.2"):
            x = torch.nn.functional.elu(x @ model[f"{layer}.weight"].T + model[f"{layer}.bias"])
        expected = (x @ model["a2c_network.mu.weight"].T + model["a2c_network.mu.bias"]).clamp(-1, 1)
    assert torch.allclose(policy(obs), expected, atol=1e-6)
    assert torch.equal(policy(obs), policy(obs))
    # The normalisers learned something, so the check above covers them.
    assert not torch.equal(model["running_mean_std.running_mean"], torch.zeros(4, dtype=torch.float64))
    # rl_games' own pickled .pth checkpoints are not written; its summaries go to tensorboard/.
    assert not list(tmp_path.rglob("*.pth"))
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["model_0.pt", "model_2.pt"]
    assert list((tmp_path / "tensorboard" / "summaries").glob("events.out.tfevents.*"))


@pytest.mark.usefixtures("restore_torch_state")
def test_checkpoint_restores_epoch_and_adaptive_learning_rate(tmp_path: Path) -> None:
    run = _run(tmp_path / "first", "trainer.checkpoint_interval=1")
    rl_games.train(run)
    payload = torch.load(tmp_path / "first" / "checkpoints" / "model_1.pt", weights_only=True)
    assert payload["library"]["last_lr"] != run.cfg.agent.config.learning_rate  # the schedule moved it
    resumed = _run(tmp_path / "resumed", f"checkpoint={tmp_path / 'first' / 'checkpoints' / 'model_1.pt'}")
    _, agent = _agent(resumed, payload)
    assert agent.epoch_num == 2  # the next update_epoch makes it 3: seedlock iteration 2
    assert agent.last_lr == payload["library"]["last_lr"]
    assert agent.optimizer.param_groups[0]["lr"] == payload["library"]["last_lr"]


@pytest.mark.slow  # make test-all; make test proves continuing with test_resume's run of every library
def test_checkpoint_continues_the_run_to_max_iterations(tmp_path: Path) -> None:
    run_train("trainer=rl_games", *SMALL, f"run_dir={tmp_path / 'first'}", "trainer.checkpoint_interval=1")
    checkpoint = tmp_path / "first" / "checkpoints" / "model_1.pt"
    run_train("trainer=rl_games", "num_envs=64", "max_iterations=5", f"run_dir={tmp_path / 'resumed'}",
              f"checkpoint={checkpoint}")
    fingerprints = read_fingerprints(tmp_path / "resumed" / "fingerprints.jsonl")
    assert [line["iteration"] for line in fingerprints] == [2, 3, 4]
    assert [line["env_steps"] for line in fingerprints] == [3 * 2048, 4 * 2048, 5 * 2048]
