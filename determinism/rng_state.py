"""Every global RNG state a run draws from, captured into a checkpoint and restored from it.

A resumed run is the same run only if it continues from the very RNG states the uninterrupted
run had at that iteration: python ``random``, numpy's global RNG, torch's CPU generator and every
CUDA device's. The states are plain tensors, ints and lists, so a checkpoint holding them still
loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """The state of every global RNG, in a ``weights_only``-loadable form."""
    version, mt_state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    assert isinstance(numpy_state, dict)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        # Only when CUDA is already in use: capturing must not be what initialises it.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every global RNG back into the captured state."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy["bit_generator"],
            "state": {"key": numpy["key"].cpu().numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"]:
        if not torch.cuda.is_available() or torch.cuda.device_count() < len(state["cuda"]):
            raise RuntimeError(
                f"the checkpoint holds the RNG states of {len(state['cuda'])} CUDA device(s), "
                f"but this process sees {torch.cuda.device_count() if torch.cuda.is_available() else 0}."
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
