"""Fake ``isaaclab_rl`` (tests only): Isaac Lab 2.x's RSL-RL wrapper, with the real constructor
signature and the behaviour seedlock relies on. The real wrappers of all four libraries are
tested with Isaac Lab 3.x in tests/test_isaaclab_kitless.py."""
