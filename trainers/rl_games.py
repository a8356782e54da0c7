"""rl_games (rl-games 1.6.x) adapter: the ``Runner`` with continuous PPO (``a2c_continuous``).

Recipe, as Isaac Lab's rl_games workflow does it: wrap the batched task as a GPU-style vec env
(torch tensors in and out, observations as ``{"obs": tensor}``, time-outs in ``infos["time_outs"]``
so rl_games bootstraps them when ``value_bootstrap`` is on), register it with
``vecenv.register`` + ``env_configurations.register``, build rl_games' own ``params`` dict from the
agent YAML and train with ``Runner.run``. One seedlock iteration is one rl_games epoch
(``horizon_length`` x ``num_envs`` steps, then ``mini_epochs`` of updates); the agent's
``train_epoch`` is extended to fingerprint after every epoch's update and to write seedlock
checkpoints (rl_games' own ``.pth`` saves, best-reward saves and ``score_to_win`` early exit are
off). rl_games' TensorBoard summaries go to ``run_dir/tensorboard/summaries``.

Seeding: ``Runner.load_config`` seeds torch, CUDA, numpy and python ``random`` from
``params["seed"]`` itself, and when that key is missing it draws ``int(time.time())``, a seed
recorded nowhere. The adapter therefore sets ``params["seed"]`` to the run's resolved seed: rl_games
re-seeds the global RNGs with the value ``determinism.apply`` already used, so the state it leaves
is the one seedlock seeded (seed 0 it skips, leaving the same state as well), and it never invents
one. The agent YAML may not set ``seed`` itself.

Determinism: rl_games 1.6.5 has no ``torch_deterministic`` switch of its own, but its
``Runner.__init__`` switches TF32 on (cuBLAS, cuDNN, oneDNN via float32 matmul precision "high")
and ``cudnn.benchmark`` on for the whole process, which undoes ``torch_deterministic=true``; and
``load_config`` sets ``torch.set_num_threads(min(4, cpus))`` ("torch_threads: auto"), which undoes
``determinism.num_threads``. The adapter's runner leaves all of those flags to ``determinism`` (the
run config's ``torch_deterministic`` decides them) and passes ``torch_threads: 0`` (leave as is).
``torch.compile`` (on by default in the Runner) is off: compiled CPU kernels need a C++
toolchain, may round differently from eager, and rename every parameter (``_orig_mod.``).
Everything else rl_games draws (weight init, action sampling) comes from the global torch RNG.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import torch
from omegaconf import OmegaConf
from rl_games.algos_torch import a2c_continuous, players, torch_ext
from rl_games.common import env_configurations, object_factory, vecenv
from rl_games.common.algo_observer import DefaultAlgoObserver
from rl_games.common.ivecenv import IVecEnv
from rl_games.torch_runner import Runner

from tasks.task import BatchedTask
from tasks.isaaclab import check_agent_inputs, is_isaaclab
from trainers.fast_path import check_fast_path
from trainers.interface import (
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
from trainers.rl_games_graphs import GraphedRlGames
from trainers.run_config import ConfigError

ENV_NAME = "seedlock"  # the env_configurations / vecenv key ("rlgpu" in Isaac Lab)
EXPERIMENT_NAME = "tensorboard"  # rl_games' <train_dir>/<experiment>: run_dir/tensorboard
# Keys of rl_games' params that the run config decides: the agent YAML may not set them.
RUN_OWNED = {
    "seed": "the top-level seed= (rl_games is given the run's resolved seed)",
    "config.max_epochs": "the top-level max_iterations= (agent.max_iterations sets its default)",
    "config.max_frames": "the top-level max_iterations=",
    "config.max_steps": "the top-level max_iterations=",
}


def train(run: TrainingRun) -> TrainSummary:
    resume = load_checkpoint(Path(run.cfg.checkpoint), run) if run.cfg.checkpoint else None
    start = int(resume["seedlock"]["iteration"]) + 1 if resume else 0
    runner = SeedlockRunner(run, resume)
    if start < run.max_iterations:
        runner.load({"params": rl_games_params(run)})
        with cuda_device_selection_skipped(run):
            runner.run({"train": True, "play": False})
        if runner.agent is not None and runner.agent.writer is not None:
            # rl_games never closes its tensorboardX writer: flush it now, not at interpreter exit
            # (a sweep's joblib worker lives on to the next job).
            runner.agent.writer.close()
    last_checkpoint = runner.agent.last_checkpoint if runner.agent else None
    return summarize(run, run.max_iterations, env_steps(run, run.max_iterations - 1), last_checkpoint)


def load_policy(run: TrainingRun, checkpoint: Path) -> Policy:
    player, clip_observations = restored_player(run, checkpoint)
    player.has_batch_dimension = True

    def act(obs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            clipped = obs.to(player.device).clamp(-clip_observations, clip_observations)  # as the vec env clips
            return player.get_action(clipped, is_deterministic=True)

    return act


@contextlib.contextmanager
def cuda_device_selection_skipped(run: TrainingRun) -> Iterator[None]:
    """A distributed run on the CPU: rl_games' ``train`` selects ``cuda:<local rank>`` for a
    multi-GPU run unconditionally, which fails without CUDA. seedlock places every rank itself
    (trainers/distributed.py), so the call is skipped while rl_games trains on the CPU."""
    if not (run.ranks.is_distributed and run.device == "cpu"):
        yield
        return
    set_device = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.set_device = set_device


def policy_module(run: TrainingRun, checkpoint: Path) -> torch.nn.Module:
    """The deployable policy, obs -> deterministic action, as ``PpoPlayerContinuous.get_action``
    computes it: clip the observation, normalise it, the network's mean, then clamp to [-1, 1]
    and rescale to the action bounds."""
    player, clip_observations = restored_player(run, checkpoint)
    return RlGamesPolicy(player, clip_observations).eval()


def restored_player(run: TrainingRun, checkpoint: Path) -> tuple[players.PpoPlayerContinuous, float]:
    """rl_games' player with the checkpoint's model (play and export), and the observation clip
    its vec env applied in training (the player acts on clipped observations)."""
    state = load_checkpoint(checkpoint, run)["library"]
    params = rl_games_params(run)
    clipping = params.get("env", {})
    vec_env = isaaclab_vec_env(run, clipping) if is_isaaclab(run.env) else RlGamesVecEnv(run.env, clipping)
    # env_info given: the player builds the model for these spaces and creates no env of its own.
    params["config"]["env_info"] = vec_env.get_env_info()
    player = players.PpoPlayerContinuous(params=params)
    player.model.load_state_dict(state["model"])  # the normalizers' running mean/std included
    return player, float(clipping.get("clip_observations", math.inf))


class RlGamesPolicy(torch.nn.Module):
    """rl_games' continuous policy as one traceable module. The observation normaliser is
    applied from its buffers with RunningMeanStd's own eval formula, since rl_games scripts that
    module with torch.jit.script and a traced module cannot call into it."""

    def __init__(self, player: players.PpoPlayerContinuous, clip_observations: float) -> None:
        super().__init__()
        self.network = player.model.a2c_network
        self.clip_observations = clip_observations
        self.clip_actions = bool(player.clip_actions)
        self.normalize = bool(player.model.normalize_input)
        rms = player.model.running_mean_std if self.normalize else None
        if rms is not None and (rms.per_channel or rms.norm_only):
            raise NotImplementedError("export of rl_games' per-channel or norm-only observation normaliser")
        self.epsilon = float(rms.epsilon) if rms is not None else 0.0
        self.register_buffer("obs_mean", rms.running_mean.clone().float() if rms is not None else torch.zeros(0))
        self.register_buffer("obs_var", rms.running_var.clone().float() if rms is not None else torch.zeros(0))
        self.register_buffer("actions_low", player.actions_low.clone())
        self.register_buffer("actions_high", player.actions_high.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.clamp(-self.clip_observations, self.clip_observations)
        if self.normalize:
            obs = ((obs - self.obs_mean) / torch.sqrt(self.obs_var + self.epsilon)).clamp(-5.0, 5.0)
        mu = self.network({"obs": obs, "is_train": False})[0]
        if not self.clip_actions:
            return mu
        return players.rescale_actions(self.actions_low, self.actions_high, mu.clamp(-1.0, 1.0))


def rl_games_params(run: TrainingRun) -> dict[str, Any]:
    """rl_games' ``params`` (the body of Isaac Lab's ``params:`` block) from the agent YAML, plus
    the keys that seedlock owns."""
    params = OmegaConf.to_container(run.cfg.agent, resolve=True)
    assert isinstance(params, dict)
    params.pop("max_iterations", None)  # seedlock's top-level max_iterations is the run's total
    for dotted, instead in RUN_OWNED.items():
        section, _, key = dotted.rpartition(".")
        if key in (params.get(section, {}) if section else params):
            raise ConfigError(f"agent.{dotted} is set by seedlock, not the agent config; use {instead}.")
    params["seed"] = run.seed
    params["torch_threads"] = 0  # determinism.num_threads decides, not rl_games' "auto"
    library = run.cfg.trainer.library
    config = params["config"]
    config.update(
        env_name=ENV_NAME,
        num_actors=run.env.num_envs,
        device=run.device,
        device_name=run.device,
        multi_gpu=False,  # a distributed run's ranks are set on the agent (SeedlockA2CAgent.join_ranks)
        max_epochs=run.max_iterations,
        torch_compile=False,
        train_dir=str(run.ranks.files_dir(run.run_dir)),
        full_experiment_name=EXPERIMENT_NAME,
        # seedlock writes the checkpoints; rl_games' periodic and best-reward saves stay off, and
        # with them score_to_win, which would end a run before max_iterations.
        save_frequency=0,
        save_best_after=run.max_iterations + 1,
        print_stats=bool(library.print_stats),
    )
    if not run.ranks.is_main:
        # As rl_games' own multi-GPU set-up: ranks > 0 print nothing and follow rank 0's learning
        # rate, which update_lr broadcasts.
        config.update(print_stats=False, lr_schedule=None)
    return params


def env_steps(run: TrainingRun, iteration: int) -> int:
    """Env steps of the whole run after ``iteration``: every rank's envs."""
    return (iteration + 1) * int(run.cfg.agent.config.horizon_length) * run.env.num_envs * run.ranks.world_size


class RlGamesVecEnv(IVecEnv):
    """A seedlock batched task as an rl_games vec env that stays in torch (like Isaac Lab's
    RlGamesVecEnvWrapper): observations and actions clipped as the agent YAML's ``env`` says."""

    def __init__(self, env: BatchedTask, clipping: dict[str, float]) -> None:
        self.env = env
        self.clip_observations = float(clipping.get("clip_observations", math.inf))
        self.clip_actions = float(clipping.get("clip_actions", math.inf))

    def get_env_info(self) -> dict[str, Any]:
        obs_shape = self.env.observation_space.shape
        action_shape = self.env.action_space.shape
        return {
            "observation_space": gymnasium.spaces.Box(-self.clip_observations, self.clip_observations, obs_shape),
            # rl_games rescales its [-1, 1] actions to these bounds: the clip range (Isaac Lab's
            # wrapper), or the task's own bounds when the agent config sets no clip (task=gym).
            "action_space": (
                gymnasium.spaces.Box(-self.clip_actions, self.clip_actions, action_shape)
                if math.isfinite(self.clip_actions)
                else self.env.action_space
            ),
            "agents": 1,
            "value_size": 1,
        }

    def clip_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.clamp(-self.clip_observations, self.clip_observations)

    def reset(self) -> dict[str, torch.Tensor]:
        # The task resets itself (built reset, then auto-reset); this is the current observation.
        return {"obs": self.clip_obs(self.env.observations())}

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict]:
        actions = actions.detach().clamp(-self.clip_actions, self.clip_actions).to(self.env.device)
        result = self.env.step(actions)
        dones = (result.terminated | result.truncated).to(torch.uint8)
        # With value_bootstrap, rl_games adds gamma * V(s) to the reward where time_outs is set,
        # so a time-out is not scored as a failure.
        return {"obs": self.clip_obs(result.obs)}, result.reward, dones, {"time_outs": result.truncated}


class SeedlockRunner(Runner):
    """rl_games' Runner whose ``a2c_continuous`` is :class:`SeedlockA2CAgent`.

    ``Runner.__init__`` is not called: besides building the factories below it turns TF32 and
    cudnn.benchmark on process-wide, which is ``determinism``'s call (see the module docstring).
    """

    def __init__(self, run: TrainingRun, resume: dict[str, Any] | None = None) -> None:
        self.agent: SeedlockA2CAgent | None = None
        clipping = OmegaConf.to_container(run.cfg.agent.get("env", {}))
        self.vec_env = isaaclab_vec_env(run, clipping) if is_isaaclab(run.env) else RlGamesVecEnv(run.env, clipping)
        vecenv.register(ENV_NAME, lambda config_name, num_actors, **kwargs: self.vec_env)
        env_configurations.register(ENV_NAME, {"vecenv_type": ENV_NAME, "env_creator": lambda **kwargs: self.vec_env})

        def make_agent(**kwargs: Any) -> SeedlockA2CAgent:
            self.agent = SeedlockA2CAgent(run=run, resume=resume, **kwargs)
            return self.agent

        self.algo_factory = object_factory.ObjectFactory()
        self.algo_factory.register_builder("a2c_continuous", make_agent)
        self.player_factory = object_factory.ObjectFactory()
        self.player_factory.register_builder("a2c_continuous", lambda **kwargs: players.PpoPlayerContinuous(**kwargs))
        self.algo_observer = DefaultAlgoObserver()


class SeedlockA2CAgent(a2c_continuous.A2CAgent):
    """rl_games' continuous PPO agent that fingerprints and checkpoints after every epoch.

    ``train`` calls ``update_epoch`` (epoch_num += 1, so epoch_num is 1-based) and then
    ``train_epoch``, which plays ``horizon_length`` steps and runs every mini-epoch update; when it
    returns, seedlock iteration ``epoch_num - 1`` is complete.
    """

    def __init__(self, base_name: str, params: dict[str, Any], run: TrainingRun,
                 resume: dict[str, Any] | None = None) -> None:
        super().__init__(base_name, params)
        # rl_games made <experiment>/nn for its .pth files, which seedlock does not write.
        with contextlib.suppress(OSError):
            os.rmdir(self.nn_dir)
        self.run = run
        if run.ranks.is_distributed:
            self.join_ranks()
        self.last_checkpoint: Path | None = None
        if resume is not None:
            self.restore_seedlock(resume)
        if check_fast_path(run.cfg):
            GraphedRlGames(self, self.ppo_device).install()  # trainers/rl_games_graphs.py

    def join_ranks(self) -> None:
        """rl_games' multi-GPU state, from seedlock's ranks. rl_games' own set-up (``multi_gpu``
        in the config) would start an NCCL group on cuda:<LOCAL_RANK>; seedlock already started
        the group (gloo on CPU). From here rl_games' distributed PPO runs as written: parameters
        broadcast from rank 0 when training starts, gradients and KL all-reduced, rank 0's
        learning rate broadcast. Ranks > 0 keep no TensorBoard writer, as in rl_games."""
        ranks = self.run.ranks
        self.multi_gpu = True
        self.global_rank, self.local_rank, self.world_size = ranks.rank, ranks.local_rank, ranks.world_size
        if not ranks.is_main:
            self.writer.close()
            shutil.rmtree(self.experiment_dir)  # this rank's own, under run_dir/ranks/<r>
            self.writer = None

    def train_epoch(self) -> tuple:
        result = super().train_epoch()
        _, _, _, _, a_losses, c_losses, b_losses, entropies, kls, _, _ = result
        iteration = self.epoch_num - 1
        losses = {"actor": a_losses, "critic": c_losses, "entropy": entropies, "kl": kls, "bounds": b_losses}
        record_iteration(
            self.run, iteration, env_steps(self.run, iteration),
            modules={"model": self.model},
            optimizer_state=self.optimizer.state_dict(),
            losses={key: torch_ext.mean_list(values).item() for key, values in losses.items() if values},
        )
        if checkpoint_due(self.run, iteration):
            self.last_checkpoint = save_checkpoint(self.run, iteration, self.seedlock_state(iteration))
        return result

    def seedlock_state(self, iteration: int) -> dict[str, Any]:
        """rl_games' full state (model with its normalizers, optimizer, epoch) as plain tensors and
        numbers, so it loads with ``torch.load(weights_only=True)``; plus the adaptive learning
        rate, which rl_games' own checkpoints lose."""
        state = self.get_full_state_weights()
        state.pop("env_state", None)  # the task keeps no curriculum state
        state["frame"] = env_steps(self.run, iteration)  # rl_games adds this epoch's frames later
        state["last_mean_rewards"] = float(state["last_mean_rewards"])
        state["last_lr"] = float(self.last_lr)
        state["entropy_coef"] = float(self.entropy_coef)
        return state

    def restore_seedlock(self, payload: dict[str, Any]) -> None:
        state = payload["library"]
        self.set_full_state_weights(state, set_epoch=True)
        self.last_lr = state["last_lr"]
        self.entropy_coef = state["entropy_coef"]
        self.update_lr(self.last_lr)
        # Last, after rl_games built the model (its weights drew from the RNGs): the task and
        # every RNG as the checkpointed run left them. Runner.run seeded before building the agent.
        restore_run_state(self.run, payload)

    def save(self, fn: str) -> None:
        """rl_games' own saves (a pickled .pth when max_epochs ends) are not written: seedlock's
        checkpoints are, in :meth:`train_epoch`."""


def isaaclab_vec_env(run: TrainingRun, clipping: dict[str, float]) -> IVecEnv:
    """task=isaaclab: Isaac Lab's own rl_games wrapper around the Isaac Lab env, with the agent
    config's clipping, as Isaac Lab's rl_games/train.py builds it. :class:`SeedlockRunner` registers
    it under ``ENV_NAME`` as it does the embedded tasks' vec env (Isaac Lab registers its
    ``RlGamesGpuEnv``, which hands rl_games this same wrapper)."""
    from isaaclab_rl.rl_games import RlGamesVecEnvWrapper

    check_agent_inputs(run.env, "rl_games", agent_takes_images="cnn" in run.cfg.agent.network)
    clip_obs = float(clipping.get("clip_observations", math.inf))
    return RlGamesVecEnvWrapper(run.env.env, run.device, clip_obs, float(clipping.get("clip_actions", math.inf)))
