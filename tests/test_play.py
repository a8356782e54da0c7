"""seedlock-play: a checkpoint evaluated twice gives the same numbers, and the run dir is left alone."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.support import TRAINER_PARAMS, TrainedRuns, run_play, run_train
from trainers import play

def tree_digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*")) if path.is_file()
    }


@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
@pytest.mark.usefixtures("restore_torch_state")
def test_playing_a_checkpoint_twice_gives_the_same_returns_and_leaves_the_run_alone(
    trained_runs: TrainedRuns, tmp_path: Path, trainer: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = trained_runs.base(trainer)
    before = tree_digest(run_dir)
    results = []
    for name in ("a", "b"):  # in this process: play.main as its console script runs it
        monkeypatch.setattr(sys, "argv", ["seedlock-play", f"checkpoint={run_dir}", "episodes=3", f"out={tmp_path / name}.json"])
        play.main()
        results.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert results[0] == results[1]
    assert results[0]["checkpoint"].endswith("model_4.pt") and len(results[0]["returns"]) == 3
    assert "3 episodes of" in capsys.readouterr().out
    assert tree_digest(run_dir) == before


@pytest.mark.xdist_group("rsl_rl")
def test_play_films_episode_one_as_a_gif(trained_runs: TrainedRuns, tmp_path: Path) -> None:
    run_dir = trained_runs.base("rsl_rl")
    played = run_play(f"checkpoint={run_dir}", "episodes=2", "gif_frames=20", "progress=true", f"gif={tmp_path / 'play.gif'}")
    assert played.returncode == 0, played.stderr
    with Image.open(tmp_path / "play.gif") as gif:
        assert gif.n_frames == 20 and gif.size == (160, 80)
    assert "episodes" in played.stderr and "2/2" in played.stderr  # the bar, on stderr
    again = run_play(f"checkpoint={run_dir}", f"gif={tmp_path / 'play.gif'}")
    assert again.returncode == 2 and "never replaces a file" in again.stderr
    assert "2/2" not in again.stderr  # progress=auto: no bar when stderr is not a terminal


@pytest.mark.slow  # trains the camera task, then films it: make test-all
def test_play_films_a_pixel_task_through_its_camera(tmp_path: Path) -> None:
    run_train("task=cartpole_rgb", "num_envs=8", "max_iterations=1", f"run_dir={tmp_path / 'run'}")
    played = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=2", "gif_frames=5", f"gif={tmp_path / 'camera.gif'}")
    assert played.returncode == 0, played.stderr
    with Image.open(tmp_path / "camera.gif") as gif:  # the 64x32 camera frame, each pixel 4x4
        assert gif.n_frames == 5 and gif.size == (256, 128)
