"""RSL-RL (rsl-rl-lib 5.x) adapter: OnPolicyRunner with PPO on a seedlock task.

Recipe: wrap the batched task as an RSL-RL ``VecEnv``, turn the agent YAML into the runner's
dict config, train with the runner's own ``learn`` loop, fingerprint after every update.
RSL-RL never seeds anything itself (it draws from the global torch RNG that ``determinism``
seeded), so the adapter has no seed to pass on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

from tasks.task import BatchedTask
from tasks.isaaclab import check_agent_inputs, is_isaaclab
from trainers.fast_path import NanWatch, check_fast_path
from trainers.interface import (
    Policy,
    TrainingRun,
    TrainSummary,
    load_checkpoint,
    record_iteration,
    restore_run_state,
    save_checkpoint,
    summarize,
)
from trainers.rsl_rl_graphs import GraphedPpo

OBS_GROUP = "policy"


def train(run: TrainingRun) -> TrainSummary:
    runner = SeedlockRunner(vec_env(run), runner_config(run), run)
    if run.cfg.checkpoint:
        runner.resume(Path(run.cfg.checkpoint))
    remaining = run.max_iterations - runner.current_learning_iteration
    if remaining > 0:
        # The fast path's NaN check is read once per iteration; a NaN that breaks the library
        # before then is still reported as the env's NaN.
        with runner.nan_watch.explains_errors() if runner.nan_watch else contextlib.nullcontext():
            runner.learn(
                num_learning_iterations=remaining,
                init_at_random_ep_len=bool(run.cfg.trainer.library.init_at_random_ep_len)
                and runner.current_learning_iteration == 0
                # a gymnasium task's time limit is gymnasium's own counter, which cannot be spread
                and getattr(run.env, "random_episode_start", True),
            )
    return summarize(run, run.max_iterations, runner.env_steps(run.max_iterations - 1), runner.last_checkpoint)


def load_policy(run: TrainingRun, checkpoint: Path) -> Policy:
    actor = restored_runner(run, checkpoint).get_inference_policy(device=run.device)

    def act(obs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return actor(TensorDict({OBS_GROUP: obs}, batch_size=[obs.shape[0]]))

    return act


def policy_module(run: TrainingRun, checkpoint: Path) -> torch.nn.Module:
    """The deployable policy, obs -> deterministic action: RSL-RL's own export module (what its
    ``export_policy_to_jit`` scripts and Isaac Lab deploys), normaliser included."""
    return restored_runner(run, checkpoint).alg.get_policy().as_jit().to(run.device).eval()


def restored_runner(run: TrainingRun, checkpoint: Path) -> SeedlockRunner:
    """The runner with the checkpoint's models and optimizer loaded (play and export)."""
    runner = SeedlockRunner(vec_env(run), runner_config(run), run)
    runner.alg.load(load_checkpoint(checkpoint, run)["library"], None, strict=True)
    return runner


def vec_env(run: TrainingRun) -> VecEnv:
    """The run's task as an RSL-RL VecEnv: Isaac Lab's own wrapper for task=isaaclab, else seedlock's."""
    return isaaclab_vec_env(run) if is_isaaclab(run.env) else RslRlVecEnv(run.env)


def runner_config(run: TrainingRun) -> dict[str, Any]:
    """The agent YAML plus the keys the runner reads that seedlock owns."""
    config = OmegaConf.to_container(run.cfg.agent, resolve=True)
    assert isinstance(config, dict)
    config.pop("max_iterations", None)  # seedlock's top-level max_iterations is the run's total
    config["save_interval"] = int(run.cfg.trainer.checkpoint_interval)
    # The fast path checks for NaN on the device and reads the result once per iteration (NanWatch).
    config["check_for_nan"] = bool(run.cfg.trainer.library.check_for_nan) and not check_fast_path(run.cfg)
    config["logger"] = "tensorboard"
    return config


class RslRlVecEnv(VecEnv):
    """A seedlock batched task as RSL-RL's VecEnv (observations in a TensorDict group 'policy')."""

    def __init__(self, env: BatchedTask) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = env.num_actions
        self.max_episode_length = env.max_episode_length
        self.device = env.device
        self.cfg: dict[str, Any] = {}

    @property
    def episode_length_buf(self) -> torch.Tensor:  # type: ignore[override]
        return self.env.episode_length

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.episode_length = value.to(self.env.episode_length.dtype)

    def get_observations(self) -> TensorDict:
        return self._wrap(self.env.observations())

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        result = self.env.step(actions)
        dones = (result.terminated | result.truncated).to(torch.long)
        # RSL-RL bootstraps the value at time-outs, so it must see them apart from failures.
        return self._wrap(result.obs), result.reward, dones, {"time_outs": result.truncated}

    def _wrap(self, obs: torch.Tensor) -> TensorDict:
        return TensorDict({OBS_GROUP: obs}, batch_size=[self.num_envs], device=self.device)


class SeedlockRunner(OnPolicyRunner):
    """OnPolicyRunner that fingerprints each iteration and writes seedlock checkpoints.

    The fingerprint is taken in the runner's per-iteration ``logger.log`` call, which comes
    right after ``alg.update()``; checkpoints go through ``save``, which ``learn`` calls every
    ``save_interval`` iterations and once at the end.
    """

    def __init__(self, env: RslRlVecEnv, train_cfg: dict[str, Any], run: TrainingRun) -> None:
        self.run = run  # before the runner's __init__, which calls _configure_multi_gpu
        super().__init__(env, train_cfg, log_dir=str(run.tensorboard_dir), device=run.device)
        self.last_checkpoint: Path | None = None
        log = self.logger.log
        self.nan_watch = nan_watch = self._take_fast_path() if check_fast_path(run.cfg) else None

        def log_and_fingerprint(*, it: int, loss_dict: dict, **kwargs: Any) -> None:
            if nan_watch is not None and run.cfg.trainer.library.check_for_nan:
                nan_watch.check()
            log(it=it, loss_dict=loss_dict, **kwargs)
            record_iteration(
                run, it, self.env_steps(it),
                modules={"actor": self.alg.get_policy(), "critic": self.alg._raw_critic},
                optimizer_state=self.alg.optimizer.state_dict(),
                losses=loss_dict,
            )

        self.logger.log = log_and_fingerprint  # type: ignore[method-assign]

    def _take_fast_path(self) -> NanWatch:
        """trainer.fast_path: the logger's per-step episode bookkeeping off, the NaN check on the
        device (trainers/fast_path.py), PPO's act and update as CUDA graphs (trainers/rsl_rl_graphs.py;
        eager on the CPU)."""
        GraphedPpo(self.alg, self.device).install()
        self.logger.process_env_step = lambda *args, **kwargs: None  # type: ignore[method-assign]
        nan_watch = NanWatch(self.device)
        process = self.alg.process_env_step

        def watched(obs: TensorDict, rewards: torch.Tensor, dones: torch.Tensor, extras: dict) -> None:
            nan_watch.note(*obs.values(include_nested=True, leaves_only=True), rewards)
            process(obs, rewards, dones, extras)

        self.alg.process_env_step = watched  # type: ignore[method-assign]
        return nan_watch

    def env_steps(self, iteration: int) -> int:
        """Env steps of the whole run after ``iteration``: every rank's envs."""
        return (iteration + 1) * int(self.cfg["num_steps_per_env"]) * self.env.num_envs * self.run.ranks.world_size

    def _configure_multi_gpu(self) -> None:
        """RSL-RL's multi-GPU set-up, from seedlock's ranks: RSL-RL's own would start an NCCL
        group on cuda:<LOCAL_RANK> only; seedlock already started the group (gloo on CPU). From
        here RSL-RL's distributed PPO runs as written: parameters broadcast from rank 0 when
        ``learn`` starts, gradients and the adaptive learning rate's KL all-reduced."""
        ranks = self.run.ranks
        self.gpu_world_size, self.is_distributed = ranks.world_size, ranks.is_distributed
        self.gpu_local_rank, self.gpu_global_rank = ranks.local_rank, ranks.rank
        self.cfg["multi_gpu"] = (
            {"global_rank": ranks.rank, "local_rank": ranks.local_rank, "world_size": ranks.world_size}
            if ranks.is_distributed
            else None
        )

    def save(self, path: str, infos: dict | None = None) -> None:
        """Save into run_dir/checkpoints (not the TensorBoard dir), atomically."""
        state = self.alg.save()
        self.last_checkpoint = save_checkpoint(self.run, self.current_learning_iteration, state)

    def resume(self, checkpoint: Path) -> None:
        """Continue after the checkpoint's iteration: the models, optimizer and adaptive learning
        rate (``alg.load`` reads it back from the optimizer), then the task and every RNG, last."""
        payload = load_checkpoint(checkpoint, self.run)
        self.alg.load(payload["library"], None, strict=True)
        self.current_learning_iteration = int(payload["seedlock"]["iteration"]) + 1
        restore_run_state(self.run, payload)


def isaaclab_vec_env(run: TrainingRun) -> VecEnv:
    """task=isaaclab: Isaac Lab's own RSL-RL wrapper around the Isaac Lab env, as Isaac Lab's
    rsl_rl/train.py builds it (``clip_actions`` from the agent config, None when unset)."""
    from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper

    check_agent_inputs(run.env, "rsl_rl", agent_takes_images=run.cfg.agent.actor.class_name == "CNNModel")
    return RslRlVecEnvWrapper(run.env.env, clip_actions=run.cfg.agent.get("clip_actions"))
