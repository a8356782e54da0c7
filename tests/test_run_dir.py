"""What a run leaves behind, and that an existing run is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support import SMALL, run_train


def test_run_dir_holds_config_manifest_fingerprints_checkpoints_tensorboard(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train(*SMALL, f"run_dir={run_dir}", "seed=11")
    assert f"run dir: {run_dir}" in result.stdout
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed"] == 11 and config["run_dir"] == str(run_dir) and config["num_envs"] == 64
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["run"]["overrides"][-1] == "seed=11"
    assert len(manifest["config_sha256"]) == 64
    lines = (run_dir / "fingerprints.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2]
    assert (run_dir / "checkpoints" / "model_2.pt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_default_run_dirs_are_never_reused(tmp_path: Path) -> None:
    for _ in range(2):
        run_train(*SMALL, f"hydra.run.dir={tmp_path}/runs/${{now:%Y-%m-%d_%H-%M-%S_%f}}")
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_an_existing_run_is_refused_and_left_untouched(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_train(*SMALL, f"run_dir={run_dir}")
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    result = run_train(*SMALL, f"run_dir={run_dir}", check=False)
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
