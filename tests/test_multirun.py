"""Hydra multirun: every library × seed is its own job, run dir and manifest, and a job run
inside a sweep is the same run as the same config run alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import TRAINERS, run_train
from trainers.sweep import JOB_STATUS_FILE, SWEEP_SUMMARY_FILE, summarize_sweep

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


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(path for path in sweep_dir.iterdir() if path.is_dir() and not path.name.startswith("."))


def check_completed_sweep(sweep_dir: Path, trainers: tuple[str, ...], seeds: tuple[int, ...]) -> None:
    """Every job has its own run dir with a manifest naming its job number and the sweep dir, a
    completed job_status.json, and the sweep summary counts them all."""
    dirs = job_dirs(sweep_dir)
    assert len(dirs) == len(trainers) * len(seeds)
    found = set()
    for job_dir in dirs:
        manifest = json.loads((job_dir / "manifest.json").read_text())
        status = json.loads((job_dir / JOB_STATUS_FILE).read_text())
        assert manifest["run"]["sweep_dir"] == str(sweep_dir) and manifest["run"]["run_dir"] == str(job_dir)
        assert manifest["run"]["job_num"] == status["job_num"] and job_dir.name.startswith(f"{status['job_num']}_")
        assert status["status"] == "completed"
        assert (job_dir / "fingerprints.jsonl").read_text().count("\n") == 2
        config = (job_dir / "config.yaml").read_text()
        found.add((next(t for t in trainers if f"name: {t}\n" in config), manifest["seed"]))
    assert found == {(trainer, seed) for trainer in trainers for seed in seeds}
    summary = json.loads((sweep_dir / SWEEP_SUMMARY_FILE).read_text())
    assert (summary["jobs"], summary["failed"]) == (len(dirs), 0)


@pytest.mark.slow  # make test-all: both parallel launchers (~45 s)
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_sweep_on_a_parallel_launcher_gives_every_job_its_run_dir(tmp_path: Path, launcher: str) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_train(
        "-m", f"hydra/launcher={launcher}", "trainer=rsl_rl,skrl", "seed=1,2", *SWEEP_SIZE,
        f"hydra.sweep.dir={sweep_dir}",
    )
    check_completed_sweep(sweep_dir, ("rsl_rl", "skrl"), (1, 2))
    assert "4 of 4 jobs completed" in result.stdout
    if launcher == "submitit_local":  # submitit's own job folder: one pickled job and its logs each
        assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 4
    # A job of a parallel sweep is the same run as the same config alone.
    run_train("trainer=skrl", "seed=2", *SWEEP_SIZE, f"run_dir={tmp_path / 'alone'}")
    job = next(d for d in job_dirs(sweep_dir) if d.name.endswith("skrl_seed2"))
    assert (job / "fingerprints.jsonl").read_bytes() == (tmp_path / "alone" / "fingerprints.jsonl").read_bytes()


def test_a_failing_job_is_reported_and_the_other_jobs_keep_their_results(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # Job 1 has a bad seed (seedlock's one-paragraph error), job 2 must still run after it.
    result = run_train("-m", "seed=1,-5,2", *SWEEP_SIZE, f"hydra.sweep.dir={sweep_dir}", check=False)
    assert result.returncode == 1, result.stderr
    assert "2 of 3 jobs completed" in result.stdout
    assert "FAILED job 1 (seed=-5" in result.stderr and "seed=-5 is not a valid seed" in result.stderr
    summary = json.loads((sweep_dir / SWEEP_SUMMARY_FILE).read_text())
    assert [job["status"] for job in summary["results"]] == ["completed", "failed", "completed"]
    for name in ("0_rsl_rl_seed1", "2_rsl_rl_seed2"):
        assert (sweep_dir / name / "fingerprints.jsonl").read_text().count("\n") == 2
        assert (sweep_dir / name / "summary.json").exists()
    assert [p.name for p in (sweep_dir / "1_rsl_rl_seed-5").iterdir()] == [JOB_STATUS_FILE]


def test_a_job_that_crashes_inside_the_library_keeps_its_traceback(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # A negative layer width composes (a list of ints) and fails inside torch.nn.Linear with a
    # RuntimeError, a fault rather than a value seedlock checks.
    result = run_train(
        "-m", "agent.actor.hidden_dims=[32,-5],[32,32]", *SWEEP_SIZE,
        f"hydra.sweep.dir={sweep_dir}", check=False,
    )
    assert result.returncode == 1
    crashed, completed = (json.loads((d / JOB_STATUS_FILE).read_text()) for d in job_dirs(sweep_dir))
    assert crashed["status"] == "failed" and "negative dimension" in crashed["error"]
    assert "Traceback" in crashed["traceback"]
    assert completed["status"] == "completed"
    assert "FAILED job 0" in result.stderr and "1 of 2 jobs completed" in result.stdout


def test_a_job_that_never_reported_counts_as_failed(tmp_path: Path) -> None:
    """A worker killed mid-job (OOM, a cluster's time limit) writes no job_status.json."""
    (tmp_path / "0_rsl_rl_seed1").mkdir()
    (tmp_path / "0_rsl_rl_seed1" / JOB_STATUS_FILE).write_text(
        json.dumps({"job_num": 0, "overrides": ["seed=1"], "status": "completed"})
    )
    summary = summarize_sweep(tmp_path, expected=[["seed=1"], ["seed=2"]])
    assert (summary["jobs"], summary["failed"]) == (2, 1)
    assert summary["results"][1]["overrides"] == ["seed=2"] and "never reported" in summary["results"][1]["error"]
