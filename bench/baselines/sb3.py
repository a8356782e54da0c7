"""Stable-Baselines3 by hand: a VecEnv around the task (numpy in and out, the terminal
observation and time-out flag of each finished episode in its info), ``PPO(...).learn`` with a
``CheckpointCallback``, the agent YAML's strings turned into classes as Isaac Lab's
``process_sb3_cfg`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv


def rollout_steps(agent: dict[str, Any]) -> int:
    return int(agent["n_steps"])


class TaskVecEnv(VecEnv):
    render_mode = None

    def __init__(self, env: Any) -> None:
        self.env = env
        self.returns = np.zeros(env.num_envs)
        self.lengths = np.zeros(env.num_envs, dtype=np.int64)
        super().__init__(env.num_envs, env.observation_space, env.action_space)

    def reset(self) -> np.ndarray:
        return self.env.observations().cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = torch.as_tensor(actions, dtype=torch.float32, device=self.env.device)

    def step_wait(self) -> tuple:
        result = self.env.step(self.actions)
        rewards = result.reward.cpu().numpy()
        dones = (result.terminated | result.truncated).cpu().numpy()
        self.returns += rewards
        self.lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(dones)
        if ended.size:
            final_obs, truncated = result.final_obs.cpu().numpy(), result.truncated.cpu().numpy()
            for i in ended:
                infos[i] = {"terminal_observation": final_obs[i], "TimeLimit.truncated": bool(truncated[i]),
                            "episode": {"r": float(self.returns[i]), "l": int(self.lengths[i])}}
            self.returns[ended], self.lengths[ended] = 0.0, 0
        return result.obs.cpu().numpy(), rewards, dones, infos

    def close(self) -> None:
        pass

    def seed(self, seed: int | None = None) -> list[None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name, None)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise NotImplementedError

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs


def train(env: Any, agent: dict[str, Any], iterations: int, device: str, log_dir: Path,
          checkpoint_interval: int, seed: int) -> None:
    kwargs = dict(agent)
    policy = kwargs.pop("policy")
    kwargs["batch_size"] = kwargs["n_steps"] * env.num_envs // kwargs.pop("n_minibatches")
    kwargs["policy_kwargs"] = {**kwargs["policy_kwargs"], "activation_fn": getattr(torch.nn, kwargs["policy_kwargs"]["activation_fn"][3:])}
    model = PPO(policy, TaskVecEnv(env), seed=seed, device=device, tensorboard_log=str(log_dir), verbose=0, **kwargs)
    checkpoints = CheckpointCallback(save_freq=checkpoint_interval * kwargs["n_steps"], save_path=str(log_dir / "checkpoints"))
    model.learn(total_timesteps=iterations * kwargs["n_steps"] * env.num_envs, callback=checkpoints, log_interval=1)
