"""skrl by hand: a skrl ``Wrapper`` around the task, models from skrl's instantiators, a
``RandomMemory``, ``PPO`` and the ``SequentialTrainer``, as skrl's Isaac Lab examples build them
(the agent YAML's class names looked up by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from skrl.agents.torch import ExperimentCfg
from skrl.agents.torch.ppo import PPO, PPO_CFG
from skrl.envs.wrappers.torch import Wrapper
from skrl.memories.torch import RandomMemory
from skrl.resources.preprocessors.torch import RunningStandardScaler
from skrl.resources.schedulers.torch import KLAdaptiveLR
from skrl.trainers.torch import SequentialTrainer, SequentialTrainerCfg
from skrl.utils.model_instantiators.torch import deterministic_model, gaussian_model, shared_model


def rollout_steps(agent: dict[str, Any]) -> int:
    return int(agent["rollouts"])


class TaskEnv(Wrapper):
    def reset(self) -> tuple[torch.Tensor, dict]:
        return self._env.observations(), {}

    def step(self, actions: torch.Tensor) -> tuple:
        result = self._env.step(actions)
        return result.obs, result.reward.view(-1, 1), result.terminated.view(-1, 1), result.truncated.view(-1, 1), {}

    def state(self) -> None:
        return None

    def render(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        pass


def train(env: Any, agent: dict[str, Any], iterations: int, device: str, log_dir: Path,
          checkpoint_interval: int, seed: int) -> None:
    wrapped = TaskEnv(env)
    models = agent["models"]
    spaces = {"observation_space": wrapped.observation_space, "state_space": wrapped.state_space,
              "action_space": wrapped.action_space, "device": wrapped.device}
    if models.get("separate", True):
        policy, value = gaussian_model(**spaces, **models["policy"]), deterministic_model(**spaces, **models["value"])
    else:
        policy = value = shared_model(**spaces, structure=["GaussianMixin", "DeterministicMixin"], roles=["policy", "value"],
                                      parameters=[models["policy"], models["value"]])
    cfg = {key: value for key, value in agent.items() if key not in ("max_iterations", "models", "rewards_shaper_scale")}
    scale = agent["rewards_shaper_scale"]
    cfg["rewards_shaper"] = lambda rewards, *args, **kwargs: rewards * scale
    cfg["learning_rate_scheduler"] = KLAdaptiveLR
    cfg["observation_preprocessor"] = cfg["value_preprocessor"] = RunningStandardScaler
    cfg["observation_preprocessor_kwargs"] = {"size": wrapped.observation_space, "device": wrapped.device}
    cfg["value_preprocessor_kwargs"] = {"size": 1, "device": wrapped.device}
    rollouts = int(cfg["rollouts"])
    cfg["experiment"] = ExperimentCfg(directory=str(log_dir), experiment_name="bench", write_interval=rollouts,
                                      checkpoint_interval=checkpoint_interval * rollouts)
    memory = RandomMemory(memory_size=rollouts, num_envs=wrapped.num_envs, device=wrapped.device)
    ppo = PPO(models={"policy": policy, "value": value}, memory=memory, observation_space=wrapped.observation_space,
              state_space=wrapped.state_space, action_space=wrapped.action_space, device=wrapped.device, cfg=PPO_CFG(**cfg))
    trainer_cfg = SequentialTrainerCfg(timesteps=iterations * rollouts, headless=True, disable_progressbar=True,
                                       close_environment_at_exit=False)
    SequentialTrainer(env=wrapped, agents=ppo, cfg=trainer_cfg).train()
    if getattr(ppo, "writer", None) is not None:
        ppo.writer.close()  # skrl never closes it; its thread would write into the removed run dir
