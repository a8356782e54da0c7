"""Fake ``isaaclab_rl`` (tests only): Isaac Lab 2.x's wrappers, one module per library, with the
real constructor signatures and the behaviour seedlock relies on, reduced to the fake's needs."""
