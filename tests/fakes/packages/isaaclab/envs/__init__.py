"""Fake ``isaaclab.envs`` (tests only): the base classes Isaac Lab's wrappers check for."""

import gymnasium


class DirectRLEnv(gymnasium.Env):
    """Stand-in for Isaac Lab's DirectRLEnv (isinstance checks only)."""


class ManagerBasedRLEnv(gymnasium.Env):
    """Stand-in for Isaac Lab's ManagerBasedRLEnv (isinstance checks only)."""
