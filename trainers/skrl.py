"""SKRL (skrl 2.x, PyTorch) adapter: skrl's PPO agent, models, RandomMemory and SequentialTrainer.

Recipe, as Isaac Lab's skrl workflow builds it: wrap the batched task as a skrl ``Wrapper``
(torch tensors in and out, ``terminated`` and ``truncated`` kept apart), build the Gaussian policy
and deterministic value with skrl's model instantiators (one shared network when
``agent.models.separate`` is false), a ``RandomMemory`` of ``rollouts`` steps and the PPO agent
from the agent YAML, and train with skrl's ``SequentialTrainer``. One seedlock iteration is
``rollouts`` env steps of every env plus one PPO update; the agent subclass fingerprints right
after each ``update`` and writes seedlock checkpoints there. skrl's own checkpoints are off;
its TensorBoard scalars go to ``run_dir/tensorboard``, once per iteration.

Seeding: skrl seeds only in ``skrl.utils.set_seed``, which only its ``Runner`` calls (trainers,
agents and memories never do). ``set_seed(None)`` draws a seed from OS entropy, and any call
re-seeds python/numpy/torch and sets ``cudnn.benchmark`` on and ``cudnn.deterministic`` off
(``deterministic=True`` instead forces ``use_deterministic_algorithms`` and ignores
``determinism.warn_only``), undoing what ``determinism.apply`` set. So the adapter builds the
components itself instead of using the Runner, and never calls ``set_seed``. The one seed skrl
keeps is ``skrl.config.torch.key`` (what its env wrappers pass to ``env.reset(seed=...)``;
``set_seed`` sets it, default 0), which the adapter sets to the run's resolved seed. Everything
random in skrl's PPO (weight init, action sampling, minibatch ``randperm``) draws from the torch
RNG that ``determinism`` seeded. The one draw outside it, ``Model.init_state_dict()`` sampling
dummy inputs from a gymnasium space seeded from OS entropy, is avoided by passing fixed inputs.

Time-outs reach skrl as ``truncated``. With ``time_limit_bootstrap: false`` (Isaac Lab's Cartpole
setting) skrl 2.x's GAE runs on through them, as if the episode went on into the reset state.
With ``true`` it bootstraps a truncated step with ``V(next_observations)``, but an auto-resetting
env returns the first observation of the next episode there; the agent then gets the last
observation of the finished episode instead (``StepResult.final_obs``, the same as ``obs`` for
the envs that did not reset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from tasks.task import BatchedTask
from tasks.isaaclab import check_agent_inputs, is_isaaclab
from trainers.distributed import Ranks, torchrun_env_hidden

# skrl reads torchrun's RANK/WORLD_SIZE when it is imported and starts an NCCL process group;
# seedlock started the group itself (gloo on CPU), so skrl is imported without them and gets the
# ranks in join_ranks.
with torchrun_env_hidden():
    from skrl import config as skrl_config
    from skrl.agents.torch import ExperimentCfg
    from skrl.agents.torch.ppo import PPO, PPO_CFG
    from skrl.envs.wrappers.torch import Wrapper
    from skrl.memories.torch import RandomMemory
    from skrl.models.torch import Model
    from skrl.resources.preprocessors.torch import RunningStandardScaler
    from skrl.resources.schedulers.torch import KLAdaptiveLR
    from skrl.trainers.torch import SequentialTrainer, SequentialTrainerCfg
    from skrl.utils.model_instantiators.torch import deterministic_model, gaussian_model, shared_model

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
from trainers.skrl_graphs import GraphedSkrlPpo

# Class names the agent YAML may give, as skrl's Runner resolves them (without its eval()).
SCHEDULERS = {"KLAdaptiveLR": KLAdaptiveLR}
PREPROCESSORS = {"RunningStandardScaler": RunningStandardScaler}
# Keys of the agent YAML that are not PPO_CFG fields.
NON_PPO_KEYS = ("max_iterations", "models", "rewards_shaper_scale")
FINAL_OBSERVATIONS = "final_observations"


def train(run: TrainingRun) -> TrainSummary:
    agent = build_agent(run)
    payload = load_checkpoint(Path(run.cfg.checkpoint), run) if run.cfg.checkpoint else None
    if payload is not None:
        agent.restore(payload["library"])
        agent.iteration = int(payload["seedlock"]["iteration"])
        agent.timestep_offset = (agent.iteration + 1) * agent.cfg.rollouts
    if agent.fast_path:
        agent.graphed = GraphedSkrlPpo(agent, agent.device)
    remaining = run.max_iterations - (agent.iteration + 1)
    if remaining > 0:
        timesteps = remaining * agent.cfg.rollouts
        trainer = SequentialTrainer(env=agent.env, agents=agent, cfg=trainer_config(run, timesteps))
        if payload is not None:
            # Last, after everything skrl builds (models draw their weights from the RNGs).
            restore_run_state(run, payload)
        try:
            trainer.train()
        finally:
            agent.close()
    return summarize(run, run.max_iterations, agent.env_steps(run.max_iterations - 1), agent.last_checkpoint)


def load_policy(run: TrainingRun, checkpoint: Path) -> Policy:
    agent = restored_agent(run, checkpoint)

    def act(obs: torch.Tensor) -> torch.Tensor:
        # What skrl's trainers evaluate with: the agent's preprocessing, then the mean action
        # (the agent also samples an action, a draw from the global torch RNG that is dropped).
        with torch.inference_mode():
            _, outputs = agent.act(obs.flatten(1), None, timestep=0, timesteps=0)
            return outputs["mean_actions"]

    return act


def policy_module(run: TrainingRun, checkpoint: Path) -> torch.nn.Module:
    """The deployable policy, obs -> deterministic action: the agent's observation preprocessor,
    then the policy's mean action (what ``outputs["mean_actions"]`` holds)."""
    agent = restored_agent(run, checkpoint)
    return SkrlPolicy(agent._observation_preprocessor, agent.policy).eval()


def restored_agent(run: TrainingRun, checkpoint: Path) -> SeedlockPPO:
    """The agent with the checkpoint's models and preprocessors, in evaluation mode (play and export)."""
    agent = build_agent(run)
    agent.restore(load_checkpoint(checkpoint, run)["library"])
    agent.enable_training_mode(False, apply_to_models=True)
    return agent


class SkrlPolicy(torch.nn.Module):
    def __init__(self, preprocessor: Any, policy: Model) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.policy.compute({"observations": self.preprocessor(obs.flatten(1))}, role="policy")
        return mean


def build_agent(run: TrainingRun) -> SeedlockPPO:
    """The wrapped env, models and PPO agent of a run, from ``run.cfg.agent``."""
    skrl_config.torch.key = run.seed  # skrl's own seed slot: the run's seed, never skrl's default 0
    join_ranks(run.ranks)
    env = isaaclab_env(run) if is_isaaclab(run.env) else SkrlEnv(run.env)
    agent_cfg = OmegaConf.to_container(run.cfg.agent, resolve=True)
    assert isinstance(agent_cfg, dict)
    policy, value = build_models(env, agent_cfg["models"])
    ppo_cfg = ppo_config(run, env, agent_cfg)
    memory = RandomMemory(memory_size=ppo_cfg.rollouts, num_envs=env.num_envs, device=env.device)
    return SeedlockPPO(
        run=run,
        env=env,
        models={"policy": policy, "value": value},
        memory=memory,
        observation_space=env.observation_space,
        state_space=env.state_space,
        action_space=env.action_space,
        device=env.device,
        cfg=ppo_cfg,
    )


def join_ranks(ranks: Ranks) -> None:
    """skrl's distributed state, from seedlock's ranks (skrl has no setters: it reads them from
    the environment at import). From here skrl's distributed PPO runs as written: the agent
    broadcasts rank 0's parameters when it is built, gradients and the KL are all-reduced, and
    ranks > 0 write no TensorBoard scalars and show no progress bar."""
    torch_config = skrl_config.torch
    torch_config._rank, torch_config._local_rank = ranks.rank, ranks.local_rank
    torch_config._world_size, torch_config._is_distributed = ranks.world_size, ranks.is_distributed


def build_models(env: SkrlEnv, models_cfg: dict[str, Any]) -> tuple[Model, Model]:
    """Gaussian policy and deterministic value from skrl's instantiators; one shared model
    with two heads when ``separate`` is false (Isaac Lab's Cartpole setting)."""
    models_cfg = dict(models_cfg)
    separate = bool(models_cfg.pop("separate", True))
    spaces = {
        "observation_space": env.observation_space,
        "state_space": env.state_space,
        "action_space": env.action_space,
        "device": env.device,
    }
    if separate:
        policy = gaussian_model(**spaces, **models_cfg["policy"])
        value = deterministic_model(**spaces, **models_cfg["value"])
    else:
        policy = value = shared_model(
            **spaces,
            structure=["GaussianMixin", "DeterministicMixin"],
            roles=["policy", "value"],
            parameters=[models_cfg["policy"], models_cfg["value"]],
        )
    # Materialise the lazy layers (weights from the seeded torch RNG) with fixed inputs: without
    # them skrl samples dummy inputs from gymnasium spaces seeded from OS entropy.
    inputs = {
        "observations": torch.zeros(1, env.num_obs, device=env.device),
        "states": None,
        "taken_actions": torch.zeros(1, env.num_actions, device=env.device),
    }
    policy.init_state_dict(inputs, role="policy")
    value.init_state_dict(inputs, role="value")
    return policy, value


def ppo_config(run: TrainingRun, env: SkrlEnv, agent_cfg: dict[str, Any]) -> PPO_CFG:
    """PPO_CFG from the agent YAML: class names resolved, sizes and devices filled in, and the
    experiment settings seedlock owns (TensorBoard dir, once per iteration; no skrl checkpoints)."""
    cfg = {key: value for key, value in agent_cfg.items() if key not in NON_PPO_KEYS}
    if cfg.get("learning_rate_scheduler") is not None:
        cfg["learning_rate_scheduler"] = _lookup(
            SCHEDULERS, "learning_rate_scheduler", cfg["learning_rate_scheduler"]
        )
    sizes = {"observation": env.observation_space, "state": env.state_space, "value": 1}
    for name, size in sizes.items():
        key = f"{name}_preprocessor"
        if cfg.get(key) is not None:
            cfg[key] = _lookup(PREPROCESSORS, key, cfg[key])
            cfg[f"{key}_kwargs"] = {**(cfg.get(f"{key}_kwargs") or {}), "size": size, "device": env.device}
    scale = agent_cfg.get("rewards_shaper_scale")
    if scale is not None and scale != 1.0:
        cfg["rewards_shaper"] = RewardScale(float(scale))
    rollouts = int(cfg.get("rollouts", PPO_CFG.rollouts))
    cfg["experiment"] = ExperimentCfg(
        directory=str(run.ranks.files_dir(run.run_dir)),
        experiment_name=run.tensorboard_dir.name,
        write_interval=rollouts,  # TensorBoard scalars once per iteration, right after the update
        checkpoint_interval=0,  # seedlock writes the checkpoints
    )
    return PPO_CFG(**cfg)


def trainer_config(run: TrainingRun, timesteps: int) -> SequentialTrainerCfg:
    library = run.cfg.trainer.library
    return SequentialTrainerCfg(
        timesteps=timesteps,
        headless=True,  # the embedded task does not render
        # skrl's per-step tqdm bar; null: skrl's rule, shown only on an interactive terminal
        disable_progressbar=library.get("disable_progressbar"),
        close_environment_at_exit=False,  # the run owns the env; no atexit hook logging "Closing environment"
    )


def _lookup(table: dict[str, type], key: str, name: str) -> type:
    if name not in table:
        raise ValueError(f"agent.{key}={name!r} is not supported by the skrl adapter; choices: {', '.join(table)}.")
    return table[name]


class RewardScale:
    """Isaac Lab's ``rewards_shaper_scale``: skrl's rewards shaper multiplying by a constant."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, rewards: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return rewards * self.scale


class SkrlEnv(Wrapper):
    """A seedlock batched task as a skrl single-agent env: (num_envs, 1) rewards, terminated and
    truncated; the last observation of each finished episode in ``info['final_observations']``."""

    def __init__(self, env: BatchedTask) -> None:
        super().__init__(env)

    @property
    def num_obs(self) -> int:
        return self._env.num_obs

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    def reset(self) -> tuple[torch.Tensor, dict[str, Any]]:
        # The task resets itself (at construction and per env when an episode ends), so this only
        # hands back the current observations, as skrl's Isaac Lab wrapper does after its first reset.
        return self._env.observations().flatten(1), {}

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Observations flattened to (num_envs, values), as skrl's memory stores them; its models
        unflatten them to the observation space's shape (C, H, W for camera tasks)."""
        result = self._env.step(actions)
        return (
            result.obs.flatten(1),
            result.reward.view(-1, 1),
            result.terminated.view(-1, 1),
            result.truncated.view(-1, 1),
            {FINAL_OBSERVATIONS: result.final_obs.flatten(1)},
        )

    def state(self) -> torch.Tensor | None:
        return None  # no separate critic state: the value sees the observations

    def render(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        pass


class SeedlockPPO(PPO):
    """skrl's PPO that fingerprints after every update and writes seedlock checkpoints."""

    def __init__(self, *, run: TrainingRun, env: SkrlEnv, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.env = env
        self.iteration = -1  # the last finished iteration
        self.timestep_offset = 0  # env steps per env before this process's first (continued runs)
        self.last_checkpoint: Path | None = None
        self.fast_path = check_fast_path(run.cfg)
        self.graphed: GraphedSkrlPpo | None = None  # trainer.fast_path's CUDA-graph loop, in training

    def act(
        self, observations: torch.Tensor, states: torch.Tensor | None, *, timestep: int, timesteps: int
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.graphed is not None and self.training:
            return self.graphed.act(observations, states)
        return super().act(observations, states, timestep=timestep, timesteps=timesteps)

    def env_steps(self, iteration: int) -> int:
        """Env steps of the whole run after ``iteration``: every rank's envs."""
        return (iteration + 1) * self.cfg.rollouts * self.env.num_envs * self.run.ranks.world_size

    def record_transition(self, *, next_observations: torch.Tensor, infos: Any, **kwargs: Any) -> None:
        if self.cfg.time_limit_bootstrap:
            # Bootstrap time-outs from the episode's last observation, not the next episode's first.
            next_observations = infos[FINAL_OBSERVATIONS]
        if not self.fast_path:
            super().record_transition(next_observations=next_observations, infos=infos, **kwargs)
            return
        # trainer.fast_path: skrl's per-step reward tracking (host syncs) runs only when
        # write_interval > 0; its loss scalars are tracked in update, which this leaves alone.
        write_interval, self.write_interval = self.write_interval, 0
        try:
            super().record_transition(next_observations=next_observations, infos=infos, **kwargs)
        finally:
            self.write_interval = write_interval

    def update(self, *, timestep: int, timesteps: int) -> None:
        if self.graphed is not None:
            self.graphed.update()
        else:
            super().update(timestep=timestep, timesteps=timesteps)
        self.iteration += 1
        record_iteration(
            self.run,
            self.iteration,
            self.env_steps(self.iteration),
            modules=self.fingerprint_modules(),
            optimizer_state=self.optimizer.state_dict(),
            losses=self.last_losses(),
        )
        if checkpoint_due(self.run, self.iteration):
            self.last_checkpoint = save_checkpoint(self.run, self.iteration, self.library_state())

    def fingerprint_modules(self) -> dict[str, torch.nn.Module]:
        """Models and running scalers (their statistics steer the policy and the value targets)."""
        modules = {"policy": self.policy}
        if self.value is not self.policy:
            modules["value"] = self.value
        for name in ("observation_preprocessor", "state_preprocessor", "value_preprocessor"):
            if name in self.checkpoint_modules:
                modules[name] = self.checkpoint_modules[name]
        return modules

    def last_losses(self) -> dict[str, float]:
        """The update's mean losses, as skrl tracks them for TensorBoard."""
        names = {"policy_loss": "Loss / Policy loss", "value_loss": "Loss / Value loss",
                 "entropy_loss": "Loss / Entropy loss"}
        return {key: self.tracking_data[tag][-1] for key, tag in names.items() if self.tracking_data.get(tag)}

    def library_state(self) -> dict[str, Any]:
        """State dicts only (tensors and plain containers), loadable with ``weights_only=True``."""
        state = {name: module.state_dict() for name, module in self._stateful_modules().items()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        for name, module in self._stateful_modules().items():
            module.load_state_dict(state[name])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def _stateful_modules(self) -> dict[str, Any]:
        # skrl's checkpoint_modules, less the value model when it is the (shared) policy
        return {
            name: module for name, module in self.checkpoint_modules.items()
            if not (name == "value" and module is self.policy)
        }

    def write_tracking_data(self, *, timestep: int, timesteps: int) -> None:
        # A continued run's TensorBoard steps count from the checkpoint's, not from 0.
        super().write_tracking_data(timestep=timestep + self.timestep_offset, timesteps=timesteps)

    def close(self) -> None:
        """Flush and close skrl's TensorBoard writer (skrl never closes it)."""
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


def isaaclab_env(run: TrainingRun) -> Wrapper:
    """task=isaaclab: Isaac Lab's own skrl wrapper around the Isaac Lab env (skrl's "isaaclab"
    wrapper), as Isaac Lab's skrl/train.py builds it; built after ``skrl_config.torch.key`` is set,
    since it resets the env with that seed. :func:`build_models` sizes its fixed inputs with
    ``num_obs``/``num_actions``, which Isaac Lab's envs lack: the flat sizes of the spaces."""
    import gymnasium
    from isaaclab_rl.skrl import SkrlVecEnvWrapper

    models = str(OmegaConf.to_container(run.cfg.agent.models))
    check_agent_inputs(run.env, "skrl", agent_takes_images="conv2d" in models)
    env = SkrlVecEnvWrapper(run.env.env, ml_framework="torch", wrapper="isaaclab")
    env.num_obs = gymnasium.spaces.flatdim(env.observation_space)
    env.num_actions = gymnasium.spaces.flatdim(env.action_space)
    return env
