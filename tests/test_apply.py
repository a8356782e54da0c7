"""determinism.apply: what it sets, what it seeds, what it records, and that it runs first."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import determinism
import tasks
import trainers.train
from tests.support import compose_config


@pytest.mark.usefixtures("restore_torch_state")
def test_torch_deterministic_locks_every_switch() -> None:
    manifest = determinism.apply(compose_config("torch_deterministic=true"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert manifest.env_vars["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert manifest.flags["deterministic_algorithms"] is True
    assert manifest.flags["conv_weight_grad"] == "matmul"


@pytest.mark.usefixtures("restore_torch_state")
def test_without_torch_deterministic_torch_defaults_are_left_alone() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    manifest = determinism.apply(compose_config())
    assert torch.are_deterministic_algorithms_enabled() == before
    assert manifest.flags["deterministic_algorithms"] == before


@pytest.mark.usefixtures("restore_torch_state")
def test_apply_seeds_python_numpy_and_torch() -> None:
    determinism.apply(compose_config("seed=123"))
    drawn = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    assert drawn == (random.random(), np.random.rand(), torch.rand(1).item())


@pytest.mark.usefixtures("restore_torch_state")
def test_manifest_records_what_a_repeat_needs() -> None:
    manifest = determinism.apply(compose_config("seed=-1"))
    assert manifest.seed_requested == -1 and manifest.seed_source == "random"
    assert {"python", "numpy", "torch_cpu", "torch_cuda_all"} <= set(manifest.seeded_rngs)
    assert manifest.versions["torch"] == torch.__version__
    assert "rsl-rl-lib" in manifest.versions and "python" in manifest.versions
    assert manifest.flags["num_threads"] == torch.get_num_threads()
    assert manifest.devices["cpu_count"] == os.cpu_count()


@pytest.mark.usefixtures("restore_torch_state")
def test_num_threads_is_pinned_when_configured() -> None:
    manifest = determinism.apply(compose_config("determinism.num_threads=1"))
    assert torch.get_num_threads() == 1 and manifest.flags["num_threads"] == 1


@pytest.mark.usefixtures("restore_torch_state")
def test_determinism_is_applied_before_the_env_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env factory sees the deterministic flags and the seeded global RNG already in place."""
    events: list[str] = []
    real_apply, real_make = determinism.apply, tasks.make

    def recording_apply(cfg, **kwargs):  # type: ignore[no-untyped-def]
        events.append("apply")
        return real_apply(cfg, **kwargs)

    def recording_make(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append(f"make(deterministic={torch.are_deterministic_algorithms_enabled()})")
        return real_make(*args, **kwargs)

    monkeypatch.setattr(determinism, "apply", recording_apply)
    monkeypatch.setattr(tasks, "make", recording_make)
    cfg = compose_config("torch_deterministic=true", "num_envs=8", "max_iterations=1", f"run_dir={tmp_path / 'run'}")
    trainers.train.run_training(cfg)
    assert events == ["apply", "make(deterministic=True)"]


def test_env_factory_refuses_to_build_before_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(determinism, "_applied", None)
    with pytest.raises(RuntimeError, match="determinism.apply"):
        tasks.make("cartpole", {}, num_envs=2, seed=0, device="cpu")


@pytest.mark.usefixtures("restore_torch_state")
def test_a_later_job_without_determinism_gets_torchs_defaults_back() -> None:
    """Multirun jobs share a process: one job's flags must not leak into the next."""
    determinism.apply(compose_config("torch_deterministic=true"))
    manifest = determinism.apply(compose_config("torch_deterministic=false"))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is False
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert manifest.flags["deterministic_algorithms"] is False
    assert manifest.flags["conv_weight_grad"] == "cudnn"
    assert torch.utils.deterministic.fill_uninitialized_memory is True  # type: ignore[attr-defined]


@pytest.mark.usefixtures("restore_torch_state")
def test_strict_determinism_fills_uninitialized_memory_and_the_default_does_not() -> None:
    assert determinism.apply(compose_config("torch_deterministic=true")).flags["fill_uninitialized_memory"] is False
    assert determinism.apply(compose_config("determinism=strict")).flags["fill_uninitialized_memory"] is True
    assert torch.utils.deterministic.fill_uninitialized_memory is True  # type: ignore[attr-defined]
