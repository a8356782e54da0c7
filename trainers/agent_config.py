"""Checks of the agent config (``conf/agent/<task>/<trainer>.yaml`` plus ``agent.*`` overrides)
made when the run config is composed, before the env or the library's agent is built.

The agent config is the library's own dict, typed ``Dict[str, Any]`` in the schema, so a string
where a learning rate belongs or a negative discount reaches the library unchecked: the library
then fails deep inside its constructor, or worse, trains with it. The common PPO hyperparameters
of each library are checked here by range; what is left to the library's constructor is turned
into one paragraph by :func:`construction_error`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainers.run_config import ConfigError


class AgentConfigError(ConfigError):
    """An agent-config value the library cannot train with."""


# (what the value must be, the test). bool is excluded from numbers: YAML's `true` is not a rate.
Rule = tuple[str, Callable[[Any], bool]]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE: Rule = ("a number > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE: Rule = ("a number >= 0", lambda v: _number(v) and v >= 0)
FRACTION: Rule = ("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1)
COUNT: Rule = ("an integer >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1)
# SB3's rates and clip ranges may also be a schedule string, checked by the sb3 adapter.
POSITIVE_OR_SCHEDULE: Rule = (
    "a number > 0 or 'lin_<initial value>'", lambda v: isinstance(v, str) or (_number(v) and v > 0)
)

# The PPO hyperparameters each library reads, by their key in its agent config.
HYPERPARAMETERS: dict[str, dict[str, Rule]] = {
    "rsl_rl": {
        "num_steps_per_env": COUNT,
        "algorithm.learning_rate": POSITIVE,
        "algorithm.gamma": FRACTION,
        "algorithm.lam": FRACTION,
        "algorithm.clip_param": POSITIVE,
        "algorithm.entropy_coef": NON_NEGATIVE,
        "algorithm.value_loss_coef": NON_NEGATIVE,
        "algorithm.num_learning_epochs": COUNT,
        "algorithm.num_mini_batches": COUNT,
        "algorithm.max_grad_norm": POSITIVE,
        "algorithm.desired_kl": POSITIVE,
    },
    "rl_games": {
        "config.learning_rate": POSITIVE,
        "config.gamma": FRACTION,
        "config.tau": FRACTION,
        "config.e_clip": POSITIVE,
        "config.entropy_coef": NON_NEGATIVE,
        "config.critic_coef": NON_NEGATIVE,
        "config.grad_norm": POSITIVE,
        "config.kl_threshold": POSITIVE,
        "config.horizon_length": COUNT,
        "config.mini_epochs": COUNT,
        "config.minibatch_size_per_env": COUNT,
        "config.minibatch_size": COUNT,
        "config.seq_length": COUNT,
    },
    "sb3": {
        "learning_rate": POSITIVE_OR_SCHEDULE,
        "clip_range": POSITIVE_OR_SCHEDULE,
        "n_steps": COUNT,
        "n_minibatches": COUNT,
        "batch_size": COUNT,
        "n_epochs": COUNT,
        "gamma": FRACTION,
        "gae_lambda": FRACTION,
        "ent_coef": NON_NEGATIVE,
        "vf_coef": NON_NEGATIVE,
        "max_grad_norm": POSITIVE,
    },
    "skrl": {
        "rollouts": COUNT,
        "learning_epochs": COUNT,
        "mini_batches": COUNT,
        "discount_factor": FRACTION,
        "gae_lambda": FRACTION,
        "learning_rate": POSITIVE,
        "grad_norm_clip": NON_NEGATIVE,
        "ratio_clip": POSITIVE,
        "value_clip": NON_NEGATIVE,
        "entropy_loss_scale": NON_NEGATIVE,
        "value_loss_scale": NON_NEGATIVE,
        "rewards_shaper_scale": NON_NEGATIVE,
    },
}

# Keys the run config owns, wherever they appear in an agent config: the library would take a
# second seed or device behind the run config's back.
RUN_OWNED_ANYWHERE = {"seed": "seed=<N> (the run's seed, resolved and recorded by seedlock)"}
RUN_OWNED_TOP_LEVEL = {
    "device": "device=<cpu|cuda|cuda:N>",
    "num_envs": "num_envs=<N>",
}


def check_agent_config(trainer: str, agent: DictConfig) -> None:
    """Refuse run-owned keys and out-of-range hyperparameters, naming the ``agent.`` key."""
    config = OmegaConf.to_container(agent, resolve=True)
    assert isinstance(config, dict)
    for dotted in _dotted_keys(config):
        owner = RUN_OWNED_ANYWHERE.get(dotted.rpartition(".")[2]) or RUN_OWNED_TOP_LEVEL.get(dotted)
        if owner is not None:
            raise AgentConfigError(
                f"agent.{dotted} is not allowed: the run config owns it, so the agent config may not set it "
                f"(trainer={trainer}). Remove it and use the top-level {owner}."
            )
    for dotted, (expected, valid) in HYPERPARAMETERS.get(trainer, {}).items():
        value = OmegaConf.select(agent, dotted, default=_ABSENT)
        if value is not _ABSENT and not valid(value):
            raise AgentConfigError(
                f"agent.{dotted}={value!r} is not valid for trainer={trainer}: it must be {expected}."
            )


def construction_error(trainer: str, error: Exception, agent_overrides: list[str]) -> AgentConfigError:
    """The library's own ValueError/TypeError while building its agent, as one paragraph that
    names the agent keys the command line set (the likely cause) and where the rest come from."""
    reason = " ".join(str(error).split())[:300] or type(error).__name__
    return AgentConfigError(
        f"trainer={trainer} rejected the agent config while building its agent ({type(error).__name__}: {reason}); "
        f"the agent keys set on the command line: {', '.join(agent_overrides)}. The task's agent settings are conf/agent/<task>/{trainer}.yaml; fix the agent.<key> value "
        "the library names."
    )


_ABSENT = object()


def _dotted_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, f"{dotted}."))
    return keys
