"""``hydra/launcher=submitit_slurm`` (conf/hydra/launcher/submitit_slurm.yaml): the submitit plugin's
Slurm launcher, waiting for every job and keeping Slurm's word on each.

The plugin collects the jobs' results in order and raises the first job that has none, so one job
that Slurm ended (its time limit, ``scancel``, out of memory, a node's failure) ended the whole
sweep with a traceback while later jobs still ran, and no sweep summary was written. Here every job
is waited for, and each job's Slurm id and state (sacct's) go into ``<sweep dir>/slurm_jobs.json``,
written once the jobs are submitted and again when they have ended; the sweep summary
(trainers/sweep.py) reports a job Slurm ended by its state.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

# Hydra imports every module of hydra_plugins whenever it starts: seedlock's own modules (and what
# they import) are imported when a sweep is launched, not then.

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """The plugin's launcher (same settings, same jobs: submitit pickles this launcher and each job
    calls it), except in how the submitting side waits for the jobs and what it keeps of them."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from trainers.hydra_errors import EXIT_BAD_INPUT

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params = []
        for job_num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{job_num} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (list(overrides), "hydra.sweep.dir", job_num, f"job_id_for_{job_num}", Singleton.get_state())
            )
        said = io.StringIO()  # submitit prints sbatch's refusal as it is; it is said once, below
        try:
            with contextlib.redirect_stderr(said):
                jobs = self.executor(submitit).map_array(self, *zip(*job_params))
        except FailedJobError as error:  # sbatch said no: a partition, account, size it will not take
            print(f"seedlock-train: error: {refusal(str(error), self.params)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        sys.stderr.write(said.getvalue())
        records = [
            {"job_num": job_num, "overrides": list(overrides), "slurm_job_id": job.job_id, "state": "SUBMITTED"}
            for (overrides, _, job_num, _, _), job in zip(job_params, jobs)
        ]
        write_records(sweep_dir, records)
        returns = []
        for record, job in zip(records, jobs):
            try:
                returns.append(job.results()[0])
            except (UncompletedJobError, FailedJobError):
                # Slurm ended it, or it died outside the task function: the summary says which.
                returns.append(JobReturn(overrides=record["overrides"], status=JobStatus.COMPLETED, _return_value=None))
        for record, state in zip(records, final_states(jobs)):
            record["state"] = state
        write_records(sweep_dir, records)
        return returns

    def executor(self, submitit: Any) -> Any:
        """submitit's Slurm executor with this launcher's settings, as the plugin builds it."""
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in shared else f"slurm_{key}": value for key, value in params.items()})
        return executor


# The settings that decide whether sbatch accepts a job, named in its refusal.
SUBMISSION_KEYS = ("partition", "account", "qos", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "gres",
                   "constraint", "additional_parameters")


def refusal(sbatch_error: str, params: dict[str, Any]) -> str:
    """sbatch's refusal as one paragraph: its words, the launcher settings it was given, and the
    cluster's partitions."""
    said = "; ".join(line.strip() for line in sbatch_error.splitlines() if line.strip())
    asked = ", ".join(
        f"hydra.launcher.{key}={params[key]}" for key in SUBMISSION_KEYS if params.get(key) not in (None, {})
    )
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        sinfo = []
    partitions = ", ".join(name.rstrip("*") + (" (the default)" if name.endswith("*") else "") for name in sinfo)
    return (
        f"Slurm refused the sweep's jobs ({said}). They asked for {asked}."
        + (f" Partitions of this cluster (sinfo): {partitions}." if partitions else "")
        + " Set the launcher's keys for your cluster (hydra.launcher.partition, account, qos, the job's size), "
        "and see conf/hydra/launcher/submitit_slurm.yaml."
    )


def final_states(jobs: list[Any], wait_s: float = 60) -> list[str]:
    """Each job's state in sacct once Slurm has them all as ended: a job whose result has just been
    written can still be RUNNING there for a moment. One sacct call covers the whole array."""
    if not jobs:
        return []
    watcher = jobs[0].watcher
    deadline = time.monotonic() + wait_s
    while True:
        watcher.update()
        if all(watcher.is_done(job.job_id, mode="cache") for job in jobs) or time.monotonic() > deadline:
            return [watcher.get_state(job.job_id, mode="cache") for job in jobs]
        time.sleep(1)


def write_records(sweep_dir: Path, records: list[dict[str, Any]]) -> None:
    """``slurm_jobs.json``: this batch's jobs beside those of earlier batches (a sweeper may launch
    a sweep in several batches), by job number."""
    from trainers.sweep import SLURM_JOBS_FILE

    path = sweep_dir / SLURM_JOBS_FILE
    earlier = json.loads(path.read_text()) if path.is_file() else []
    numbers = {record["job_num"] for record in records}
    merged = [record for record in earlier if record["job_num"] not in numbers] + records
    path.write_text(json.dumps(sorted(merged, key=lambda record: record["job_num"]), indent=2) + "\n")
