"""Task factory: the run config's ``task`` group names a task module here."""

from __future__ import annotations

import dataclasses
from typing import Any

import determinism
from tasks.cartpole import CartpoleConfig, CartpoleEnv

# task name -> (env class, its config dataclass)
EMBEDDED_TASKS: dict[str, tuple[type[CartpoleEnv], type[CartpoleConfig]]] = {
    "cartpole": (CartpoleEnv, CartpoleConfig),
}


class TaskConfigError(ValueError):
    """A task name or task parameter the factory cannot build."""


def make(name: str, params: dict[str, Any], num_envs: int, seed: int, device: str) -> CartpoleEnv:
    """Build the env of task ``name``; refuses to run before determinism is applied, since an env
    built earlier could draw from unseeded RNGs or start CUDA before cuBLAS is configured."""
    if determinism.applied() is None:
        raise RuntimeError("determinism.apply(cfg) must run before tasks.make builds an env")
    if name not in EMBEDDED_TASKS:
        raise TaskConfigError(
            f"task={name!r} is not an embedded task; valid choices: {', '.join(sorted(EMBEDDED_TASKS))}."
        )
    env_class, config_class = EMBEDDED_TASKS[name]
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TaskConfigError(
            f"task.env has unknown key(s) {unknown} for task {name!r}; valid keys: {', '.join(sorted(known))}."
        )
    config = config_class(**{key: tuple(value) if isinstance(value, list) else value for key, value in params.items()})
    return env_class(num_envs=num_envs, seed=seed, device=device, config=config)
