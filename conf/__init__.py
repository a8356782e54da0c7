"""Hydra config tree of seedlock-train (a package so installed entry points find it)."""
