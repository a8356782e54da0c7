"""Sweeps (``seedlock-train -m``): one job's failure is recorded, never the sweep's end.

Hydra's launchers run each job's task function and, when one raises, the sweep stops reporting:
the basic launcher raises the first failure after the batch, the submitit launcher raises it from
``job.results()``, and ``sys.exit`` (seedlock's exit for bad input) would end the basic launcher's
process before the remaining jobs ran. So inside a sweep a job never raises: :func:`run_sweep_job`
writes ``job_status.json`` in the job's dir (completed, or failed with the error) and returns, and
the :class:`SweepSummary` callback reads every job's status when the sweep ends, writes
``sweep_summary.json`` in the sweep dir, prints which jobs failed and exits 1 if any did.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

JOB_STATUS_FILE = "job_status.json"
SWEEP_SUMMARY_FILE = "sweep_summary.json"
EXIT_SOME_JOBS_FAILED = 1

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


def run_sweep_job(
    train: Callable[[DictConfig], Any], cfg: DictConfig, user_errors: tuple[type[Exception], ...]
) -> dict[str, Any]:
    """Run one job and record how it ended in ``<job dir>/job_status.json``.

    A user error (bad value for this job) is one paragraph; anything else keeps its traceback in
    the status file, so the cause is not lost with the worker's stderr.
    """
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    status: dict[str, Any] = {
        "job_num": hydra_cfg.job.get("num"),
        "job_id": hydra_cfg.job.get("id"),
        "overrides": list(hydra_cfg.overrides.task),
        "run_dir": str(job_dir),
    }
    start = time.perf_counter()
    try:
        train(cfg)
        status["status"] = "completed"
    except user_errors as error:
        status.update(status="failed", error=str(error))
        print(f"seedlock-train: job {status['job_num']} failed: {error}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - a sweep outlives any one job's crash
        status.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        print(f"seedlock-train: job {status['job_num']} failed:\n{status['traceback']}", file=sys.stderr)
    status["seconds"] = round(time.perf_counter() - start, 3)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / JOB_STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
    return status


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
    """Every job's status from its ``job_status.json``; a job expected but never reported (its
    worker died, the cluster killed it) is failed with that said."""
    reported = {}
    for path in sorted(sweep_dir.glob(f"*/{JOB_STATUS_FILE}")):
        status = json.loads(path.read_text())
        reported[status["job_num"]] = status
    jobs = dict(reported)
    for job_num, overrides in enumerate(expected):
        if job_num not in jobs:
            jobs[job_num] = {
                "job_num": job_num, "overrides": overrides, "status": "failed",
                "error": "the job never reported: its process died or was never run (see the launcher's logs)",
            }
    ordered = [jobs[num] for num in sorted(jobs, key=lambda num: (num is None, num))]
    failed = [job for job in ordered if job["status"] != "completed"]
    return {"sweep_dir": str(sweep_dir), "jobs": len(ordered), "failed": len(failed), "results": ordered}


def print_sweep_summary(summary: dict[str, Any]) -> None:
    failed = [job for job in summary["results"] if job["status"] != "completed"]
    done = summary["jobs"] - len(failed)
    print(f"seedlock: sweep {summary['sweep_dir']}: {done} of {summary['jobs']} jobs completed")
    for job in failed:
        print(
            f"seedlock: FAILED job {job['job_num']} ({' '.join(job['overrides'])}): {job['error']}",
            file=sys.stderr,
        )


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

