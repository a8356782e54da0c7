"""A DirectRLEnv-like fake task (tests only): Isaac Lab's env interface (dict observations with a
``policy`` group, single_* spaces, episode_length_buf, seeding through the config) around the
embedded CartPole's physics. Like Isaac Lab's envs it seeds the global RNGs from ``cfg.seed`` at
construction and on ``reset(seed=...)`` the way Isaac Sim's ``set_seed`` does, switching cuDNN
benchmark on and deterministic mode off, which seedlock must undo."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from isaaclab import record
from isaaclab.envs import DirectRLEnv
from tasks.cartpole import CartpoleConfig, CartpoleEnv


@dataclass
class SimCfg:
    device: str = "cuda:0"
    dt: float = 1.0 / 120.0


@dataclass
class SceneCfg:
    num_envs: int = 4096


@dataclass
class FakeCartpoleEnvCfg:
    seed: int | None = None
    episode_length_s: float = 5.0
    is_finite_horizon: bool = False
    sim: SimCfg = field(default_factory=SimCfg)
    scene: SceneCfg = field(default_factory=SceneCfg)


class FakeCartpoleEnv(DirectRLEnv):
    metadata = {"render_modes": [None, "rgb_array"]}

    def __init__(self, cfg: FakeCartpoleEnvCfg, render_mode: str | None = None, **kwargs: Any) -> None:
        record("gym.make", seed=cfg.seed, num_envs=cfg.scene.num_envs, device=cfg.sim.device, cfg=cfg)
        if cfg.seed is not None:
            cfg.seed = self.seed(cfg.seed)
        self.cfg = cfg
        self.render_mode = render_mode
        self.num_envs = cfg.scene.num_envs
        self.device = cfg.sim.device
        self._task = CartpoleEnv(
            self.num_envs, seed=cfg.seed or 0, device=self.device,
            config=CartpoleConfig(episode_length_s=cfg.episode_length_s),
        )
        self.max_episode_length = self._task.max_episode_length
        self.single_observation_space = gymnasium.spaces.Dict(
            {"policy": gymnasium.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)}
        )
        self.single_action_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, self.num_envs)

    @property
    def episode_length_buf(self) -> torch.Tensor:
        return self._task.episode_length

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self._task.episode_length = value

    @staticmethod
    def seed(seed: int = -1) -> int:
        record("env.seed", seed=seed)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        return seed

    def _get_observations(self) -> dict[str, torch.Tensor]:
        return {"policy": self._task.observations()}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self.seed(seed)
        return self._get_observations(), {}

    def step(self, action: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        result = self._task.step(action.to(self.device))
        return {"policy": result.obs}, result.reward, result.terminated, result.truncated, {}

    def close(self) -> None:
        record("env.close")
