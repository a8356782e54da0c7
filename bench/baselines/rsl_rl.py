"""RSL-RL by hand: a VecEnv around the task, ``OnPolicyRunner(...).learn``, as Isaac Lab's
rsl_rl/train.py does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict


def rollout_steps(agent: dict[str, Any]) -> int:
    return int(agent["num_steps_per_env"])


class TaskVecEnv(VecEnv):
    def __init__(self, env: Any) -> None:
        self.env = env
        self.num_envs, self.num_actions = env.num_envs, env.num_actions
        self.max_episode_length, self.device, self.cfg = env.max_episode_length, env.device, {}

    @property
    def episode_length_buf(self) -> torch.Tensor:  # type: ignore[override]
        return self.env.episode_length

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.episode_length = value.to(self.env.episode_length.dtype)

    def get_observations(self) -> TensorDict:
        return TensorDict({"policy": self.env.observations()}, batch_size=[self.num_envs], device=self.device)

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        result = self.env.step(actions)
        obs = TensorDict({"policy": result.obs}, batch_size=[self.num_envs], device=self.device)
        return obs, result.reward, (result.terminated | result.truncated).long(), {"time_outs": result.truncated}


def train(env: Any, agent: dict[str, Any], iterations: int, device: str, log_dir: Path,
          checkpoint_interval: int, seed: int) -> None:
    cfg = {**agent, "save_interval": checkpoint_interval, "logger": "tensorboard", "check_for_nan": True}
    runner = OnPolicyRunner(TaskVecEnv(env), cfg, log_dir=str(log_dir), device=device)
    runner.learn(num_learning_iterations=iterations, init_at_random_ep_len=True)
