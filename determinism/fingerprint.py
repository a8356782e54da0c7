"""Fingerprints: one JSON line per training iteration that identifies the run's state.

Two runs are the same run exactly when their fingerprint files are equal. Hashes cover the raw
bytes of every tensor (with its name, dtype and shape) in a fixed order, so a one-ulp difference
anywhere changes them; floats are written with ``repr`` precision so metrics compare exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

FINGERPRINT_FILE = "fingerprints.jsonl"
SNAPSHOT_DIR = "snapshots"


def host_bytes(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Raw bytes (memory order, any dtype, bfloat16 included) of every tensor, as uint8 arrays.

    The tensors of each device are packed into one buffer there and fetched in a single copy: a
    fingerprint covers every parameter and optimizer tensor each iteration, and a copy (and a
    synchronisation) per tensor cost a GPU run several percent of its speed."""
    flat = [tensor.detach().contiguous().reshape(-1).view(torch.uint8) for tensor in tensors]
    fetched: list[np.ndarray | None] = [None] * len(flat)
    for device in dict.fromkeys(tensor.device for tensor in flat):
        indices = [i for i, tensor in enumerate(flat) if tensor.device == device]
        packed = torch.cat([flat[i] for i in indices]).cpu().numpy()
        offsets = np.cumsum([0] + [flat[i].numel() for i in indices])
        for i, start, end in zip(indices, offsets[:-1], offsets[1:]):
            fetched[i] = packed[start:end]
    return fetched  # type: ignore[return-value]


def _update(digest: "hashlib._Hash", name: str, tensor: torch.Tensor, data: np.ndarray) -> None:
    digest.update(_header(name, tensor))
    digest.update(data)


def _header(name: str, tensor: torch.Tensor) -> bytes:
    return f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode()


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


def fingerprint_named(named: Sequence[tuple[str, torch.Tensor]]) -> tuple[str, dict[str, str]]:
    """The combined sha256 of ``named`` and each tensor's own (first 16 hex digits), from one fetch."""
    combined, per_tensor = hashlib.sha256(), {}
    for (name, tensor), data in zip(named, host_bytes([tensor for _, tensor in named])):
        _update(combined, name, tensor, data)
        own = hashlib.sha256()
        _update(own, name, tensor, data)
        per_tensor[name] = own.hexdigest()[:16]
    return combined.hexdigest(), per_tensor


def fingerprint_optimizer(optimizer_state: Mapping[str, Any]) -> str:
    """sha256 of an optimizer state dict: per-parameter state tensors in index order, then the
    hyperparameters of each group (learning rate schedules change these)."""
    entries = [
        (f"state.{index}.{key}", value)
        for index in sorted(optimizer_state.get("state", {}))
        for key, value in sorted(optimizer_state["state"][index].items())
    ]
    fetched = iter(host_bytes([value for _, value in entries if isinstance(value, torch.Tensor)]))
    digest = hashlib.sha256()
    for name, value in entries:
        if isinstance(value, torch.Tensor):
            _update(digest, name, value, next(fetched))
        else:
            digest.update(f"{name}={value!r}|".encode())
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
    # One digest per env step of the iteration's rollout (ObservationDigests): where two runs'
    # observations first differ, before any parameter does, is the env's (the physics') doing.
    observations: list[str] | None = None


class ObservationDigests:
    """Each env step's observations as one 48-bit number, computed on the env's device and read
    back once per iteration (no host sync per step, so GPU runs keep their speed).

    The digest sums every env's observation words as integers (the raw bits: a one-ulp change
    changes it), then weights each env's sum by its index. Integer sums are exact and
    order-free, so the digest itself is deterministic on any device. Off until a run turns it on
    (``fingerprints.observations``): evaluation and benches step tasks without reading it."""

    WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

    def __init__(self) -> None:
        self.enabled = False
        self.tracer: Any = None  # determinism.trace.Tracer of a fingerprints.trace=true run
        self._pending: list[torch.Tensor] = []
        self._weights: dict[tuple[int, torch.device], torch.Tensor] = {}

    def note(self, obs: torch.Tensor, actions: torch.Tensor | None = None, reward: torch.Tensor | None = None) -> None:
        """One env step: its observations (and, for a trace, the actions it took and its rewards)."""
        if self.tracer is not None:
            self.tracer.env_step(obs, actions, reward)
        if not self.enabled:
            return
        rows = obs.detach().reshape(obs.shape[0] if obs.dim() > 1 else 1, -1).contiguous()
        words = rows.view(self.WORDS[rows.element_size()])
        key = (rows.shape[0], rows.device)
        if key not in self._weights:
            self._weights[key] = torch.arange(1, rows.shape[0] + 1, dtype=torch.int64, device=rows.device)
        self._pending.append((words.sum(dim=1, dtype=torch.int64) * self._weights[key]).sum())

    def drain(self) -> list[str] | None:
        """The digests noted since the last drain, as hex, oldest first (None when off)."""
        if not self.enabled:
            return None
        values = torch.stack(self._pending).cpu().tolist() if self._pending else []
        self._pending.clear()
        return [f"{value & 0xFFFFFFFFFFFF:012x}" for value in values]


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
