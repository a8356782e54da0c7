"""What a run leaves behind, and that an existing run is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support import TrainedRuns, run_train


@pytest.mark.xdist_group("rsl_rl")
def test_run_dir_holds_config_manifest_fingerprints_checkpoints_tensorboard(trained_runs: TrainedRuns) -> None:
    run_dir = trained_runs.base("rsl_rl")
    output = trained_runs.output(run_dir).stdout
    assert f"run dir: {run_dir}" in output
    # What the run is, said before anything slow.
    assert output.splitlines()[0] == (
        "seedlock: training task=cartpole with trainer=rsl_rl: 64 envs on cpu, seed 3, 5 iterations, "
        "torch_deterministic=false"
    )
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed"] == 3 and config["run_dir"] == str(run_dir) and config["num_envs"] == 64
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["run"]["overrides"][-1] == f"run_dir={run_dir}"
    assert len(manifest["config_sha256"]) == 64
    lines = (run_dir / "fingerprints.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2, 3, 4]
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["model_0.pt", "model_2.pt", "model_4.pt"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run_dir / ".seedlock.lock").exists()  # the lock goes with the run


@pytest.mark.slow  # make test-all; make test: an existing run dir is refused (below, and test_faults)
def test_default_run_dirs_are_never_reused(tmp_path: Path) -> None:
    for _ in range(2):
        run_train("num_envs=4", "max_iterations=1", cwd=tmp_path)
    assert len(list((tmp_path / "runs" / "cartpole_rsl_rl").iterdir())) == 2


@pytest.mark.xdist_group("rsl_rl")
def test_an_existing_run_is_refused_and_left_untouched(trained_runs: TrainedRuns) -> None:
    run_dir = trained_runs.base("rsl_rl")
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    result = run_train("num_envs=4", "max_iterations=1", f"run_dir={run_dir}", check=False)
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
