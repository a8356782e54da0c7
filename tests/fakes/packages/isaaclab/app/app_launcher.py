"""Fake ``isaaclab.app.AppLauncher`` (tests only): Isaac Lab 2.x's constructor signature and its
checks on the arguments seedlock passes (duplicates, device, experience file), no Isaac Sim."""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from isaaclab import record

LAUNCHED: list[dict[str, Any]] = []


class FakeSimulationApp:
    def close(self, wait_for_replicator: bool = True, skip_cleanup: bool = False) -> None:
        record("app.close")


class AppLauncher:
    def __init__(self, launcher_args: argparse.Namespace | dict | None = None, **kwargs: Any) -> None:
        args = vars(launcher_args) if isinstance(launcher_args, argparse.Namespace) else dict(launcher_args or {})
        if set(args) & set(kwargs):
            raise ValueError(f"Input `launcher_args` and `kwargs` both provided: {set(args) & set(kwargs)}")
        args.update(kwargs)
        device = args.get("device", "cuda:0")
        if "cuda" not in device and "cpu" not in device:
            raise ValueError(f"Invalid value for input keyword argument `device`: {device}.")
        experience = args.get("experience", "")
        if experience and os.path.isabs(experience) and not os.path.exists(experience):
            raise FileNotFoundError(f"Invalid value for input keyword argument `experience`: {experience}.")
        record(
            "AppLauncher", **args,
            deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
        LAUNCHED.append(args)
        self.local_rank = 0
        self.global_rank = 0
        self._app = FakeSimulationApp()

    @property
    def app(self) -> FakeSimulationApp:
        return self._app
