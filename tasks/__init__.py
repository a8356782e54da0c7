"""Task factory: the run config's ``task`` group names a task module here."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

import determinism
from tasks.cartpole import CartpoleConfig, CartpoleEnv
from tasks.cartpole_rgb import CartpoleRgbConfig, CartpoleRgbEnv
from tasks.rasterizer import RenderSettings

if TYPE_CHECKING:
    from tasks.task import Task

# task name -> (env class, its config dataclass)
EMBEDDED_TASKS: dict[str, tuple[type[CartpoleEnv], type[CartpoleConfig]]] = {
    "cartpole": (CartpoleEnv, CartpoleConfig),
    "cartpole_rgb": (CartpoleRgbEnv, CartpoleRgbConfig),
}
# tasks that draw camera frames, and so take the renderer group's embedded settings
CAMERA_TASKS = {"cartpole_rgb"}


class TaskConfigError(ValueError):
    """A task name or task parameter the factory cannot build."""


def make_for_run(cfg: DictConfig, seed: int) -> Task:
    """The env of a composed run config: Isaac Lab's for ``task.backend=isaaclab``, else the
    embedded task, drawn with the renderer group's embedded settings when it has a camera."""
    if cfg.task.backend == "isaaclab":
        if determinism.applied() is None:
            raise RuntimeError("determinism.apply(cfg) must run before tasks.make_for_run builds an env")
        # Isaac Lab needs the whole run config (task.id, task.app, the renderer's kit); its own
        # imports stay inside tasks.isaaclab, so the embedded tasks never need Isaac Sim.
        from tasks import isaaclab

        return isaaclab.make(cfg, seed)
    if cfg.task.backend == "gym":
        if determinism.applied() is None:
            raise RuntimeError("determinism.apply(cfg) must run before tasks.make_for_run builds an env")
        from tasks import gym_task

        return gym_task.make(cfg, seed)
    render = OmegaConf.to_container(cfg.renderer.embedded)
    assert isinstance(render, dict)
    return make(cfg.task.name, dict(cfg.task.env), cfg.num_envs, seed, cfg.device, render=render)


def make(
    name: str, params: dict[str, Any], num_envs: int, seed: int, device: str, render: dict[str, Any] | None = None,
) -> CartpoleEnv:
    """Build the embedded env of task ``name``; refuses to run before determinism is applied, since
    an env built earlier could draw from unseeded RNGs or start CUDA before cuBLAS is configured."""
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
    try:
        if name in CAMERA_TASKS:
            settings = RenderSettings(**(render or {}))
            return env_class(num_envs=num_envs, seed=seed, device=device, config=config, render=settings)
        return env_class(num_envs=num_envs, seed=seed, device=device, config=config)
    except ValueError as error:  # the task's own range checks, already worded for the user
        raise TaskConfigError(str(error)) from error
