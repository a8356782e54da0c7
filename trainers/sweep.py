"""Sweeps (``seedlock-train -m``): one job's failure is recorded, never the sweep's end.

Hydra's launchers run each job's task function and, when one raises, the sweep stops reporting:
the basic launcher raises the first failure after the batch, the submitit launcher raises it from
``job.results()``, and ``sys.exit`` (seedlock's exit for bad input) would end the basic launcher's
process before the remaining jobs ran. So inside a sweep a job never raises: :func:`run_sweep_job`
writes ``job_status.json`` in the job's dir (completed, or failed with the error) and returns, and
the :class:`SweepSummary` callback reads every job's status when the sweep ends, writes
``sweep_summary.json`` in the sweep dir, prints which jobs failed and exits 1 if any did.

On Slurm a job can also be requeued (pre-empted, timed out with ``max_num_timeout`` > 0, or
``scontrol requeue``): the same job starts again with the same arguments and Hydra gives it the same
job dir. A run dir is never reused, so a requeued job (``SLURM_RESTART_COUNT`` = N > 0) runs in
``<job dir>_requeue<N>`` instead, continuing from the latest checkpoint of its earlier attempts
(:func:`requeued_job`), exactly as ``checkpoint=<run dir>`` continues a run by hand; the earlier
attempts' run dirs stay as they were left. Slurm's job ids and states reach the summary through
``slurm_jobs.json``, which the Slurm launcher writes (trainers/slurm_launcher/submitit_slurm.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from trainers.interface import CheckpointError, resolve_checkpoint

JOB_STATUS_FILE = "job_status.json"
SWEEP_SUMMARY_FILE = "sweep_summary.json"
# Each job's Slurm id and final state, written by trainers/slurm_launcher/submitit_slurm.py.
SLURM_JOBS_FILE = "slurm_jobs.json"
EXIT_SOME_JOBS_FAILED = 1
# Set by Slurm in a job it started again (requeued): how many times it has been restarted.
RESTART_COUNT_VARIABLE = "SLURM_RESTART_COUNT"

# conf/hydra/launcher/{joblib,submitit_local,submitit_slurm}.yaml keep the plugins' names so that
# `hydra/launcher=joblib` picks seedlock's settings; Hydra then validates each against the plugin's
# schema of the same name (wanted: a typo'd launcher key fails) and warns that this matching is
# deprecated. Without the matching (a later Hydra) the files still load, unvalidated.
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/(joblib|submitit_local|submitit_slurm)' is validated against ConfigStore schema"
)


def in_sweep() -> bool:
    """True inside a job of ``seedlock-train -m`` (whatever the launcher)."""
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def restart_count() -> int:
    """How many times Slurm has requeued this sweep job: 0 for its first start, and for a job that
    hydra/launcher=submitit_slurm did not submit (a sweep run inside someone's own Slurm job)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":  # set by submitit's sbatch script
        return 0
    value = os.environ.get(RESTART_COUNT_VARIABLE, "").strip()
    return int(value) if value.isdigit() else 0


def attempt_dir(job_dir: Path, restart: int) -> Path:
    """The run dir of a sweep job's attempt: Hydra's job dir first, ``<job dir>_requeue<N>`` for
    Slurm's N-th restart of the job."""
    return job_dir if restart == 0 else job_dir.with_name(f"{job_dir.name}_requeue{restart}")


def job_run_dir() -> Path:
    """This sweep job's run dir (this attempt's, when Slurm has requeued the job)."""
    return attempt_dir(Path(HydraConfig.get().runtime.output_dir), restart_count())


@dataclass(frozen=True)
class Requeue:
    """Slurm's restart ``restart`` of a sweep job, and the checkpoint it continues from: the latest
    one written by its earlier attempts (None when none wrote one: it starts over)."""

    restart: int
    run_dir: Path
    checkpoint: Path | None


def requeued_job() -> Requeue | None:
    """None unless Slurm has requeued this job; then where this attempt runs and continues from.
    Attempts are searched newest first, so a chain of requeues continues where the last one got."""
    restart = restart_count()
    if restart == 0:
        return None
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    for earlier in range(restart - 1, -1, -1):
        try:
            checkpoint = resolve_checkpoint(attempt_dir(job_dir, earlier))
        except CheckpointError:
            continue
        return Requeue(restart, attempt_dir(job_dir, restart), checkpoint)
    return Requeue(restart, attempt_dir(job_dir, restart), None)


def run_sweep_job(
    train: Callable[[DictConfig], Any], cfg: DictConfig, user_errors: tuple[type[Exception], ...]
) -> dict[str, Any]:
    """Run one job and record how it ended in ``<job dir>/job_status.json``.

    A user error (bad value for this job) is one paragraph; anything else keeps its traceback in
    the status file, so the cause is not lost with the worker's stderr. A job Slurm requeued
    continues its earlier attempt into a run dir of its own (module docstring).
    """
    hydra_cfg = HydraConfig.get()
    job_dir = job_run_dir()
    status: dict[str, Any] = {
        "job_num": hydra_cfg.job.get("num"),
        "job_id": hydra_cfg.job.get("id"),
        "overrides": list(hydra_cfg.overrides.task),
        "run_dir": str(job_dir),
    }
    requeue = requeued_job()
    if requeue is not None:
        status["restart_count"] = requeue.restart
        continue_requeued_job(cfg, requeue, status)
    start = time.perf_counter()
    try:
        train(cfg)
        status["status"] = "completed"
    except user_errors as error:
        status.update(status="failed", error=str(error))
        print(f"seedlock-train: job {status['job_num']} failed: {error}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - a sweep outlives any one job's crash
        if is_slurm_time_limit(error):
            status.update(status="failed", reason="time limit", error=time_limit_message(job_dir))
            print(f"seedlock-train: job {status['job_num']} failed: {status['error']}", file=sys.stderr)
        else:
            status.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
            print(f"seedlock-train: job {status['job_num']} failed:\n{status['traceback']}", file=sys.stderr)
    status["seconds"] = round(time.perf_counter() - start, 3)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / JOB_STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
    return status


def continue_requeued_job(cfg: DictConfig, requeue: Requeue, status: dict[str, Any]) -> None:
    """Point ``checkpoint=`` at the earlier attempts' latest checkpoint (a job that never wrote one
    starts over, from the sweep's own ``checkpoint=`` if it had one)."""
    job_id = status["job_id"]
    if requeue.checkpoint is None:
        print(
            f"seedlock: Slurm requeued job {job_id} (restart {requeue.restart}); no earlier attempt wrote a "
            f"checkpoint, so it starts over in {requeue.run_dir}"
        )
        return
    cfg.checkpoint = str(requeue.checkpoint)
    status["continued_from"] = str(requeue.checkpoint)
    print(
        f"seedlock: Slurm requeued job {job_id} (restart {requeue.restart}): continuing from "
        f"{requeue.checkpoint} in a new run dir, {requeue.run_dir}; the earlier run dir is left as it was"
    )


def is_slurm_time_limit(error: Exception) -> bool:
    """submitit's answer to Slurm's warning signal before the time limit when the job is not to be
    requeued (``max_num_timeout`` used up): it raises UncompletedJobError in the job's main thread,
    wherever training is. (A pre-empted job is always requeued: it exits and starts again.)"""
    from submitit.core.utils import UncompletedJobError

    return isinstance(error, UncompletedJobError)


def time_limit_message(run_dir: Path) -> str:
    launcher = HydraConfig.get().launcher
    limit, requeues = launcher.get("timeout_min"), launcher.get("max_num_timeout")
    try:
        kept = f"continue it with checkpoint={run_dir} (its latest checkpoint is {resolve_checkpoint(run_dir)})"
    except CheckpointError:
        kept = "it wrote no checkpoint (lower trainer.checkpoint_interval to keep one)"
    return (
        f"timed out: the job reached its Slurm time limit (hydra.launcher.timeout_min={limit}) and was not "
        f"requeued (hydra.launcher.max_num_timeout={requeues}). The run so far is kept in {run_dir}: {kept}, or "
        "let submitit requeue jobs at their time limit with hydra.launcher.max_num_timeout=N (each requeue "
        "continues the run into a new run dir)."
    )


def expected_jobs(config: DictConfig) -> list[list[str]]:
    """The jobs a basic-sweeper sweep launches (their overrides, in job-number order), from the
    sweep's command-line overrides; empty when they cannot be worked out (another sweeper)."""
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return []
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    assert isinstance(overrides, list)
    parsed = OverridesParser.create().parse_overrides(overrides=[str(o) for o in overrides])
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def summarize_sweep(sweep_dir: Path, expected: list[list[str]]) -> dict[str, Any]:
    """Every job's status from its ``job_status.json`` (a requeued job's latest attempt); a job
    expected but never reported (its worker died, the cluster killed it) is failed with that said,
    in Slurm's words when the Slurm launcher recorded the job's state."""
    reported: dict[Any, dict[str, Any]] = {}
    for path in sorted(sweep_dir.glob(f"*/{JOB_STATUS_FILE}")):
        status = json.loads(path.read_text())
        earlier = reported.get(status["job_num"])
        if earlier is None or status.get("restart_count", 0) >= earlier.get("restart_count", 0):
            reported[status["job_num"]] = status
    jobs = dict(reported)
    for job_num, overrides in enumerate(expected):
        if job_num not in jobs:
            jobs[job_num] = {
                "job_num": job_num, "overrides": overrides, "status": "failed",
                "error": "the job never reported: its process died or was never run (see the launcher's logs)",
            }
    slurm_jobs = read_slurm_jobs(sweep_dir)
    for job_num, record in slurm_jobs.items():
        job = jobs.setdefault(job_num, {"job_num": job_num, "overrides": record["overrides"], "status": "failed"})
        job.update(slurm_job_id=record["slurm_job_id"], slurm_state=record["state"])
        if job_num not in reported:
            job["error"] = slurm_end_message(sweep_dir, job_num, record)
            if (end := SLURM_ENDS.get(state_word(record["state"]))) is not None:
                job["reason"] = end[0]
    ordered = [jobs[num] for num in sorted(jobs, key=lambda num: (num is None, num))]
    failed = [job for job in ordered if job["status"] != "completed"]
    return {"sweep_dir": str(sweep_dir), "jobs": len(ordered), "failed": len(failed), "results": ordered}


# What Slurm's final state of a job that never reported means (sacct's State, its first word).
SLURM_ENDS = {
    "TIMEOUT": ("time limit", "Slurm ended it at its time limit (hydra.launcher.timeout_min)"),
    "CANCELLED": ("cancelled", "it was cancelled (scancel, or an administrator)"),
    "OUT_OF_MEMORY": ("out of memory", "it ran out of memory (hydra.launcher.mem_gb)"),
    "NODE_FAIL": ("node failure", "its node failed"),
    "PREEMPTED": ("pre-empted", "it was pre-empted and not requeued"),
    "BOOT_FAIL": ("node failure", "its node failed to boot"),
    "DEADLINE": ("deadline", "it reached its deadline"),
    "FAILED": ("died", "its process ended with an error before the job reported (its logs: the sweep's .submitit/)"),
}


def state_word(state: str) -> str:
    """sacct's State without what follows its first word ("CANCELLED by 0" -> "CANCELLED")."""
    return (str(state).split() or ["UNKNOWN"])[0]


def read_slurm_jobs(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    path = sweep_dir / SLURM_JOBS_FILE
    if not path.is_file():
        return {}
    return {int(record["job_num"]): record for record in json.loads(path.read_text())}


def slurm_end_message(sweep_dir: Path, job_num: int, record: dict[str, Any]) -> str:
    """Why a Slurm job never reported, and what it left: the run dir of its latest attempt and how
    to continue it."""
    meaning = SLURM_ENDS.get(state_word(record["state"]), ("", "it ended without reporting"))[1]
    message = f"Slurm job {record['slurm_job_id']} ended {record['state']}: {meaning}."
    run_dir = latest_attempt(sweep_dir, job_num)
    if run_dir is None or not (run_dir / "fingerprints.jsonl").is_file():
        return f"{message} It trained no iteration."
    iterations = sum(1 for _ in (run_dir / "fingerprints.jsonl").open())
    try:
        resolve_checkpoint(run_dir)
    except CheckpointError:
        return f"{message} It trained {iterations} iterations in {run_dir} and wrote no checkpoint."
    return f"{message} It trained {iterations} iterations in {run_dir}: continue it with checkpoint={run_dir}."


def latest_attempt(sweep_dir: Path, job_num: int) -> Path | None:
    """The run dir that job ``job_num``'s latest attempt wrote (its manifest names the job)."""
    attempts = []
    for manifest_path in sweep_dir.glob("*/manifest.json"):
        run = json.loads(manifest_path.read_text()).get("run", {})
        if run.get("job_num") == job_num:
            attempts.append((run.get("restart_count") or 0, manifest_path.parent))
    return max(attempts)[1] if attempts else None


def print_sweep_summary(summary: dict[str, Any]) -> None:
    failed = [job for job in summary["results"] if job["status"] != "completed"]
    done = summary["jobs"] - len(failed)
    for job in summary["results"]:  # a Slurm sweep: every job's id and state, as sacct has them
        if "slurm_job_id" in job:
            print(f"seedlock: job {job['job_num']} ({' '.join(job['overrides'])}): {slurm_line(job)}")
    print(f"seedlock: sweep {summary['sweep_dir']}: {done} of {summary['jobs']} jobs completed")
    for job in failed:
        print(
            f"seedlock: FAILED job {job['job_num']} ({' '.join(job['overrides'])}): {job['error']}",
            file=sys.stderr,
        )


def slurm_line(job: dict[str, Any]) -> str:
    """How a job ended, then Slurm's id and state for it."""
    line = job["status"] + (f" ({job['reason']})" if job.get("reason") else "")
    if job["status"] == "completed" and job.get("run_dir"):
        line += f" in {job['run_dir']}"
    if job.get("restart_count"):
        line += f" after {job['restart_count']} requeue{'s' if job['restart_count'] > 1 else ''}"
        if job.get("continued_from"):
            line += f" (continued from {job['continued_from']})"
    return f"{line}; Slurm job {job['slurm_job_id']} {job['slurm_state']}"


class SweepSummary(Callback):
    """Hydra callback (conf/train.yaml ``hydra.callbacks``): the sweep's outcome, job by job."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        summary = summarize_sweep(sweep_dir, expected_jobs(config))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        print_sweep_summary(summary)
        if summary["failed"]:
            sys.exit(EXIT_SOME_JOBS_FAILED)

