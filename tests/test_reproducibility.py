"""End to end, in separate processes: the same config is the same run, bit for bit, for every library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from determinism import read_fingerprints
from tests.support import SMALL, TRAINERS, run_train


def _train(run_dir: Path, trainer: str, *overrides: str) -> list[dict]:
    run_train(f"trainer={trainer}", *SMALL, f"run_dir={run_dir}", *overrides)
    return read_fingerprints(run_dir / "fingerprints.jsonl")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_two_processes_same_config_identical_fingerprints(tmp_path: Path, trainer: str) -> None:
    _train(tmp_path / "a", trainer, "seed=3")
    _train(tmp_path / "b", trainer, "seed=3")
    files = [tmp_path / name / "fingerprints.jsonl" for name in ("a", "b")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == [0, 1, 2]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_different_seed_changes_the_first_fingerprint(tmp_path: Path, trainer: str) -> None:
    a = _train(tmp_path / "a", trainer, "seed=3")
    b = _train(tmp_path / "b", trainer, "seed=4")
    assert a[0]["parameters_sha256"] != b[0]["parameters_sha256"]


def test_random_seed_is_recorded_and_reproduces_the_run(tmp_path: Path) -> None:
    result = run_train(*SMALL, f"run_dir={tmp_path / 'r1'}", "seed=-1")
    run_train(*SMALL, f"run_dir={tmp_path / 'r2'}", "seed=-1")
    seeds = [json.loads((tmp_path / name / "manifest.json").read_text())["seed"] for name in ("r1", "r2")]
    assert seeds[0] != seeds[1]
    assert f"drew seed {seeds[0]}" in result.stdout
    repeat = _train(tmp_path / "repeat", "rsl_rl", f"seed={seeds[0]}")
    assert repeat == read_fingerprints(tmp_path / "r1" / "fingerprints.jsonl")
