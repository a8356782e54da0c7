"""The embedded batched CartPole: spaces, auto-reset, time-outs apart from failures, own RNG."""

from __future__ import annotations

import math

import gymnasium
import pytest
import torch

import determinism
from tasks import TaskConfigError, make
from tasks.cartpole import CartpoleConfig, CartpoleEnv, EpisodeStatistics


@pytest.fixture(autouse=True)
def _applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(determinism, "_applied", object())


def test_spaces_are_gymnasium_boxes() -> None:
    env = CartpoleEnv(num_envs=3, seed=0)
    assert isinstance(env.observation_space, gymnasium.spaces.Box) and env.observation_space.shape == (4,)
    assert isinstance(env.action_space, gymnasium.spaces.Box) and env.action_space.shape == (1,)
    assert env.observations().shape == (3, 4)


def test_episode_cap_is_isaac_labs_300_steps() -> None:
    assert CartpoleEnv(num_envs=1, seed=0).max_episode_length == 300


def test_reset_angles_are_within_quarter_pi() -> None:
    env = CartpoleEnv(num_envs=4096, seed=0)
    assert env.observations()[:, 0].abs().max() <= 0.25 * math.pi
    assert env.observations()[:, 1:].abs().max() == 0


def test_same_seed_same_trajectory_regardless_of_global_rng() -> None:
    actions = torch.linspace(-1, 1, 16).reshape(16, 1)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        env = CartpoleEnv(num_envs=16, seed=9)
        runs.append(torch.stack([env.step(actions).obs for _ in range(50)]))
    assert torch.equal(runs[0], runs[1])


def test_different_seed_different_initial_state() -> None:
    assert not torch.equal(CartpoleEnv(8, seed=1).observations(), CartpoleEnv(8, seed=2).observations())


def test_time_out_is_a_truncation_not_a_termination() -> None:
    # A pole started exactly upright with no force stays up for the whole episode.
    env = CartpoleEnv(num_envs=2, seed=0, config=CartpoleConfig(initial_pole_angle_range=(0.0, 0.0)))
    for _ in range(env.max_episode_length - 1):
        result = env.step(torch.zeros(2, 1))
        assert not result.truncated.any() and not result.terminated.any()
    result = env.step(torch.zeros(2, 1))
    assert result.truncated.all() and not result.terminated.any()
    assert (env.episode_length == 0).all()
    assert env.statistics.mean_length() == 300


def test_failure_terminates_resets_and_keeps_final_observation() -> None:
    env = CartpoleEnv(num_envs=4, seed=0)
    for _ in range(100):
        result = env.step(torch.ones(4, 1))  # full force one way: the cart leaves the track
        if result.terminated.any():
            break
    assert result.terminated.any() and not result.truncated[result.terminated].any()
    done = result.terminated
    assert (result.final_obs[done, 2].abs() > 3.0).any() or (result.final_obs[done, 0].abs() > math.pi / 2).any()
    assert (result.obs[done, 1:] == 0).all()  # fresh state after the auto-reset
    assert (result.reward[done] < 0).all()  # the termination penalty


def test_unknown_task_and_unknown_env_key_name_the_valid_choices() -> None:
    with pytest.raises(TaskConfigError, match=r"task='nope'.*cartpole"):
        make("nope", {}, num_envs=1, seed=0, device="cpu")
    with pytest.raises(TaskConfigError, match=r"unknown key.*'mass'.*action_scale"):
        make("cartpole", {"mass": 2.0}, num_envs=1, seed=0, device="cpu")


def test_episode_statistics_read_back_later_hold_what_reading_every_step_would() -> None:
    # The statistics note finished episodes on the device and read them back in batches (on a
    # query, a checkpoint or every flush_steps steps); the windows must be the same, in the order
    # the episodes finished: by step, then by env.
    generator = torch.Generator().manual_seed(3)
    deferred = EpisodeStatistics(num_envs=5, device=torch.device("cpu"), window=20, flush_steps=7)
    returns: list[float] = []
    lengths: list[int] = []
    running = torch.zeros(5)
    length = torch.zeros(5, dtype=torch.long)
    for step in range(60):
        reward = torch.rand(5, generator=generator)
        done = torch.rand(5, generator=generator) < 0.3
        length += 1
        deferred.record(reward, done, length)
        running += reward
        returns += running[done].tolist()
        lengths += length[done].tolist()
        running[done] = 0.0
        length = length.masked_fill(done, 0)  # a new tensor, as the tasks make; the noted one stays
        if step == 30:
            saved, lengths_then = deferred.state_dict(), list(lengths)  # mid-way, episodes pending
            assert saved["returns"].tolist() == pytest.approx(returns[-20:])
    assert deferred.mean_return() == pytest.approx(sum(returns[-20:]) / 20)
    assert list(deferred.lengths) == lengths[-20:]
    restored = EpisodeStatistics(num_envs=5, device=torch.device("cpu"), window=20)
    restored.record(torch.ones(5), torch.ones(5, dtype=torch.bool), torch.ones(5, dtype=torch.long))  # pending, then dropped
    restored.load_state_dict(saved)
    assert restored.state_dict()["lengths"].tolist() == lengths_then[-20:]


def test_the_cuda_graph_is_only_used_on_cuda() -> None:
    """On the CPU the step runs eagerly, whatever task.env.cuda_graph says (tests/test_gpu.py
    checks that replays equal eager steps on a GPU)."""
    env = CartpoleEnv(num_envs=8, seed=0)
    assert env.cfg.cuda_graph
    for _ in range(3):
        env.step(torch.zeros(8, 1))
    assert env._graph is None


def test_the_camera_task_refuses_a_cuda_graph() -> None:
    with pytest.raises(TaskConfigError, match=r"cuda_graph=true is not valid for cartpole_rgb.*cuda_graph=false"):
        make("cartpole_rgb", {"cuda_graph": True}, num_envs=2, seed=0, device="cpu")
    assert make("cartpole_rgb", {"cuda_graph": False}, num_envs=2, seed=0, device="cpu").num_envs == 2
