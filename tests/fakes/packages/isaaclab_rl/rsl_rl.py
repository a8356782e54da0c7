"""Fake ``isaaclab_rl.rsl_rl`` (tests only), after Isaac Lab's RslRlVecEnvWrapper: an RSL-RL VecEnv
that resets the env once, reads observations from the unwrapped env and reports time-outs."""

from __future__ import annotations

import gymnasium
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from isaaclab import record
from isaaclab.envs import DirectRLEnv, ManagerBasedRLEnv


class RslRlVecEnvWrapper(VecEnv):
    def __init__(self, env: gymnasium.Env, clip_actions: float | None = None) -> None:
        if not isinstance(env.unwrapped, (ManagerBasedRLEnv, DirectRLEnv)):
            raise ValueError(f"The environment must be inherited from ManagerBasedRLEnv or DirectRLEnv: {type(env)}")
        record("RslRlVecEnvWrapper", env=env, clip_actions=clip_actions)
        self.env = env
        self.clip_actions = clip_actions
        self.num_envs = env.unwrapped.num_envs
        self.device = env.unwrapped.device
        self.max_episode_length = env.unwrapped.max_episode_length
        self.num_actions = gymnasium.spaces.flatdim(env.unwrapped.single_action_space)
        self.env.reset()

    @property
    def cfg(self) -> object:
        return self.env.unwrapped.cfg

    @property
    def unwrapped(self) -> gymnasium.Env:
        return self.env.unwrapped

    @property
    def episode_length_buf(self) -> torch.Tensor:  # type: ignore[override]
        return self.unwrapped.episode_length_buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.unwrapped.episode_length_buf = value

    def get_observations(self) -> TensorDict:
        return TensorDict(self.unwrapped._get_observations(), batch_size=[self.num_envs])

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        if self.clip_actions is not None:
            actions = torch.clamp(actions, -self.clip_actions, self.clip_actions)
        obs, rew, terminated, truncated, extras = self.env.step(actions)
        if not self.unwrapped.cfg.is_finite_horizon:
            extras["time_outs"] = truncated
        return TensorDict(obs, batch_size=[self.num_envs]), rew, (terminated | truncated).long(), extras

    def close(self) -> None:
        self.env.close()
