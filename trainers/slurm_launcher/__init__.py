"""seedlock's Hydra launchers, installed as ``hydra_plugins.seedlock_launchers`` (pyproject.toml):
Hydra instantiates a launcher only from the ``hydra_plugins`` namespace package. Import them by
that name; ``trainers.run_config.register_launchers`` registers them with Hydra."""
