"""Compare runs: where two fingerprint files first differ, which tensors differ there and by how
much, and which manifest fields differ (they usually explain why).

A run written with parameter snapshots (``fingerprints.snapshots=true``) keeps each iteration's
tensors in ``run_dir/snapshots/iteration_<N>.pt``; with them the comparison measures the largest
absolute difference of every tensor that differs, without them it can only name the tensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from determinism.fingerprint import FINGERPRINT_FILE, SNAPSHOT_DIR, read_fingerprints, snapshot_path

MANIFEST_FILE = "manifest.json"
# Manifest fields that differ between any two runs by construction, so they explain nothing.
MANIFEST_FIELDS_EXPECTED_TO_DIFFER = ("created_at", "run")


@dataclass
class TensorDifference:
    name: str
    max_abs_diff: float | None  # None: a snapshot was missing, or the shapes/dtypes differ
    note: str = ""


@dataclass
class Divergence:
    """Run ``run`` against the reference run 0."""

    run: int
    iteration: int | None  # the first iteration whose line differs
    env_steps: int | None
    fields: list[str]  # the fingerprint fields that differ there
    tensors: list[TensorDifference] = field(default_factory=list)
    tensors_compared: int = 0
    lengths: tuple[int, int] = (0, 0)  # iterations in run 0 and in this run
    # The first rollout step of that iteration whose observations differ (fingerprints'
    # ``observations``), and how many steps the iteration has; None where they agree or were not kept.
    observation_step: int | None = None
    rollout_steps: int | None = None


@dataclass
class Comparison:
    runs: list[str]
    iterations: int
    identical: bool
    divergences: list[Divergence]
    manifest_differences: dict[str, list[Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_runs(run_dirs: list[Path]) -> Comparison:
    """Compare every run's fingerprints and manifest with the first run's."""
    reference = read_fingerprints(run_dirs[0] / FINGERPRINT_FILE)
    divergences = []
    for index, run_dir in enumerate(run_dirs[1:], start=1):
        divergence = first_divergence(run_dirs[0], run_dir, reference, index)
        if divergence is not None:
            divergences.append(divergence)
    return Comparison(
        runs=[str(path) for path in run_dirs],
        iterations=len(reference),
        identical=not divergences,
        divergences=divergences,
        manifest_differences=manifest_differences([run_dir / MANIFEST_FILE for run_dir in run_dirs]),
    )


def first_divergence(
    reference_dir: Path, run_dir: Path, reference: list[dict[str, Any]], index: int
) -> Divergence | None:
    lines = read_fingerprints(run_dir / FINGERPRINT_FILE)
    if lines == reference:
        return None
    lengths = (len(reference), len(lines))
    for expected, actual in zip(reference, lines):
        if expected != actual:
            iteration = expected["iteration"]
            fields = sorted(key for key in expected.keys() | actual.keys() if expected.get(key) != actual.get(key))
            names = sorted(
                name for name in expected["parameters"].keys() | actual["parameters"].keys()
                if expected["parameters"].get(name) != actual["parameters"].get(name)
            )
            tensors = tensor_differences(reference_dir, run_dir, iteration, names)
            divergence = Divergence(index, iteration, expected["env_steps"], fields, tensors,
                                    len(expected["parameters"]), lengths)
            if "observations" in fields and expected.get("observations") and actual.get("observations"):
                divergence.observation_step = first_unequal(expected["observations"], actual["observations"])
                divergence.rollout_steps = len(expected["observations"])
            return divergence
    # Equal as far as the shorter one goes: one run stopped early.
    position = min(lengths)
    longer = reference if lengths[0] > lengths[1] else lines
    return Divergence(index, longer[position]["iteration"], longer[position]["env_steps"],
                      ["missing iteration"], [], 0, lengths)


def first_unequal(a: list[Any], b: list[Any]) -> int:
    return next((index for index, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def tensor_differences(reference_dir: Path, run_dir: Path, iteration: int, names: list[str]) -> list[TensorDifference]:
    """The largest absolute difference of each named tensor, from the runs' snapshots."""
    snapshots = [_load_snapshot(directory, iteration) for directory in (reference_dir, run_dir)]
    differences = []
    for name in names:
        a, b = (snapshot.get(name) if snapshot is not None else None for snapshot in snapshots)
        if snapshots[0] is None or snapshots[1] is None:
            differences.append(TensorDifference(name, None, "no snapshot"))
        elif a is None or b is None:
            differences.append(TensorDifference(name, None, "only in one run"))
        elif a.shape != b.shape or a.dtype != b.dtype:
            differences.append(TensorDifference(name, None, f"{tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"))
        else:
            diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
            differences.append(TensorDifference(name, diff))
    # Largest first: the tensor that moved most is where to look.
    return sorted(differences, key=lambda d: (d.max_abs_diff is None, -(d.max_abs_diff or 0.0), d.name))


def _load_snapshot(run_dir: Path, iteration: int) -> dict[str, torch.Tensor] | None:
    path = snapshot_path(run_dir, iteration)
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def manifest_differences(paths: list[Path]) -> dict[str, list[Any]]:
    """Dotted manifest fields whose values are not the same in every run, with each run's value."""
    flat = [flatten(json.loads(path.read_text())) if path.is_file() else {} for path in paths]
    keys = sorted(set().union(*flat))
    return {
        key: [values.get(key) for values in flat]
        for key in keys
        if key.split(".")[0] not in MANIFEST_FIELDS_EXPECTED_TO_DIFFER
        and any(values.get(key) != flat[0].get(key) for values in flat[1:])
    }


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": leaf}`` (an empty dict is a leaf)."""
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def prune_snapshots(run_dirs: list[Path], keep: set[int]) -> None:
    """Delete every snapshot but those of the iterations in ``keep`` (the first divergences)."""
    for run_dir in run_dirs:
        directory = run_dir / SNAPSHOT_DIR
        if not directory.is_dir():
            continue
        for path in directory.glob("iteration_*.pt"):
            if int(path.stem.removeprefix("iteration_")) not in keep:
                path.unlink()
        if not any(directory.iterdir()):
            directory.rmdir()
