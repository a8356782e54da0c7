"""``task=gym task.id=<gymnasium id>``: any registered gymnasium environment with a continuous
(Box) action space, classic control or MuJoCo, as a seedlock batched task.

The envs are gymnasium's own ``SyncVectorEnv`` (``gymnasium.make_vec``, sync mode: sub-envs step in
order, in this process, so a run is a pure function of its seed), in same-step autoreset mode: a
finished episode is reset inside the step that ended it and its last observation is kept apart,
which is what every library here expects (``StepResult.final_obs``). Sub-env i is seeded once, at
the first reset, with the i-th seed ``determinism.env_seeds`` derives from the run seed; gymnasium
then draws every later reset from that env's own ``np_random``. Actions are clipped to the action
space's bounds before the env sees them (gymnasium's ``ClipAction``; SB3 and Isaac Lab's wrappers
clip the same way). Observations and rewards leave the task unnormalised: normalisation is the
library's, as the agent YAML sets it (rl_games ``normalize_input``, RSL-RL ``obs_normalization``,
SKRL ``RunningStandardScaler``, SB3 ``normalize``: VecNormalize, as RL Zoo).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
import torch
from omegaconf import DictConfig

import determinism
from tasks import TaskConfigError
from determinism.fingerprint import ObservationDigests
from tasks.cartpole import EpisodeStatistics, StepResult

DEFAULT_ID_HINT = "e.g. task.id=Pendulum-v1 or task.id=Ant-v5"


class GymTaskError(TaskConfigError):
    """A gymnasium id or setting this task cannot run; one paragraph for the user."""


class GymTask:
    """``num_envs`` gymnasium envs of one id behind the batched-task interface (torch in and out)."""

    random_episode_start = False  # gymnasium's TimeLimit counts the steps; RSL-RL cannot spread them

    def __init__(self, env_id: str, num_envs: int, seed: int, device: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id = env_id
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.env = make_vector_env(env_id, num_envs, env_kwargs)
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        spec = self.env.envs[0].spec
        self.max_episode_length = int(spec.max_episode_steps) if spec and spec.max_episode_steps else 0
        self.env_seeds = determinism.env_seeds(seed, num_envs)
        self._action_low = torch.as_tensor(self.action_space.low, dtype=torch.float32)
        self._action_high = torch.as_tensor(self.action_space.high, dtype=torch.float32)
        obs, _ = self.env.reset(seed=self.env_seeds)
        self._obs = self._tensor(obs)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.statistics = EpisodeStatistics(num_envs, self.device)
        self.observation_digests = ObservationDigests()

    @property
    def num_actions(self) -> int:
        return int(np.prod(self.action_space.shape))

    @property
    def num_obs(self) -> int:
        return int(np.prod(self.observation_space.shape))

    def observations(self) -> torch.Tensor:
        return self._obs

    def step(self, actions: torch.Tensor) -> StepResult:
        clipped = actions.detach().to("cpu", torch.float32).reshape(self.num_envs, *self.action_space.shape)
        clipped = torch.maximum(torch.minimum(clipped, self._action_high), self._action_low)
        obs, reward, terminated, truncated, infos = self.env.step(clipped.numpy().astype(self.action_space.dtype))
        done = np.logical_or(terminated, truncated)
        final_obs = np.array(obs, copy=True)
        if done.any():
            for index in np.flatnonzero(done):
                final_obs[index] = infos["final_obs"][index]
        self._obs = self._tensor(obs)
        reward_t = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        terminated_t = torch.as_tensor(terminated, device=self.device)
        truncated_t = torch.as_tensor(truncated, device=self.device) & ~terminated_t
        done_t = terminated_t | truncated_t
        self.episode_length += 1
        self.statistics.record(reward_t, done_t, self.episode_length)
        self.observation_digests.note(self._obs, actions, reward_t)
        self.episode_length = torch.where(done_t, torch.zeros_like(self.episode_length), self.episode_length)
        return StepResult(self._obs, reward_t, terminated_t, truncated_t, self._tensor(final_obs))

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the task: counters and statistics. The simulators' own
        state is not saved, so a gym run cannot continue from a checkpoint (refused up front)."""
        return {"episode_length": self.episode_length.cpu(), "statistics": self.statistics.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise GymTaskError(
            f"task=gym ({self.env_id}) cannot continue from a checkpoint: gymnasium envs' simulator state "
            "is not saved in it."
        )

    def render_frame(self) -> np.ndarray | None:
        """Sub-env 0's rgb_array frame (``task.env_kwargs.render_mode=rgb_array``), for play's GIF."""
        try:
            frame = self.env.envs[0].render()
        except Exception as error:  # noqa: BLE001 - MuJoCo's FatalError, PyOpenGL's errors: no GL here
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise GymTaskError(
                f"gif= cannot film task.id={self.env_id!r}: its frames need an OpenGL context and none could be "
                f"made here (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}, "
                f"DISPLAY={os.environ.get('DISPLAY', '<unset>')}: {type(error).__name__}: {reason}). On a machine "
                "without a display use MUJOCO_GL=egl (the default seedlock picks there) or MUJOCO_GL=osmesa "
                "(apt install libosmesa6), or run under xvfb-run; or leave out gif=."
            ) from None
        return None if frame is None else np.asarray(frame)

    @property
    def frame_seconds(self) -> float:
        return 1.0 / float(self.env.envs[0].metadata.get("render_fps") or 30)

    def close(self) -> None:
        self.env.close()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.device).reshape(self.num_envs, -1)


def make_vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any]) -> gymnasium.vector.SyncVectorEnv:
    """gymnasium's sync vector env of ``env_id``, same-step autoreset; unknown ids and discrete
    action spaces fail with the id, the reason and what is valid."""
    if not env_id:
        raise GymTaskError(f"task=gym needs task.id, the gymnasium id to train ({DEFAULT_ID_HINT}).")
    if env_kwargs.get("render_mode") == "rgb_array":
        choose_headless_gl()
    try:
        env = gymnasium.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}, **env_kwargs,
        )
    except gymnasium.error.Error as error:
        raise GymTaskError(
            f"task.id={env_id!r} cannot be made by gymnasium: {error}. Give a registered id, {DEFAULT_ID_HINT} "
            "(python -c 'import gymnasium; gymnasium.pprint_registry()' lists them)."
        ) from None
    except (ImportError, ModuleNotFoundError) as error:
        raise GymTaskError(
            f"task.id={env_id!r} needs a package that is not installed: {error}. MuJoCo tasks need "
            "`pip install 'gymnasium[mujoco]'`."
        ) from None
    except TypeError as error:  # a task.env_kwargs key the env does not take
        raise GymTaskError(f"task.env_kwargs is not valid for task.id={env_id!r}: {error}") from None
    if not isinstance(env.single_action_space, gymnasium.spaces.Box):
        env.close()
        raise GymTaskError(
            f"task.id={env_id!r} has a {type(env.single_action_space).__name__} action space; seedlock's PPO "
            "adapters train continuous (Box) actions. Choose an id with a Box action space, "
            f"{DEFAULT_ID_HINT}."
        )
    return env


def choose_headless_gl() -> None:
    """MuJoCo draws frames through OpenGL and picks GLFW, which needs a display, unless told
    otherwise; with no display and no choice made, EGL (a context without a window, what
    dm_control and MuJoCo's docs use headless). Set before gymnasium imports mujoco, which reads it."""
    if not os.environ.get("DISPLAY") and "MUJOCO_GL" not in os.environ and "PYOPENGL_PLATFORM" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"


def make(cfg: DictConfig, seed: int) -> GymTask:
    """The gym task of a composed run config (``task.backend: gym``)."""
    if cfg.checkpoint:
        raise GymTaskError(
            f"checkpoint={cfg.checkpoint} with task=gym: a gymnasium run cannot continue from a checkpoint "
            "(its simulators' state is not saved). Start a new run."
        )
    env_kwargs = dict(cfg.task.get("env_kwargs") or {})
    return GymTask(str(cfg.task.id or ""), int(cfg.num_envs), seed, str(cfg.device), env_kwargs)
