"""Pixel CartPole end to end, in separate processes: every library trains its CNN policy
reproducibly, the manifest records the rendering applied, and determinism=strict brings the
deterministic renderer with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import TRAINERS, compose_config, run_train

PIXELS = ("task=cartpole_rgb", "num_envs=16", "max_iterations=2")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_two_processes_on_pixels_identical_fingerprints(tmp_path: Path, trainer: str) -> None:
    for name in ("a", "b"):
        run_train(f"trainer={trainer}", *PIXELS, "seed=5", f"run_dir={tmp_path / name}")
    files = [tmp_path / name / "fingerprints.jsonl" for name in ("a", "b")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == [0, 1]


def test_manifest_records_the_renderer_settings_applied(tmp_path: Path) -> None:
    run_train(*PIXELS, "renderer=deterministic", f"run_dir={tmp_path / 'pixels'}")
    renderer = json.loads((tmp_path / "pixels" / "manifest.json").read_text())["renderer"]
    assert renderer == {
        "name": "deterministic",
        "embedded": {"supersampling": 2, "precision": "float32", "channels_last": False},
    }
    run_train("task=cartpole", "num_envs=16", "max_iterations=1", f"run_dir={tmp_path / 'state'}")
    state = json.loads((tmp_path / "state" / "manifest.json").read_text())["renderer"]
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


def test_bad_renderer_setting_is_one_paragraph(tmp_path: Path) -> None:
    result = run_train(*PIXELS, "renderer.embedded.precision=float8", f"run_dir={tmp_path / 'r'}", check=False)
    assert result.returncode == 2
    assert "renderer.embedded.precision='float8' is not valid" in result.stderr and "float16" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
