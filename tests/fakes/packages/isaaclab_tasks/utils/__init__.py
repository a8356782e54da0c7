"""Fake ``isaaclab_tasks.utils`` (tests only): Isaac Lab 2.x's parse_env_cfg signature."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

from isaaclab import record


def load_cfg_from_registry(task_name: str, entry_point_key: str) -> Any:
    entry_point = gymnasium.spec(task_name).kwargs.get(entry_point_key)
    if entry_point is None:
        raise ValueError(f"Could not find configuration for the environment: '{task_name}'.")
    module_name, attr_name = entry_point.split(":")
    return getattr(importlib.import_module(module_name), attr_name)()


def parse_env_cfg(
    task_name: str, device: str = "cuda:0", num_envs: int | None = None, use_fabric: bool | None = None
) -> Any:
    record("parse_env_cfg", task_name=task_name, device=device, num_envs=num_envs)
    cfg = load_cfg_from_registry(task_name, "env_cfg_entry_point")
    cfg.sim.device = device
    if num_envs is not None:
        cfg.scene.num_envs = num_envs
    return cfg
