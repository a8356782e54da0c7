"""task=isaaclab with Isaac Lab 2.x and Isaac Sim: the AppLauncher path, tested against fakes of
Isaac Sim and Isaac Lab 2.x (tests/fakes/), since Isaac Sim cannot run here. Everything the real
Isaac Lab 3.x shows on this machine (each library training through Isaac Lab's own wrappers, task
ids, task.env overrides, agent/observation mismatches, checkpoints, play, export) is tested with
the real package in tests/test_isaaclab_kitless.py. What the fakes cannot show (that Isaac Sim
starts with the kit, cameras) the README says was not run."""

from __future__ import annotations

import importlib
import importlib.util
import os
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import determinism
import tasks
import tasks.isaaclab
import trainers.train
from determinism import read_fingerprints
from tests.support import compose_config, run_train

FAKES = Path(__file__).resolve().parent / "fakes" / "packages"
KITS = Path(__file__).resolve().parent.parent / "kits"
ISAAC_PACKAGES = ("isaacsim", "isaaclab", "isaaclab_tasks", "isaaclab_rl")
FAKE_TASK = ("task=isaaclab", "task.id=Isaac-Fake-Cartpole-Direct-v0", "num_envs=16")


def _drop_isaac_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ISAAC_PACKAGES:
            del sys.modules[name]


@pytest.fixture
def fake_isaaclab(monkeypatch: pytest.MonkeyPatch, restore_torch_state: None) -> Iterator[ModuleType]:
    """The fake Isaac packages importable, a process in which Isaac Sim has not started yet, and the
    fakes' call log (``isaaclab.CALLS``)."""
    _drop_isaac_modules()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setattr(tasks.isaaclab, "_launched", None)
    yield importlib.import_module("isaaclab")
    _drop_isaac_modules()


def _calls(isaaclab: ModuleType, name: str) -> list[dict]:
    return [details for call, details in isaaclab.CALLS if call == name]


def _make(*overrides: str) -> tasks.isaaclab.IsaacLabTask:
    """tasks.make as seedlock-train calls it: determinism applied first, then the run config."""
    cfg = compose_config(*FAKE_TASK, *overrides)
    manifest = determinism.apply(cfg)
    return tasks.make_for_run(cfg, manifest.seed)


def _train(tmp_path: Path, *overrides: str) -> None:
    cfg = compose_config(*FAKE_TASK, "max_iterations=1", f"run_dir={tmp_path / 'run'}", *overrides)
    trainers.train.run_training(cfg)


def test_importing_the_backend_and_the_adapters_imports_no_isaac_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even where the Isaac packages are importable (the fakes, here), nothing imports them until a
    task=isaaclab run starts Isaac Sim."""
    monkeypatch.setenv("PYTHONPATH", str(FAKES))
    code = (
        "import sys, tasks.isaaclab, trainers.rl_games, trainers.rsl_rl, trainers.sb3, trainers.skrl; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ISAAC_PACKAGES!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is not None for name in ISAAC_PACKAGES), reason="Isaac Lab is installed"
)
def test_without_isaac_lab_seedlock_train_exits_2_naming_the_missing_packages(tmp_path: Path) -> None:
    result = run_train("task=isaaclab", f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("seedlock-train: error: task=isaaclab needs Isaac Lab")
    assert all(name in error for name in ISAAC_PACKAGES) and "make install-isaaclab" in error and "pip install" in error
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing of a run that never started is left behind


def test_app_launcher_gets_headless_cameras_device_and_the_deterministic_kits_absolute_path(
    fake_isaaclab: ModuleType,
) -> None:
    task = _make("renderer=deterministic", "task.app.headless=false")
    [launch] = _calls(fake_isaaclab, "AppLauncher")
    kit = KITS / "seedlock.headless.rendering.deterministic.kit"
    assert (launch["headless"], launch["enable_cameras"], launch["device"]) == (False, True, "cpu")
    assert launch["experience"] == str(kit) and Path(launch["experience"]).is_absolute()
    assert task.launch_info["experience"] == str(kit)
    assert task.launch_info["task_id"] == "Isaac-Fake-Cartpole-Direct-v0"
    assert set(task.launch_info["versions"]) == set(ISAAC_PACKAGES)


def test_a_distributed_run_launches_isaac_sim_distributed_on_its_ranks_gpu() -> None:
    """As Isaac Lab's train scripts: AppLauncher(distributed=True) puts Isaac Sim on LOCAL_RANK's GPU."""
    cfg = compose_config("task=isaaclab", "task.id=Isaac-Fake-Cartpole-Direct-v0", "distributed=true", "device=cuda:1")
    kwargs = tasks.isaaclab.launcher_kwargs(cfg, apps_dir=None)
    assert (kwargs["distributed"], kwargs["device"]) == (True, "cuda:1")
    assert "distributed" not in tasks.isaaclab.launcher_kwargs(compose_config("task=isaaclab"), apps_dir=None)


def test_isaac_labs_apps_folder_is_a_kit_extension_folder_so_the_kits_dependency_resolves(
    fake_isaaclab: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.isaaclab, "isaaclab_apps_dir", lambda app_launcher_class: tmp_path / "apps")
    _make()
    [launch] = _calls(fake_isaaclab, "AppLauncher")
    assert launch["kit_args"] == f"--ext-folder={tmp_path / 'apps'}"


def test_renderer_default_launches_with_isaac_labs_unchanged_rendering_kit(fake_isaaclab: ModuleType) -> None:
    _make("renderer=default")
    [launch] = _calls(fake_isaaclab, "AppLauncher")
    assert launch["experience"] == str(KITS / "seedlock.headless.rendering.kit")


def test_the_experience_is_the_run_configs_to_choose_not_task_app(fake_isaaclab: ModuleType) -> None:
    with pytest.raises(tasks.TaskConfigError, match="task.app.experience is set by the run config's renderer="):
        _make("+task.app.experience=other.kit")
    assert not _calls(fake_isaaclab, "AppLauncher")


def test_env_cfg_gets_the_runs_seed_num_envs_and_device(fake_isaaclab: ModuleType) -> None:
    task = _make("seed=7", "num_envs=12")
    [parsed] = _calls(fake_isaaclab, "parse_env_cfg")
    [made] = _calls(fake_isaaclab, "gym.make")
    assert parsed == {"task_name": "Isaac-Fake-Cartpole-Direct-v0", "device": "cpu", "num_envs": 12}
    assert (made["seed"], made["num_envs"], made["device"]) == (7, 12, "cpu")
    assert (task.num_envs, task.device, task.max_episode_length) == (12, torch.device("cpu"), 300)


def test_isaac_labs_seeding_keeps_the_flags_determinism_set(fake_isaaclab: ModuleType) -> None:
    task = _make("torch_deterministic=true")
    assert _calls(fake_isaaclab, "env.seed"), "the fake env seeds itself, as Isaac Lab's do"
    task.env.reset(seed=3)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False


def test_determinism_is_applied_before_isaac_sim_starts_and_before_gym_make(
    fake_isaaclab: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_apply = determinism.apply

    def recording_apply(cfg, **kwargs):  # type: ignore[no-untyped-def]
        fake_isaaclab.record("determinism.apply")
        return real_apply(cfg, **kwargs)

    monkeypatch.setattr(determinism, "apply", recording_apply)
    _train(tmp_path, "torch_deterministic=true", "agent=cartpole/rsl_rl")
    order = [name for name, _ in fake_isaaclab.CALLS if name in ("determinism.apply", "AppLauncher", "gym.make")]
    assert order == ["determinism.apply", "AppLauncher", "gym.make"]
    [launch] = _calls(fake_isaaclab, "AppLauncher")
    assert launch["deterministic_algorithms"] and launch["cublas_workspace_config"] == ":4096:8"


def test_seedlock_train_closes_the_env_and_then_isaac_sim_at_the_end(fake_isaaclab: ModuleType, tmp_path: Path) -> None:
    _train(tmp_path, "agent=cartpole/rsl_rl")
    assert [name for name, _ in fake_isaaclab.CALLS][-2:] == ["env.close", "app.close"]


def test_a_run_cannot_continue_from_a_checkpoint_and_isaac_sim_is_not_started(fake_isaaclab: ModuleType) -> None:
    with pytest.raises(tasks.TaskConfigError, match="cannot continue from a checkpoint"):
        _make("checkpoint=runs/some/checkpoints/model_1.pt")
    assert not _calls(fake_isaaclab, "AppLauncher")


def test_isaac_sim_starts_once_per_process(fake_isaaclab: ModuleType) -> None:
    _make()
    with pytest.raises(tasks.TaskConfigError, match="already started in this process"):
        _make()


@pytest.mark.parametrize("library", ["rl_games", "rsl_rl", "sb3", "skrl"])
def test_every_library_has_an_isaaclab_agent_config(library: str) -> None:
    agent = compose_config("task=isaaclab", f"trainer={library}").agent
    assert agent.max_iterations >= 1
    if library == "rl_games":
        assert "cnn" in agent.network  # Isaac Lab's camera Cartpole agent, for the default task.id
    if library == "skrl":
        assert "conv2d" in str(agent.models.policy.network)


def test_seedlock_train_runs_end_to_end_on_the_fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command line, in its own process, with the fakes on PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")])))
    run_train(*FAKE_TASK, "agent=cartpole/rsl_rl", "max_iterations=2", "determinism=strict", f"run_dir={tmp_path / 'run'}")
    assert len(read_fingerprints(tmp_path / "run" / "fingerprints.jsonl")) == 2
    renderer = json.loads((tmp_path / "run" / "manifest.json").read_text())["renderer"]
    kit = Path(__file__).resolve().parent.parent / "kits" / "seedlock.headless.rendering.deterministic.kit"
    assert renderer["name"] == "deterministic" and renderer["kit"] == str(kit)  # strict brought the kit
