"""Every backend's task is a ``tasks.task.Task``; the ones seedlock steps itself are ``BatchedTask``s."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import determinism
import tasks
from tasks.task import BatchedTask, Task
from tests.support import compose_config

TASKS_DIR = Path(tasks.__file__).parent


@pytest.mark.usefixtures("restore_torch_state")
@pytest.mark.parametrize("overrides", [("task=cartpole",), ("task=cartpole_rgb",), ("task=gym/Pendulum-v1",)])
def test_embedded_and_gymnasium_tasks_are_batched_tasks(overrides: tuple[str, ...]) -> None:
    cfg = compose_config(*overrides, "num_envs=2")
    determinism.apply(cfg)
    env = tasks.make_for_run(cfg, 0)
    assert isinstance(env, Task) and isinstance(env, BatchedTask)


def test_the_state_task_does_not_import_the_camera_task() -> None:
    """tasks/cartpole_rgb.py builds on tasks/cartpole.py, never the other way round."""
    tree = ast.parse((TASKS_DIR / "cartpole.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "tasks.cartpole_rgb" not in imported
