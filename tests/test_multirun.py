"""Hydra multirun: every library × seed is its own job, run dir and manifest, and a job run
inside a sweep is the same run as the same config run alone."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import TRAINERS, run_train

SWEEP_SIZE = ("num_envs=32", "max_iterations=2")


def test_sweep_over_libraries_and_seeds_runs_every_job_in_its_own_run_dir(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    run_train("-m", f"trainer={','.join(TRAINERS)}", "seed=1,2", *SWEEP_SIZE, f"hydra.sweep.dir={sweep_dir}")
    job_dirs = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert len(job_dirs) == 2 * len(TRAINERS)
    jobs = {}
    for job_dir in job_dirs:
        manifest = json.loads((job_dir / "manifest.json").read_text())
        assert manifest["run"]["run_dir"] == str(job_dir)
        assert manifest["run"]["sweep_dir"] == str(sweep_dir) and manifest["run"]["job_num"] is not None
        assert (job_dir / "fingerprints.jsonl").read_text().count("\n") == 2
        jobs[(manifest["run"]["overrides"][0], manifest["seed"])] = job_dir
    assert set(jobs) == {(f"trainer={trainer}", seed) for trainer in TRAINERS for seed in (1, 2)}

    # The last job of the sweep ran after every other library in the same process.
    last_trainer = TRAINERS[-1]
    run_train(f"trainer={last_trainer}", "seed=2", *SWEEP_SIZE, f"run_dir={tmp_path / 'alone'}")
    alone = (tmp_path / "alone" / "fingerprints.jsonl").read_bytes()
    assert (jobs[(f"trainer={last_trainer}", 2)] / "fingerprints.jsonl").read_bytes() == alone
