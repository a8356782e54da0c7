"""Pixel CartPole end to end, in separate processes: every library trains its CNN policy
reproducibly, the manifest records the rendering applied, and determinism=strict brings the
deterministic renderer with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import TRAINERS, TrainedRuns, compose_config, run_train

PIXELS = ("task=cartpole_rgb", "num_envs=16", "max_iterations=2")


# rsl_rl in make test; rl_games', SB3's and skrl's CNNs in make test-all (~11-25 s each on 2 cores).
@pytest.mark.parametrize(
    "trainer",
    [pytest.param(t, marks=[pytest.mark.xdist_group(t)] + ([] if t == "rsl_rl" else [pytest.mark.slow]))
     for t in TRAINERS],
)
def test_two_processes_on_pixels_identical_fingerprints(trained_runs: TrainedRuns, trainer: str) -> None:
    files = [pixel_run(trained_runs, trainer, name) / "fingerprints.jsonl" for name in ("a", "b")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == [0, 1]


def pixel_run(trained_runs: TrainedRuns, trainer: str, name: str) -> Path:
    return trained_runs.get(f"pixels-{trainer}-{name}", f"trainer={trainer}", *PIXELS, "seed=5", "renderer=deterministic")


@pytest.mark.xdist_group("rsl_rl")
def test_manifest_records_the_renderer_settings_applied(trained_runs: TrainedRuns) -> None:
    renderer = json.loads((pixel_run(trained_runs, "rsl_rl", "a") / "manifest.json").read_text())["renderer"]
    assert renderer == {
        "name": "deterministic",
        "embedded": {"supersampling": 2, "precision": "float32", "channels_last": False},
    }
    state = json.loads((trained_runs.base("rsl_rl") / "manifest.json").read_text())["renderer"]
    assert state["name"] == "default" and "embedded" not in state and "kit" not in state


def test_strict_determinism_implies_the_deterministic_renderer() -> None:
    strict = compose_config("determinism=strict")
    assert strict.renderer.name == "deterministic" and strict.torch_deterministic
    assert strict.renderer.kit == "seedlock.headless.rendering.deterministic.kit"
    assert compose_config().renderer.name == "default"
    # a renderer named on the command line still wins, and the run says what that means
    assert compose_config("determinism=strict", "renderer=default").renderer.name == "default"


def test_strict_with_the_default_renderer_warns(tmp_path: Path) -> None:
    result = run_train(*PIXELS, "determinism=strict", "renderer=default", f"run_dir={tmp_path / 'r'}")
    assert "determinism=strict with renderer=default" in result.stderr


def test_record_frames_writes_what_the_policy_saw(tmp_path: Path) -> None:
    result = run_train(*PIXELS, "+task.env.record_frames=8", f"run_dir={tmp_path / 'r'}")
    assert (tmp_path / "r" / "policy_view.gif").is_file()
    assert "policy_view.gif" in result.stdout
