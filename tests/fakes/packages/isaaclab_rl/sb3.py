"""Fake ``isaaclab_rl.sb3`` (tests only), after Isaac Lab's Sb3VecEnvWrapper: numpy in and out, one
info dict per env with ``episode``, ``terminal_observation`` and ``TimeLimit.truncated``."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from isaaclab import record
from isaaclab.envs import DirectRLEnv, ManagerBasedRLEnv


class Sb3VecEnvWrapper(VecEnv):
    def __init__(self, env: gymnasium.Env, fast_variant: bool = True) -> None:
        if not isinstance(env.unwrapped, (ManagerBasedRLEnv, DirectRLEnv)):
            raise ValueError(f"The environment must be inherited from ManagerBasedRLEnv or DirectRLEnv: {type(env)}")
        record("Sb3VecEnvWrapper", env=env, fast_variant=fast_variant)
        self.env = env
        self.sim_device = env.unwrapped.device
        self.render_mode = None
        observation_space = env.unwrapped.single_observation_space["policy"]
        action_space = env.unwrapped.single_action_space
        if not action_space.is_bounded("both"):  # as Isaac Lab: SB3 needs a bounded Box
            action_space = gymnasium.spaces.Box(-100.0, 100.0, action_space.shape)
        super().__init__(env.unwrapped.num_envs, observation_space, action_space)
        self._ep_rew_buf = np.zeros(self.num_envs)
        self._ep_len_buf = np.zeros(self.num_envs)
        self._async_actions: torch.Tensor | None = None

    @property
    def unwrapped(self) -> gymnasium.Env:
        return self.env.unwrapped

    def seed(self, seed: int | None = None) -> list[int | None]:
        return [self.unwrapped.seed(seed)] * self.num_envs

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset()
        self._ep_rew_buf[:] = 0
        self._ep_len_buf[:] = 0
        return obs["policy"].cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._async_actions = torch.as_tensor(actions, dtype=torch.float32, device=self.sim_device)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        obs, rew, terminated, truncated, _ = self.env.step(self._async_actions)
        obs_np = obs["policy"].cpu().numpy()
        rewards = rew.cpu().numpy()
        dones = (terminated | truncated).cpu().numpy()
        self._ep_rew_buf += rewards
        self._ep_len_buf += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for idx in dones.nonzero()[0]:
            infos[idx] = {
                "episode": {"r": float(self._ep_rew_buf[idx]), "l": int(self._ep_len_buf[idx])},
                "terminal_observation": obs_np[idx],  # the real wrapper also gives the post-reset one
                "TimeLimit.truncated": bool(truncated[idx] and not terminated[idx]),
            }
            self._ep_rew_buf[idx] = 0.0
            self._ep_len_buf[idx] = 0
        return obs_np, rewards, dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise NotImplementedError("Setting attributes is not supported.")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> Any:
        return getattr(self.env, method_name)(*method_args, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False]
