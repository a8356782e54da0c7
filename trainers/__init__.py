"""Training adapters, one module per library; only these modules import a training library.

``trainer=<name>`` selects ``conf/trainer/<name>.yaml`` and the adapter module
``trainers/<name>.py``: a new library is one module plus its YAML files, no registry to edit.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ADAPTER_FUNCTIONS = ("train", "load_policy")


def adapter(name: str) -> ModuleType:
    """Import the adapter lazily, so a run imports only the library it trains with."""
    module = importlib.import_module(f"trainers.{name}")
    missing = [function for function in ADAPTER_FUNCTIONS if not hasattr(module, function)]
    if missing:
        raise TypeError(f"trainers/{name}.py is not an adapter: it lacks {', '.join(missing)}")
    return module
