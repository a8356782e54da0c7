"""Fingerprints: one JSON line per training iteration that identifies the run's state.

Two runs are the same run exactly when their fingerprint files are equal. Hashes cover the raw
bytes of every tensor (with its name, dtype and shape) in a fixed order, so a one-ulp difference
anywhere changes them; floats are written with ``repr`` precision so metrics compare exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

FINGERPRINT_FILE = "fingerprints.jsonl"
SNAPSHOT_DIR = "snapshots"


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Raw bytes of a tensor in memory order, for any dtype (bfloat16 included)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def hash_tensor(name: str, tensor: torch.Tensor) -> str:
    digest = hashlib.sha256()
    _update(digest, name, tensor)
    return digest.hexdigest()


def hash_named_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in named:
        _update(digest, name, tensor)
    return digest.hexdigest()


def _update(digest: "hashlib._Hash", name: str, tensor: torch.Tensor) -> None:
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor_bytes(tensor))


def named_parameters(modules: Mapping[str, torch.nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """Every entry of every module's state dict (parameters and buffers, such as observation
    normalisers), prefixed with the module's role, in the modules' own registration order."""
    return [
        (f"{role}.{key}", value)
        for role, module in modules.items()
        for key, value in module.state_dict().items()
    ]


def fingerprint_parameters(modules: Mapping[str, torch.nn.Module]) -> tuple[str, dict[str, str]]:
    """The combined sha256 and a short per-tensor hash (to name which tensors differ)."""
    return fingerprint_named(named_parameters(modules))


def fingerprint_named(named: list[tuple[str, torch.Tensor]]) -> tuple[str, dict[str, str]]:
    per_tensor = {name: hash_tensor(name, tensor)[:16] for name, tensor in named}
    return hash_named_tensors(named), per_tensor


def fingerprint_optimizer(optimizer_state: Mapping[str, Any]) -> str:
    """sha256 of an optimizer state dict: per-parameter state tensors in index order, then the
    hyperparameters of each group (learning rate schedules change these)."""
    digest = hashlib.sha256()
    for index in sorted(optimizer_state.get("state", {})):
        for key, value in sorted(optimizer_state["state"][index].items()):
            if isinstance(value, torch.Tensor):
                _update(digest, f"state.{index}.{key}", value)
            else:
                digest.update(f"state.{index}.{key}={value!r}|".encode())
    groups = optimizer_state.get("param_groups", [])
    digest.update(json.dumps(groups, sort_keys=True, default=repr).encode())
    return digest.hexdigest()


@dataclass
class Fingerprint:
    """One training iteration's identity."""

    iteration: int
    env_steps: int
    parameters_sha256: str
    optimizer_sha256: str
    mean_return: float | None
    mean_episode_length: float | None
    losses: dict[str, float]
    parameters: dict[str, str] = field(default_factory=dict)


def snapshot_path(run_dir: Path, iteration: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"iteration_{iteration}.pt"


class FingerprintWriter:
    """Appends one line per iteration to ``run_dir/fingerprints.jsonl`` and flushes it, so a
    killed run keeps every iteration it finished.

    With ``snapshots`` it also keeps the fingerprinted tensors of every iteration in
    ``run_dir/snapshots/iteration_<N>.pt``, so that a divergence between two runs can be measured
    (``seedlock-verify`` turns this on; it costs a copy of the parameters per iteration).
    """

    def __init__(self, run_dir: Path, snapshots: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / FINGERPRINT_FILE
        self.snapshots = snapshots
        self.written = 0  # iterations fingerprinted by this process (a continued run counts from its checkpoint)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, fingerprint: Fingerprint, tensors: Iterable[tuple[str, torch.Tensor]] = ()) -> None:
        if self.snapshots:
            path = snapshot_path(self.run_dir, fingerprint.iteration)
            path.parent.mkdir(exist_ok=True)
            torch.save({name: tensor.detach().to("cpu").clone() for name, tensor in tensors}, path)
        self._file.write(json.dumps(asdict(fingerprint), sort_keys=True) + "\n")
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FingerprintWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_fingerprints(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
