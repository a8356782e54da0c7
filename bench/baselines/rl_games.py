"""rl_games by hand: the task registered as a vec env, ``Runner().load(...)`` and ``run``, as Isaac
Lab's rl_games/train.py does. ``torch_compile`` and ``torch_threads`` are set as seedlock sets
them (compile off, the process's thread count), so both sides run the same kernels on as many
threads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium
import torch
from rl_games.common import env_configurations, vecenv
from rl_games.common.ivecenv import IVecEnv
from rl_games.torch_runner import Runner


def rollout_steps(agent: dict[str, Any]) -> int:
    return int(agent["config"]["horizon_length"])


class TaskVecEnv(IVecEnv):
    def __init__(self, env: Any, clip_obs: float, clip_actions: float) -> None:
        self.env, self.clip_obs, self.clip_actions = env, clip_obs, clip_actions

    def get_env_info(self) -> dict[str, Any]:
        return {
            "observation_space": gymnasium.spaces.Box(-self.clip_obs, self.clip_obs, self.env.observation_space.shape),
            "action_space": gymnasium.spaces.Box(-self.clip_actions, self.clip_actions, self.env.action_space.shape),
            "agents": 1, "value_size": 1,
        }

    def reset(self) -> dict[str, torch.Tensor]:
        return {"obs": self.env.observations().clamp(-self.clip_obs, self.clip_obs)}

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict]:
        result = self.env.step(actions.detach().clamp(-self.clip_actions, self.clip_actions))
        dones = (result.terminated | result.truncated).to(torch.uint8)
        return {"obs": result.obs.clamp(-self.clip_obs, self.clip_obs)}, result.reward, dones, {"time_outs": result.truncated}


def train(env: Any, agent: dict[str, Any], iterations: int, device: str, log_dir: Path,
          checkpoint_interval: int, seed: int) -> None:
    params = copy.deepcopy(agent)
    clipping = params.pop("env")
    vec_env = TaskVecEnv(env, clipping["clip_observations"], clipping["clip_actions"])
    vecenv.register("bench", lambda config_name, num_actors, **kwargs: vec_env)
    env_configurations.register("bench", {"vecenv_type": "bench", "env_creator": lambda **kwargs: vec_env})
    params["seed"] = seed
    params["torch_threads"] = 0
    params["config"].update(
        env_name="bench", num_actors=env.num_envs, device=device, device_name=device, max_epochs=iterations,
        torch_compile=False, train_dir=str(log_dir), full_experiment_name="bench",
        save_frequency=checkpoint_interval,
    )
    runner = Runner()
    runner.load({"params": params})
    runner.run({"train": True, "play": False})
