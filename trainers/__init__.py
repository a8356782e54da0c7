"""Training adapters, one module per library; only these modules import a training library."""

from __future__ import annotations

import importlib
from types import ModuleType

# trainer name (conf/trainer/<name>.yaml) -> adapter module
ADAPTERS = {
    "rsl_rl": "trainers.rsl_rl",
}


def adapter(name: str) -> ModuleType:
    """Import the adapter lazily, so a run imports only the library it trains with."""
    from trainers.run_config import ConfigError

    if name not in ADAPTERS:
        raise ConfigError(f"trainer={name!r} is not valid; choices: {', '.join(sorted(ADAPTERS))}.")
    return importlib.import_module(ADAPTERS[name])
