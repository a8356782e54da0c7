"""seedlock-play: a checkpoint evaluated twice gives the same numbers, and the run dir is left alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.support import SMALL, TRAINERS, run_play, run_train

def tree_digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*")) if path.is_file()
    }


@pytest.mark.parametrize("trainer", TRAINERS)
def test_playing_a_checkpoint_twice_gives_the_same_returns_and_leaves_the_run_alone(tmp_path: Path, trainer: str) -> None:
    run_dir = tmp_path / "run"
    run_train(f"trainer={trainer}", *SMALL, f"run_dir={run_dir}")
    before = tree_digest(run_dir)
    results = []
    for name in ("a", "b"):
        played = run_play(f"checkpoint={run_dir}", "episodes=3", f"out={tmp_path / name}.json")
        assert played.returncode == 0, played.stderr
        results.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert results[0] == results[1]
    assert results[0]["checkpoint"].endswith("model_2.pt") and len(results[0]["returns"]) == 3
    assert "3 episodes of" in played.stdout and "±" in played.stdout
    assert tree_digest(run_dir) == before


def test_play_films_episode_one_as_a_gif(tmp_path: Path) -> None:
    run_train(*SMALL, f"run_dir={tmp_path / 'run'}")
    played = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=2", "gif_frames=20", f"gif={tmp_path / 'play.gif'}")
    assert played.returncode == 0, played.stderr
    with Image.open(tmp_path / "play.gif") as gif:
        assert gif.n_frames == 20 and gif.size == (160, 80)
    shown = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=2", "progress=true")
    assert "episodes" in shown.stderr and "2/2" in shown.stderr  # the bar, on stderr
    assert "2/2" not in played.stderr  # progress=auto: no bar when stderr is not a terminal
    again = run_play(f"checkpoint={tmp_path / 'run'}", f"gif={tmp_path / 'play.gif'}")
    assert again.returncode == 2 and "never replaces a file" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("episodes=2",), "checkpoint= is required"),
        (("checkpoint=/no/such/run",), "does not exist"),
        (("checkpoint=/tmp", "episodes=0"), "episodes=0 is not valid"),
    ],
)
def test_bad_play_input_exits_2_with_one_paragraph(args: tuple[str, ...], message: str) -> None:
    played = run_play(*args)
    assert played.returncode == 2 and message in played.stderr and "Traceback" not in played.stderr


def test_play_films_a_pixel_task_through_its_camera(tmp_path: Path) -> None:
    run_train("task=cartpole_rgb", "num_envs=8", "max_iterations=1", f"run_dir={tmp_path / 'run'}")
    played = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=2", "gif_frames=5", f"gif={tmp_path / 'camera.gif'}")
    assert played.returncode == 0, played.stderr
    with Image.open(tmp_path / "camera.gif") as gif:  # the 64x32 camera frame, each pixel 4x4
        assert gif.n_frames == 5 and gif.size == (256, 128)
