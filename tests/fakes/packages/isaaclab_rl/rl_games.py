"""Fake ``isaaclab_rl.rl_games`` (tests only), after Isaac Lab's RlGamesVecEnvWrapper: observations
as ``{"obs": tensor}`` clipped to ``clip_obs``, actions clipped, time-outs in the extras. (The real
one returns OpenAI-gym spaces; gymnasium's are used here, as gym is not installed.)"""

from __future__ import annotations

from typing import Any

import gymnasium
import torch
from rl_games.common import env_configurations
from rl_games.common.ivecenv import IVecEnv

from isaaclab import record
from isaaclab.envs import DirectRLEnv, ManagerBasedRLEnv


class RlGamesVecEnvWrapper(IVecEnv):
    def __init__(self, env: gymnasium.Env, rl_device: str, clip_obs: float, clip_actions: float) -> None:
        if not isinstance(env.unwrapped, (ManagerBasedRLEnv, DirectRLEnv)):
            raise ValueError(f"The environment must be inherited from ManagerBasedRLEnv or DirectRLEnv: {type(env)}")
        record("RlGamesVecEnvWrapper", env=env, rl_device=rl_device, clip_obs=clip_obs, clip_actions=clip_actions)
        self.env = env
        self._rl_device = rl_device
        self._clip_obs = clip_obs
        self._clip_actions = clip_actions
        self._sim_device = env.unwrapped.device

    @property
    def unwrapped(self) -> gymnasium.Env:
        return self.env.unwrapped

    @property
    def num_envs(self) -> int:
        return self.unwrapped.num_envs

    def get_number_of_agents(self) -> int:
        return 1

    def get_env_info(self) -> dict[str, Any]:
        shape = self.unwrapped.single_observation_space["policy"].shape
        action_shape = self.unwrapped.single_action_space.shape
        return {
            "observation_space": gymnasium.spaces.Box(-self._clip_obs, self._clip_obs, shape),
            "action_space": gymnasium.spaces.Box(-self._clip_actions, self._clip_actions, action_shape),
            "state_space": gymnasium.spaces.Box(-self._clip_obs, self._clip_obs, (0,)),
        }

    def seed(self, seed: int = -1) -> int:
        return self.unwrapped.seed(seed)

    def reset(self) -> dict[str, torch.Tensor]:
        obs, _ = self.env.reset()
        return {"obs": obs["policy"].clamp(-self._clip_obs, self._clip_obs)}

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict]:
        actions = actions.detach().clone().to(device=self._sim_device).clamp(-self._clip_actions, self._clip_actions)
        obs, rew, terminated, truncated, extras = self.env.step(actions)
        if not self.unwrapped.cfg.is_finite_horizon:
            extras["time_outs"] = truncated.to(device=self._rl_device)
        obs = {"obs": obs["policy"].clamp(-self._clip_obs, self._clip_obs)}
        return obs, rew.to(self._rl_device), (terminated | truncated).to(self._rl_device), extras

    def close(self) -> None:
        self.env.close()


class RlGamesGpuEnv(IVecEnv):
    """Hands rl_games the wrapper registered under ``config_name`` (as Isaac Lab's does)."""

    def __init__(self, config_name: str, num_actors: int, **kwargs: Any) -> None:
        self.env = env_configurations.configurations[config_name]["env_creator"](**kwargs)

    def step(self, action: torch.Tensor) -> Any:
        return self.env.step(action)

    def reset(self) -> Any:
        return self.env.reset()

    def get_number_of_agents(self) -> int:
        return self.env.get_number_of_agents()

    def get_env_info(self) -> dict:
        return self.env.get_env_info()
