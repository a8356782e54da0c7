"""Fake ``isaaclab_rl.skrl`` (tests only): Isaac Lab's SkrlVecEnvWrapper is skrl's own wrap_env with
the "isaaclab" wrapper after a type check, and so is this one."""

from __future__ import annotations

from typing import Any

from isaaclab import record
from isaaclab.envs import DirectRLEnv, ManagerBasedRLEnv


def SkrlVecEnvWrapper(env: Any, ml_framework: str = "torch", wrapper: str = "isaaclab") -> Any:  # noqa: N802
    if not isinstance(env.unwrapped, (ManagerBasedRLEnv, DirectRLEnv)):
        raise ValueError(f"The environment must be inherited from ManagerBasedRLEnv or DirectRLEnv: {type(env)}")
    record("SkrlVecEnvWrapper", env=env, ml_framework=ml_framework, wrapper=wrapper)
    from skrl.envs.wrappers.torch import wrap_env

    return wrap_env(env, wrapper)
