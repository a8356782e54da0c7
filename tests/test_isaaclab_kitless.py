"""The real Isaac Lab 3.x, kitless on Newton, on the CPU (``make test-isaaclab`` runs these in
.venv-isaaclab; elsewhere they are skipped): stand-in assets, and Isaac-Cartpole-Direct trained
through Isaac Lab's own wrapper, the same run bit for bit in two processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from determinism import read_fingerprints
from tasks.isaaclab import isaaclab_major
from tests.support import _command, run_train

pytestmark = [
    pytest.mark.isaaclab,
    pytest.mark.xdist_group("isaaclab"),  # the assets and warp's kernel cache, once
    pytest.mark.skipif(isaaclab_major() < 3, reason="needs Isaac Lab 3.x (make install-isaaclab)"),
]

SEEDLOCK_ISAACLAB_ASSETS = _command("seedlock-isaaclab-assets", "trainers.isaaclab_assets")
CARTPOLE = ("task=isaaclab/Isaac-Cartpole-Direct", "device=cpu", "num_envs=16", "max_iterations=3")


@pytest.fixture(scope="session")
def asset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isaaclab-assets")
    written = subprocess.run([*SEEDLOCK_ISAACLAB_ASSETS, str(root)], capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    return root


def test_the_stand_in_assets_are_where_isaac_lab_looks_and_never_replaced(asset_root: Path) -> None:
    for relative in ("Isaac/IsaacLab/Robots/Classic/Cartpole/cartpole.usd", "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd",
                     "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"):
        assert (asset_root / relative).is_file()
    again = subprocess.run([*SEEDLOCK_ISAACLAB_ASSETS, str(asset_root)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "never replaces a file" in again.stderr


def test_cartpole_direct_with_rsl_rl_is_the_same_run_in_two_processes(asset_root: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_train("trainer=rsl_rl", *CARTPOLE, f"task.asset_root={asset_root}", f"run_dir={tmp_path / name}", timeout=1200)
    files = [tmp_path / name / "fingerprints.jsonl" for name in ("a", "b")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == [0, 1, 2]
    launched = json.loads((tmp_path / "a" / "manifest.json").read_text())["renderer"]["isaacsim"]
    assert launched["kitless"] is True and launched["task_id"] == "Isaac-Cartpole-Direct"
