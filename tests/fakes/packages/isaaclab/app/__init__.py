"""Fake ``isaaclab.app`` (tests only)."""

from isaaclab.app.app_launcher import AppLauncher

__all__ = ["AppLauncher"]
