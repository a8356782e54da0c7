"""The run manifest: everything needed to repeat a run, or to explain why two runs differ."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

# Distributions whose version changes what a run computes; recorded when installed.
TRACKED_DISTRIBUTIONS = (
    "seedlock", "numpy", "hydra-core", "omegaconf", "gymnasium", "tensordict",
    "rsl-rl-lib", "rl-games", "stable-baselines3", "skrl", "warp-lang", "mujoco",
)
# Environment variables that change numerics or RNG streams.
TRACKED_ENV_VARS = (
    "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE", "CUDA_LAUNCH_BLOCKING",
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class RunManifest:
    """What was asked for, what was applied, and on what software and hardware."""

    seed_requested: int | None
    seed: int  # the seed this process used: run_seed + rank in a distributed run
    seed_source: str
    torch_deterministic: bool
    seeded_rngs: list[str]
    flags: dict[str, Any]
    env_vars: dict[str, str]
    versions: dict[str, str | None]
    devices: dict[str, Any]
    git: dict[str, Any]
    created_at: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat()
    )
    config_sha256: str | None = None
    run: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The rendering that was applied: the embedded renderer's settings, or the Isaac Sim kit.
    renderer: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_seed: int | None = None  # the run's seed (config.yaml's); equals seed outside distributed runs
    # A distributed run: this process's rank, the world size and the seed of every rank.
    distributed: dict[str, Any] | None = None
    # What computes the physics and how far it is locked (determinism/physics.py).
    physics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")


def config_sha256(config: dict[str, Any]) -> str:
    """Hash of the resolved config, keys sorted, so equal configs hash equal across processes."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def collect_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }
    for name in TRACKED_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def collect_devices() -> dict[str, Any]:
    devices: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda": [],
    }
    if torch.cuda.is_available():
        devices["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        devices["cuda_driver"] = _nvidia_driver()
    return devices


def tracked_env_vars() -> dict[str, str]:
    return {name: os.environ[name] for name in TRACKED_ENV_VARS if name in os.environ}


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's commit and whether the work tree had changes; empty when not a git checkout."""
    if not (root / ".git").exists():
        return {}
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "dirty": dirty}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            check=True, capture_output=True, text=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None

