"""Fakes of Isaac Sim and Isaac Lab for the task=isaaclab glue tests (tests/test_isaaclab.py).

``packages/`` holds importable stand-ins for ``isaacsim``, ``isaaclab``, ``isaaclab_tasks`` and
``isaaclab_rl`` with the call signatures of Isaac Lab 2.x, reduced to what seedlock calls: the
tests put it on ``sys.path`` (in-process) or ``PYTHONPATH`` (subprocesses). Every fake records its
calls in ``isaaclab.CALLS``. The fake task ``Isaac-Fake-Cartpole-Direct-v0`` is a DirectRLEnv-like
env around the embedded CartPole's physics. Nothing here ever ships: only tests import it.
"""
