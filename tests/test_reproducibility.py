"""End to end, in separate processes: the same config is the same run, bit for bit, for every library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import BASE_RUN, TRAINER_PARAMS, TrainedRuns, run_train


@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
def test_two_processes_same_config_identical_fingerprints(trained_runs: TrainedRuns, trainer: str) -> None:
    files = [trained_runs.base(trainer, name) / "fingerprints.jsonl" for name in ("base", "repeat")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == [0, 1, 2, 3, 4]


@pytest.mark.slow  # make test-all; make test: seedlock-verify names iteration 0 for two seeds (test_verify)
@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
def test_different_seed_changes_the_first_fingerprint(trained_runs: TrainedRuns, trainer: str) -> None:
    a = read_fingerprints(trained_runs.base(trainer) / "fingerprints.jsonl")
    b = read_fingerprints(trained_runs.base(trainer, "seed4", "seed=4") / "fingerprints.jsonl")
    assert a[0]["parameters_sha256"] != b[0]["parameters_sha256"]


def test_random_seed_is_recorded_and_continued_and_reproduces_the_run(tmp_path: Path) -> None:
    drawn = run_train(*BASE_RUN, "seed=-1", f"run_dir={tmp_path / 'drawn'}")
    seed = json.loads((tmp_path / "drawn" / "manifest.json").read_text())["seed"]
    assert f"drew seed {seed}" in drawn.stdout and f"repeat this run with seed={seed}" in drawn.stdout
    whole = (tmp_path / "drawn" / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    repeat = run_train(*BASE_RUN, f"seed={seed}", f"run_dir={tmp_path / 'repeat'}")
    assert "drew seed" not in repeat.stdout
    assert (tmp_path / "repeat" / "fingerprints.jsonl").read_text().splitlines(keepends=True) == whole
    # The same command (seed=-1) plus checkpoint= continues with the checkpointed seed.
    resumed = run_train(*BASE_RUN, "seed=-1", f"run_dir={tmp_path / 'resumed'}",
                        f"checkpoint={tmp_path / 'drawn' / 'checkpoints' / 'model_2.pt'}")
    assert f"continues the checkpointed run's seed {seed}" in resumed.stdout
    assert (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines(keepends=True) == whole[3:]
