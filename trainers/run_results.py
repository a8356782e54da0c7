"""Read finished run dirs and aggregate them per (library, task): what ``seedlock-report`` shows.

Only the files a run writes for machines are read (config.yaml, manifest.json, fingerprints.jsonl,
summary.json, a sweep job's job_status.json), never the stdout logs, whose format is nobody's
contract. A run that failed or did not finish is kept as such, with its error, and left out of
every statistic: a partial run would pull the means towards its early iterations.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from determinism.compare import MANIFEST_FILE, first_divergence
from determinism.fingerprint import FINGERPRINT_FILE, read_fingerprints

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"  # trainers.train writes it when training ends
JOB_STATUS_FILE = "job_status.json"  # a sweep job's outcome, written even when the job failed
RANKS_DIR = "ranks"  # per-rank files of a distributed run, not runs of their own
# Files whose presence makes a directory a run (or a sweep job that never became one).
RUN_MARKERS = (MANIFEST_FILE, JOB_STATUS_FILE)


class NoRunsError(ValueError):
    """A path given to the report is missing or holds no run dirs."""


@dataclass
class Run:
    """One run dir as read from its files; ``error`` set means failed or unfinished."""

    run_dir: Path
    library: str | None = None
    task: str | None = None
    seed: int | None = None
    config_sha256: str | None = None
    overrides: list[str] = field(default_factory=list)
    returns: list[float | None] = field(default_factory=list)
    env_steps: list[int] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    error: str | None = None

    @property
    def final_return(self) -> float | None:
        """The last iteration's mean return; earlier ones when no episode had ended by then."""
        return next((value for value in reversed(self.returns) if value is not None), None)


@dataclass
class Group:
    """The finished runs of one (library, task) and what they add up to."""

    library: str
    task: str
    runs: list[Run]
    bitwise: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted({run.seed for run in self.runs if run.seed is not None})

    @property
    def distinct_runs(self) -> list[Run]:
        """One run per config (and seed): a repeat is the same run again, and counting it twice
        would weight its seed double in the mean and shrink the std across seeds."""
        seen: set[str] = set()
        distinct = []
        for run in self.runs:
            if run.config_sha256 is None or run.config_sha256 not in seen:
                distinct.append(run)
                seen.add(run.config_sha256 or "")
        return distinct

    @property
    def final_returns(self) -> list[float]:
        return [value for run in self.distinct_runs if (value := run.final_return) is not None]

    def final_return_stats(self) -> tuple[float | None, float | None]:
        return mean_std(self.final_returns)

    def summary_mean(self, key: str) -> float | None:
        values = [run.summary[key] for run in self.runs if run.summary and run.summary.get(key) is not None]
        return float(np.mean(values)) if values else None

    def curve(self) -> tuple[list[int], list[float], list[float]]:
        """env steps, mean and std of mean_return over the iterations every run has; an iteration
        where some runs had no finished episode yet averages the others, one where none had is left out."""
        runs = self.distinct_runs
        length = min(len(run.returns) for run in runs)
        steps, means, stds = [], [], []
        for index in range(length):
            mean, std = mean_std([v for run in runs if (v := run.returns[index]) is not None])
            if mean is not None and std is not None:
                steps.append(runs[0].env_steps[index])
                means.append(mean)
                stds.append(std)
        return steps, means, stds


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and population std (ddof=0: the runs are all there is, not a sample of more)."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every run dir (or sweep job dir) under ``paths``, a given run dir included; raises
    NoRunsError naming the first path that is missing or holds none."""
    found: set[Path] = set()
    for path in paths:
        if not path.is_dir():
            raise NoRunsError(f"{str(path)!r} {'is not a directory' if path.exists() else 'does not exist'}")
        here: set[Path] = set()
        for directory, subdirs, files in os.walk(path):
            if any(marker in files for marker in RUN_MARKERS):
                here.add(Path(directory).resolve())
                subdirs.clear()  # a run holds no other runs; its ranks/ would only look like them
            else:
                subdirs[:] = [name for name in subdirs if name != RANKS_DIR]
        if not here:
            raise NoRunsError(f"{str(path)!r} holds no run dirs (no {' or '.join(RUN_MARKERS)} in it or below it)")
        found |= here  # a dir given twice, or inside another given one, is one run
    return sorted(found)


def read_run(run_dir: Path) -> Run:
    """A run from its files; whatever is missing or unreadable becomes the run's error."""
    run = Run(run_dir)
    status = _read_json(run_dir / JOB_STATUS_FILE, run) if (run_dir / JOB_STATUS_FILE).is_file() else None
    if status is not None:
        run.overrides = list(status.get("overrides") or [])
        if status.get("status") == "failed":
            run.error = str(status.get("error") or "the job failed (job_status.json gives no error)")
    manifest = _read_json(run_dir / MANIFEST_FILE, run) if (run_dir / MANIFEST_FILE).is_file() else None
    if manifest is None:
        run.error = run.error or f"no {MANIFEST_FILE}: the job failed before training started"
        return run
    run.seed = manifest.get("seed")
    run.config_sha256 = manifest.get("config_sha256")
    run.overrides = list((manifest.get("run") or {}).get("overrides") or run.overrides)
    try:
        config = OmegaConf.load(run_dir / CONFIG_FILE)
        run.library = str(config.trainer.name)
        task_id = config.task.get("id")
        run.task = str(config.task.name) if task_id in (None, config.task.name) else f"{config.task.name}:{task_id}"
        lines = read_fingerprints(run_dir / FINGERPRINT_FILE)
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as error:
        # One unreadable run is one failed run, not a failed report.
        run.error = run.error or f"unreadable run files: {type(error).__name__}: {error}"
        return run
    run.returns = [line.get("mean_return") for line in lines]
    run.env_steps = [line.get("env_steps") for line in lines]
    if (run_dir / SUMMARY_FILE).is_file():
        run.summary = _read_json(run_dir / SUMMARY_FILE, run)
    elif run.error is None:
        run.error = f"no {SUMMARY_FILE}: training did not finish (killed or crashed) after {len(lines)} iterations"
    if run.error is None and not lines:
        run.error = f"{FINGERPRINT_FILE} is empty"
    return run


def _read_json(path: Path, run: Run) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        run.error = run.error or f"{path.name} is unreadable: {error}"
        return None
    return value if isinstance(value, dict) else None


def group_runs(runs: list[Run]) -> list[Group]:
    """Finished runs grouped by (library, task), each with its bitwise verdict."""
    by_key: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.error is None:
            by_key[(str(run.library), str(run.task))].append(run)
    groups = [Group(library, task, members) for (library, task), members in sorted(by_key.items())]
    for group in groups:
        group.bitwise = bitwise_verdict(group.runs)
        shared = min(len(run.env_steps) for run in group.runs)
        if len({tuple(run.env_steps[:shared]) for run in group.runs}) > 1:
            group.notes.append(
                f"{group.library}/{group.task}: runs differ in env steps per iteration (different configs); "
                f"the curve's env steps are those of {group.runs[0].run_dir}"
            )
    return groups


def bitwise_verdict(runs: list[Run]) -> str:
    """Runs with one config_sha256 (same config and seed) must have byte-equal fingerprint files."""
    repeats: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.config_sha256 is not None:
            repeats[run.config_sha256].append(run)
    repeated = [members for members in repeats.values() if len(members) > 1]
    if not repeated:
        return "n/a (no seed repeated)"
    differences = []
    for members in sorted(repeated, key=lambda m: (m[0].seed is None, m[0].seed or 0)):
        reference_dir = members[0].run_dir
        reference_bytes = (reference_dir / FINGERPRINT_FILE).read_bytes()
        for other in members[1:]:
            if (other.run_dir / FINGERPRINT_FILE).read_bytes() != reference_bytes:
                differences.append(_difference(reference_dir, other))
                break
    if differences:
        return "NO: " + "; ".join(differences)
    return f"yes ({len(repeated)} seed{'s' if len(repeated) > 1 else ''} repeated)"


def _difference(reference_dir: Path, other: Run) -> str:
    reference = read_fingerprints(reference_dir / FINGERPRINT_FILE)
    divergence = first_divergence(reference_dir, other.run_dir, reference, 1)
    if divergence is None or divergence.iteration is None:
        return f"seed {other.seed} differs (equal lines, unequal bytes)"
    return f"seed {other.seed} differs from iteration {divergence.iteration}"
