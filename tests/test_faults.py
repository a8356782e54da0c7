"""Faults of the machine: a read-only or full disk under the run dir, the disk filling while a
checkpoint is written, two runs started at once on one run dir, no display for a GIF.

The disks are real: a tmpfs of a few KB, mounted in a private mount namespace (``unshare``, as an
unprivileged user too), which the kernel fills and refuses to write exactly as a full or read-only
disk.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import SEEDLOCK_PLAY, SEEDLOCK_TRAIN, run_train

MOUNT_THEN_RUN = 'mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", MOUNT_THEN_RUN, "sh", "size=4k", "/mnt", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _can_mount(), reason="needs unshare with user and mount namespaces")


def on_tmpfs(options: str, mount_point: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script args`` with a tmpfs (``options``) mounted on ``mount_point``, privately."""
    mount_point.mkdir(parents=True, exist_ok=True)
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", MOUNT_THEN_RUN, "sh", options,
               str(mount_point), "sh", "-c", script, "sh", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@needs_mounts
@pytest.mark.parametrize(("options", "reason"), [("ro,size=64k", "Read-only file system"), ("size=4k", "No space left on device")])
def test_a_read_only_or_full_disk_under_the_run_dir_is_one_paragraph(tmp_path: Path, options: str, reason: str) -> None:
    disk = tmp_path / "disk"
    fill = f"dd if=/dev/zero of={shlex.quote(str(disk / 'fill'))} bs=4k count=1 2>/dev/null; " if "ro" not in options else ""
    # seedlock-train, then its exit code and what is left on the disk
    script = f'{fill}"$@"; echo "exit=$?"; ls -A {shlex.quote(str(disk))}'
    result = on_tmpfs(options, disk, script, *SEEDLOCK_TRAIN, "num_envs=4", "max_iterations=1", f"run_dir={disk / 'run'}")
    assert "exit=2" in result.stdout, result.stdout + result.stderr
    assert f"run_dir='{disk / 'run'}'" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.stderr
    assert "run" not in result.stdout.split("exit=2")[1].split()  # no half-written run dir


DISK_FILLS_DURING_CHECKPOINT = textwrap.dedent(
    """
    import errno, os, sys
    from pathlib import Path
    import torch
    from omegaconf import OmegaConf
    from tasks.cartpole import CartpoleEnv
    from trainers.interface import TrainingRun, save_checkpoint

    run_dir = Path(sys.argv[1])
    cfg = OmegaConf.create({"task": {"name": "cartpole"}, "trainer": {"name": "rsl_rl"}, "device": "cpu"})
    run = TrainingRun(CartpoleEnv(4, seed=0), cfg, run_dir, 0, None)
    save_checkpoint(run, 0, {"weights": torch.ones(1000)})
    # Fill the disk up to 16 KB, less than the next checkpoint needs.
    stat = os.statvfs(run_dir)
    with open(run_dir / "filler", "wb", buffering=0) as filler:
        filler.write(b"x" * (stat.f_bavail * stat.f_frsize - 16384))
    try:
        save_checkpoint(run, 1, {"weights": torch.ones(100_000)})
    except OSError as error:
        print("failed:", errno.errorcode[error.errno])
    left = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    payload = torch.load(run_dir / "checkpoints" / "model_0.pt", weights_only=True)
    print("left:", left, "loadable:", torch.equal(payload["library"]["weights"], torch.ones(1000)))
    """
)


@needs_mounts
def test_a_disk_that_fills_while_a_checkpoint_is_written_keeps_the_previous_one_loadable(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    result = on_tmpfs("size=512k", disk, '"$@"', sys.executable, "-c", DISK_FILLS_DURING_CHECKPOINT, str(disk))
    assert "failed: ENOSPC" in result.stdout, result.stdout + result.stderr
    # The half-written file is gone, model_1.pt never took its name, and model_0.pt loads.
    assert "left: ['model_0.pt'] loadable: True" in result.stdout, result.stdout + result.stderr


def test_two_runs_started_at_once_on_one_run_dir_one_runs_and_one_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [*SEEDLOCK_TRAIN, "num_envs=64", "max_iterations=3", f"run_dir={run_dir}"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((process.wait(timeout=300), process.communicate()[1]) for process in processes)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    refusal = outcomes[1][1]
    assert f"run_dir='{run_dir}'" in refusal and ("in use" in refusal or "already holds a run" in refusal)
    assert "Traceback" not in refusal
    assert (run_dir / "fingerprints.jsonl").read_text().count("\n") == 3  # the one run, whole


@pytest.mark.slow  # trains, then plays with no GL: make test-all
def test_a_gif_with_no_display_and_no_gl_is_one_paragraph(tmp_path: Path) -> None:
    run_train("task=gym/Ant-v5", "num_envs=2", "max_iterations=1", "trainer=rsl_rl", f"run_dir={tmp_path / 'ant'}")
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "PYOPENGL_PLATFORM")}
    env["MUJOCO_GL"] = "glfw"  # a window-system context, with no display to open it on
    command = [*SEEDLOCK_PLAY, f"checkpoint={tmp_path / 'ant'}", "episodes=1", "gif_frames=3", f"gif={tmp_path / 'ant.gif'}"]
    played = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert played.returncode == 2 and "Traceback" not in played.stderr, played.stderr
    assert "gif= cannot film task.id='Ant-v5'" in played.stderr and "MUJOCO_GL=egl" in played.stderr
    assert not (tmp_path / "ant.gif").exists()


@pytest.mark.slow  # about 19 s: make test-all
@needs_mounts
def test_a_run_whose_disk_fills_says_so_keeps_its_checkpoints_and_continues_as_the_same_run(tmp_path: Path) -> None:
    """The disk fills mid-run (about 72 KB a checkpoint on 300 KB): one paragraph that names the
    intact checkpoint, and continuing from it elsewhere gives the uninterrupted run's iterations."""
    disk, continued = tmp_path / "disk", tmp_path / "continued"
    size = ("num_envs=64", "max_iterations=8", "trainer.checkpoint_interval=1", "determinism.num_threads=1")
    continue_it = " ".join(shlex.quote(arg) for arg in [*SEEDLOCK_TRAIN, *size, f"checkpoint={disk / 'run'}", f"run_dir={continued}"])
    script = f'"$@"; echo "exit=$?"; {continue_it}'
    result = on_tmpfs("size=300k", disk, script, *SEEDLOCK_TRAIN, *size, f"run_dir={disk / 'run'}")
    assert "exit=2" in result.stdout, result.stdout + result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("seedlock-train: error:"))
    assert f"run_dir='{disk / 'run'}'" in error and "No space left on device" in error and "is intact" in error
    assert "Traceback" not in result.stderr
    whole = tmp_path / "whole"
    run_train(*size, f"run_dir={whole}")
    lines = (whole / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    resumed = (continued / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    assert 0 < len(resumed) < len(lines) and resumed == lines[-len(resumed):]
