"""Stable-Baselines3 (2.x) adapter: SB3's PPO on a seedlock task.

Recipe: wrap the batched task as an SB3 ``VecEnv`` (numpy in and out, one info dict per env),
turn the agent YAML into ``PPO`` keyword arguments the way Isaac Lab's ``process_sb3_cfg`` does
(``"nn.ELU"`` strings to classes, ``"lin_<x>"`` schedules, ``n_minibatches`` to ``batch_size``),
and train with SB3's own ``learn`` loop. One seedlock iteration is one SB3 rollout
(``n_steps`` x ``num_envs`` transitions) and the update on it; :class:`SeedlockPPO` fingerprints,
logs and checkpoints right after every update.

Seeding: unlike RSL-RL, SB3 seeds on its own. ``PPO(seed=...)`` calls ``set_random_seed``, which
re-seeds python ``random``, numpy and torch and seeds the action space, just before it builds the
policy. The adapter passes ``seed=run.seed``, the seed ``determinism.apply`` resolved (and that
seeded the same RNGs and the task's generator), so the re-seed restarts those RNGs from the same
seed and the run still has one seed, the one in manifest.json: with ``seed=None`` SB3 would leave
them alone, and any other value would be a second, hidden seed. Everything random in SB3's PPO
then draws from those RNGs: action noise from torch's global RNG, the minibatch permutation
(``RolloutBuffer.get``) from numpy's global RNG; ``action_space.sample`` is never called by PPO
but is seeded too. SB3's per-env reset seeds (``VecEnv.seed``) are not used: the task resets
itself from its own generator, seeded by ``tasks.make`` with the same resolved seed.
On CUDA, SB3's seeding also switches cuDNN to deterministic mode; :class:`SeedlockPPO` keeps the
cuDNN switches ``determinism.apply`` set (and recorded in manifest.json) instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from omegaconf import OmegaConf
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from tasks.task import BatchedTask, StepResult
from tasks.isaaclab import check_agent_inputs, is_isaaclab
from trainers.interface import (
    CheckpointError,
    Policy,
    TrainingRun,
    TrainSummary,
    checkpoint_due,
    load_checkpoint,
    record_iteration,
    restore_run_state,
    save_checkpoint,
    summarize,
)
from trainers.run_config import ConfigError

# Keys of Isaac Lab's SB3 agent YAML that seedlock sets from its own top-level keys.
SEEDLOCK_OWNED = {"seed": "seed", "device": "device", "n_timesteps": "max_iterations", "tensorboard_log": "run_dir"}
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
# SB3's logger keys (train/<name>) of one PPO.train() call that go into the fingerprint.
LOSS_KEYS = ("policy_gradient_loss", "value_loss", "entropy_loss", "loss", "approx_kl", "clip_fraction")


def train(run: TrainingRun) -> TrainSummary:
    model = make_model(run, seed=run.seed)
    start = 0
    if run.cfg.checkpoint:
        start = model.resume(Path(run.cfg.checkpoint))
    remaining = run.max_iterations - start
    if remaining > 0:
        model.learn(
            total_timesteps=remaining * model.steps_per_iteration,
            reset_num_timesteps=start == 0,
            log_interval=None,  # SeedlockPPO.train dumps the logs itself, once per update
        )
    model.logger.close()  # SB3 leaves its TensorBoard writer open; a sweep's joblib worker lives on
    env_steps = run.max_iterations * model.steps_per_iteration
    return summarize(run, run.max_iterations, env_steps, model.last_checkpoint)


def load_policy(run: TrainingRun, checkpoint: Path) -> Policy:
    model = restored_model(run, checkpoint)
    policy = model.policy
    low = torch.as_tensor(model.action_space.low, device=policy.device)
    high = torch.as_tensor(model.action_space.high, device=policy.device)

    def act(obs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            actions = policy._predict(obs.to(policy.device), deterministic=True)
            # As SB3's predict() does for a Box action space (without squashing).
            return torch.clamp(actions, low, high).to(obs.device)

    return act


def policy_module(run: TrainingRun, checkpoint: Path) -> torch.nn.Module:
    """The deployable policy, obs -> deterministic action: SB3's documented export wrapper
    (``policy(obs, deterministic=True)``), clipped to a Box action space as ``predict`` does."""
    model = restored_model(run, checkpoint)
    return Sb3Policy(model.policy, model.action_space.low, model.action_space.high).eval()


def restored_model(run: TrainingRun, checkpoint: Path) -> SeedlockPPO:
    """The model with the checkpoint's weights, its policy in evaluation mode (play and export).
    seed=None: nothing drawn while building survives (the checkpoint replaces the weights and the
    policy acts deterministically), so an evaluation does not restart the caller's RNGs."""
    model = make_model(run, seed=None)
    model.restore(load_checkpoint(checkpoint, run)["library"])
    model.policy.set_training_mode(False)
    return model


class Sb3Policy(torch.nn.Module):
    def __init__(self, policy: torch.nn.Module, low: Any, high: Any) -> None:
        super().__init__()
        self.policy = policy
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        actions, _, _ = self.policy(obs, deterministic=True)
        return torch.maximum(torch.minimum(actions, self.high), self.low)


def make_model(run: TrainingRun, seed: int | None) -> SeedlockPPO:
    policy, kwargs = ppo_kwargs(run)
    library = run.cfg.trainer.library
    vec_env = isaaclab_vec_env(run) if is_isaaclab(run.env) else SB3VecEnv(run.env)
    model = SeedlockPPO(
        run, policy, vec_env, seed=seed, device=run.device, verbose=int(library.verbose), **kwargs
    )
    # TensorBoard event files straight into run_dir/tensorboard (SB3's own tensorboard_log would
    # add a PPO_<n> subdirectory whose number depends on what is already there).
    formats = ["tensorboard"] + (["stdout"] if int(library.verbose) >= 1 else [])
    model.set_logger(configure(str(run.tensorboard_dir), formats))
    return model


def ppo_kwargs(run: TrainingRun) -> tuple[str, dict[str, Any]]:
    """The agent YAML as ``PPO(policy, env, **kwargs)`` arguments."""
    config = OmegaConf.to_container(run.cfg.agent, resolve=True)
    assert isinstance(config, dict)
    config.pop("max_iterations", None)  # seedlock's top-level max_iterations is the run's total
    for key, owner in SEEDLOCK_OWNED.items():
        if key in config:
            raise ConfigError(
                f"agent.{key} is not valid for trainer=sb3: seedlock sets it from the top-level "
                f"{owner} key; remove it from the agent config."
            )
    policy = str(config.pop("policy", "MlpPolicy"))
    if "n_minibatches" in config:
        if "batch_size" in config:
            raise ConfigError("agent.n_minibatches and agent.batch_size are both set for trainer=sb3; keep one.")
        # As Isaac Lab does: a number of minibatches, so the minibatch size divides the rollout
        # at every num_envs (SB3 warns about a truncated last minibatch otherwise).
        config["batch_size"] = int(config["n_steps"]) * run.env.num_envs // int(config.pop("n_minibatches"))
    for key in SCHEDULE_KEYS:
        if isinstance(config.get(key), str):
            config[key] = _linear_schedule(key, config[key])
    if "policy_kwargs" in config:
        config["policy_kwargs"] = {key: _torch_nn(key, value) for key, value in config["policy_kwargs"].items()}
    return policy, config


def _linear_schedule(key: str, value: str) -> LinearSchedule:
    """``"lin_3e-4"``: from 3e-4 at the start down to 0 at the end, as in rl-baselines3-zoo."""
    kind, _, start = value.partition("_")
    try:
        if kind != "lin":
            raise ValueError(value)
        return LinearSchedule(float(start), 0.0, 1.0)
    except ValueError:
        raise ConfigError(f"agent.{key}={value!r} is not valid: give a number or 'lin_<initial value>'.") from None


def _torch_nn(key: str, value: Any) -> Any:
    """``"nn.ELU"`` -> ``torch.nn.ELU``, as Isaac Lab's ``process_sb3_cfg`` does; a
    ``features_extractor_class`` name -> the class (:data:`FEATURES_EXTRACTORS`)."""
    if key == "features_extractor_class":
        if value not in FEATURES_EXTRACTORS:
            raise ConfigError(
                f"agent.policy_kwargs.features_extractor_class={value!r} is not valid; "
                f"choices: {', '.join(FEATURES_EXTRACTORS)}."
            )
        return FEATURES_EXTRACTORS[value]
    if isinstance(value, str) and value.startswith("nn."):
        module = getattr(torch.nn, value[3:], None)
        if module is None:
            raise ConfigError(f"agent.policy_kwargs.{key}={value!r} is not valid: torch.nn has no {value[3:]}.")
        return module
    return value


class ConvEncoder(BaseFeaturesExtractor):
    """A small CNN for float images in (C, H, W): conv layers with ReLU, flattened, then a linear
    layer with ReLU. SB3's NatureCNN (32/64/64 channels, 512 features, at least 36×36 pixels) is
    the choice for large frames; this one is sized like the other libraries' camera-task CNNs."""

    def __init__(
        self, observation_space: gymnasium.spaces.Box, channels: list[int], kernel_sizes: list[int],
        strides: list[int], features_dim: int = 128,
    ) -> None:
        super().__init__(observation_space, features_dim)
        layers: list[torch.nn.Module] = []
        in_channels = int(observation_space.shape[0])
        for out_channels, kernel, stride in zip(channels, kernel_sizes, strides, strict=True):
            layers += [torch.nn.Conv2d(in_channels, out_channels, kernel, stride), torch.nn.ReLU()]
            in_channels = out_channels
        self.cnn = torch.nn.Sequential(*layers, torch.nn.Flatten())
        with torch.no_grad():  # the flattened size, from one pass of zeros (no RNG drawn)
            flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = torch.nn.Sequential(torch.nn.Linear(flat, features_dim), torch.nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))


FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {"ConvEncoder": ConvEncoder, "NatureCNN": NatureCNN}


class SB3VecEnv(VecEnv):
    """A seedlock batched task as SB3's VecEnv: numpy observations, rewards and dones, one info
    dict per env. An env whose episode ended has the last observation of the episode in
    ``terminal_observation`` and ``TimeLimit.truncated`` true for a time-out, so that SB3
    bootstraps from the value of that observation at time-outs and not at failures; it also has
    ``episode`` (return and length), which SB3 logs as rollout/ep_rew_mean and ep_len_mean."""

    render_mode = None  # the embedded task does not render

    def __init__(self, env: BatchedTask) -> None:
        self.env = env
        self._episode_return = np.zeros(env.num_envs, dtype=np.float64)
        self._episode_length = np.zeros(env.num_envs, dtype=np.int64)
        self._actions: torch.Tensor | None = None
        super().__init__(env.num_envs, env.observation_space, env.action_space)

    def reset(self) -> VecEnvObs:
        """The current observations. SB3 calls this once, at the start of ``learn``; the task is in
        its initial state from construction and resets each env itself when its episode ends."""
        return self.env.observations().cpu().numpy()

    def seed(self, seed: int | None = None) -> list[int | None]:
        """SB3's per-env seeds are not used: the task draws its resets from its own generator,
        seeded by ``tasks.make`` with the run's resolved seed."""
        return [None] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = torch.as_tensor(actions, dtype=torch.float32, device=self.env.device)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_wait() without step_async()"
        result = self.env.step(self._actions)
        self._actions = None
        obs, rewards, dones, truncated = self._to_host(result)
        self._episode_return += rewards
        self._episode_length += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_ids = np.flatnonzero(dones)
        if done_ids.size:
            final_obs = result.final_obs.cpu().numpy()
            for idx in done_ids:
                infos[idx] = {
                    "terminal_observation": final_obs[idx],
                    "TimeLimit.truncated": bool(truncated[idx]),
                    "episode": {"r": float(self._episode_return[idx]), "l": int(self._episode_length[idx])},
                }
            self._episode_return[done_ids] = 0.0
            self._episode_length[done_ids] = 0
        return obs, rewards, dones, infos

    @staticmethod
    def _to_host(result: StepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The observations, rewards, dones and time-outs SB3 takes, in one device-to-host copy
        where the observations are a float vector per env (each copy is a host sync on CUDA):
        rewards are float32 and the flags 0/1, all exact in the packed float32 block."""
        dtype = result.reward.dtype
        scalars = torch.stack([result.reward, (result.terminated | result.truncated).to(dtype),
                               result.truncated.to(dtype)], dim=1)
        if result.obs.dim() == 2 and result.obs.dtype == dtype:
            block = torch.cat([result.obs, scalars], dim=1).cpu().numpy()
            obs, host = np.ascontiguousarray(block[:, :-3]), block[:, -3:]
        else:
            obs, host = result.obs.cpu().numpy(), scalars.cpu().numpy()
        return obs, host[:, 0].copy(), host[:, 1] > 0, host[:, 2] > 0

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        target = self.env if hasattr(self.env, attr_name) else self
        return [getattr(target, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise NotImplementedError("the envs of a batched task share their attributes")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        raise NotImplementedError("the envs of a batched task have no per-env methods")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)


@contextlib.contextmanager
def _cudnn_flags_kept() -> Iterator[None]:
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


class SeedlockPPO(PPO):
    """SB3's PPO that fingerprints, logs and checkpoints after every update.

    ``learn`` alternates ``collect_rollouts`` and ``train``; the hook is the end of ``train``,
    where the update is done and SB3's logger holds that update's losses (train/*). ``learn`` is
    called with ``log_interval=None`` and the logs are dumped here instead, so each TensorBoard
    point pairs a rollout's episode statistics with the update on it (SB3 dumps before ``train``,
    so its train/* values would lag a rollout and the last update's would never be written).
    """

    def __init__(self, run: TrainingRun, *args: Any, **kwargs: Any) -> None:
        self.run = run
        self.last_checkpoint: Path | None = None
        super().__init__(*args, **kwargs)

    @property
    def steps_per_iteration(self) -> int:
        return self.n_steps * self.n_envs

    def set_random_seed(self, seed: int | None = None) -> None:
        # SB3 sets cudnn.deterministic/benchmark when seeding on CUDA; determinism.apply owns them.
        with _cudnn_flags_kept():
            super().set_random_seed(seed)

    def _maybe_recommend_cpu(self, mlp_class_name: str = "ActorCriticPolicy") -> None:
        """No advice to run on the CPU: ``device`` is the run's explicit choice for task and policy
        alike (SB3 warns for every MlpPolicy on a GPU, on every run)."""

    def train(self) -> None:
        super().train()
        iteration = self.num_timesteps // self.steps_per_iteration - 1
        values = self.logger.name_to_value
        record_iteration(
            self.run, iteration, self.num_timesteps,
            modules={"policy": self.policy},
            optimizer_state=self.policy.optimizer.state_dict(),
            losses={key: values[f"train/{key}"] for key in LOSS_KEYS},
        )
        self.dump_logs(iteration + 1)
        if checkpoint_due(self.run, iteration):
            self.last_checkpoint = save_checkpoint(self.run, iteration, self.state())

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds: tensors and plain containers only (loaded with weights_only)."""
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.policy.optimizer.state_dict(),
            "num_timesteps": int(self.num_timesteps),
            "n_updates": int(self._n_updates),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"], strict=True)
        self.policy.optimizer.load_state_dict(state["optimizer"])
        self.num_timesteps = int(state["num_timesteps"])
        self._n_updates = int(state["n_updates"])

    def resume(self, checkpoint: Path) -> int:
        """Restore a checkpoint, the task and every RNG (last: building the model drew from them);
        returns the first iteration still to train. ``learn`` then starts from the task's current
        observations (``_last_obs`` is unset, so SB3 calls ``reset``, which hands them back)."""
        payload = load_checkpoint(checkpoint, self.run)
        self.restore(payload["library"])
        iteration = int(payload["seedlock"]["iteration"])
        if self.num_timesteps != (iteration + 1) * self.steps_per_iteration:
            raise CheckpointError(
                f"checkpoint={str(checkpoint)!r} was trained with {self.num_timesteps // (iteration + 1):,} env "
                f"steps per iteration, but this run takes {self.steps_per_iteration:,} (n_steps x num_envs); "
                "continue it with the same num_envs and agent.n_steps."
            )
        restore_run_state(self.run, payload)
        return iteration + 1


def isaaclab_vec_env(run: TrainingRun) -> VecEnv:
    """task=isaaclab: Isaac Lab's own SB3 wrapper around the Isaac Lab env, as Isaac Lab's
    sb3/train.py builds it. ``PPO(seed=...)`` seeds the env through it (Isaac Lab's ``seed``), with
    the run's seed and inside :meth:`SeedlockPPO.set_random_seed`, which keeps the cuDNN flags."""
    from isaaclab_rl.sb3 import Sb3VecEnvWrapper

    images = run.cfg.agent.get("policy") == "CnnPolicy" or "features_extractor_class" in run.cfg.agent.get(
        "policy_kwargs", {}
    )
    check_agent_inputs(run.env, "sb3", agent_takes_images=images)
    return Sb3VecEnvWrapper(run.env.env)
