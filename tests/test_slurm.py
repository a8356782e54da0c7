"""Sweeps on a real Slurm cluster (``make test-slurm`` starts one on this machine: slurmctld, slurmd,
slurmdbd over MariaDB; tests/slurm/start-cluster.sh): the jobs of ``hydra/launcher=submitit_slurm``
are Slurm jobs, a job that fails or that Slurm ends is reported with its state, a killed job
continues through Slurm as the same run, and a job Slurm requeues (pre-emption, time limit,
``scontrol requeue``) continues from its own latest checkpoint into a new run dir.

Without a running cluster every test here is skipped (``make test`` deselects them anyway).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SEEDLOCK_TRAIN, run_train
from trainers.sweep import JOB_STATUS_FILE, SLURM_JOBS_FILE, SWEEP_SUMMARY_FILE

pytestmark = pytest.mark.slurm

STATE_DIR = Path(os.environ.get("SEEDLOCK_SLURM_DIR", "/tmp/seedlock-slurm"))
PARTITION = os.environ.get("SEEDLOCK_SLURM_PARTITION", "seedlock")
URGENT_PARTITION = f"{PARTITION}-urgent"  # its jobs pre-empt the partition's (start-cluster.sh)
# The cluster is one node of this machine's cores: 1 GB a job, no GPU (and one core, unless asked).
SLURM_LAUNCHER = ("-m", "hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=1")
SMALL_JOB = ("num_envs=32", "max_iterations=2", "determinism.num_threads=1")
# A job long enough (about 20 s of training) to be interrupted after its first checkpoints.
LONG_RUN = ("trainer=rsl_rl", "num_envs=32", "trainer.checkpoint_interval=5", "determinism.num_threads=1")
LONG_JOB = (*LONG_RUN, "max_iterations=250", "seed=3")
LONG_JOB_DIR = "0_rsl_rl_seed3"


def cluster_problem(slurm_conf: Path) -> str | None:
    """Why no cluster answers at ``slurm_conf``, or None when its partition is up with accounting."""
    if not slurm_conf.is_file():
        return f"no {slurm_conf}"
    env = {**os.environ, "SLURM_CONF": str(slurm_conf)}
    try:
        answer = {"capture_output": True, "text": True, "env": env, "timeout": 20}
        sinfo = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%a"], **answer)
        sacct = subprocess.run(["sacct", "-n", "-X"], **answer)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"sinfo/sacct: {error}"
    if sinfo.returncode != 0 or sinfo.stdout.strip() != "up":
        return f"partition {PARTITION} is not up: {(sinfo.stdout + sinfo.stderr).strip()}"
    if sacct.returncode != 0:
        return f"sacct fails (no accounting): {sacct.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> Iterator[None]:
    """The cluster start-cluster.sh started (or the one SLURM_CONF names); skipped when none is up,
    unless SEEDLOCK_SLURM_REQUIRED is set (make test-slurm), where that is a failure."""
    slurm_conf = Path(os.environ.get("SLURM_CONF") or STATE_DIR / "etc" / "slurm.conf")
    if "SLURM_CONF" not in os.environ and not (STATE_DIR / "pids").is_file():
        problem: str | None = f"start-cluster.sh has not started one in {STATE_DIR}"  # asked no daemon
    else:
        problem = cluster_problem(slurm_conf)
    if problem is not None:
        message = f"no Slurm cluster is up ({problem}); make test-slurm starts one (tests/slurm/start-cluster.sh)"
        if os.environ.get("SEEDLOCK_SLURM_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(slurm_conf))
        yield


def sweep_overrides(sweep_dir: Path, overrides: tuple[str, ...], partition: str, cores: int) -> list[str]:
    return [
        *SLURM_LAUNCHER, f"hydra.launcher.partition={partition}", f"hydra.launcher.cpus_per_task={cores}", *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]


def slurm_sweep(
    sweep_dir: Path, *overrides: str, partition: str = PARTITION, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_train(*sweep_overrides(sweep_dir, overrides, partition, cores=1), check=check)


def start_slurm_sweep(sweep_dir: Path, *overrides: str, cores: int = 1) -> subprocess.Popen[str]:
    """A sweep left running, to be interrupted."""
    command = [*SEEDLOCK_TRAIN, *sweep_overrides(sweep_dir, overrides, PARTITION, cores)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(sweep: subprocess.Popen[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    stdout, stderr = sweep.communicate(timeout=timeout)
    return subprocess.CompletedProcess(sweep.args, sweep.returncode, stdout, stderr)


def wait_for_checkpoint(sweep: subprocess.Popen[str], run_dir: Path, iteration: int = 5) -> str:
    """Wait until the job has written ``model_<iteration>.pt``; its Slurm job id."""
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / f"model_{iteration}.pt").exists():
        if sweep.poll() is not None or time.monotonic() > deadline:
            result = finish(sweep)
            raise AssertionError(f"the job never wrote checkpoint {iteration}:\n{result.stdout}\n{result.stderr}")
        time.sleep(0.2)
    return slurm_jobs(run_dir.parent)[0]["slurm_job_id"]


def slurm_jobs(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / SLURM_JOBS_FILE).read_text())


def slurm(*command: str) -> None:
    """A Slurm command (scancel, scontrol, sbatch) that must succeed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"


def fingerprint_lines(run_dir: Path) -> list[str]:
    return (run_dir / "fingerprints.jsonl").read_text().splitlines(keepends=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """LONG_JOB run alone, never interrupted: its fingerprint lines."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_train(*LONG_JOB, f"run_dir={run_dir}")
    return fingerprint_lines(run_dir)


def test_a_sweep_of_two_libraries_and_two_seeds_is_a_slurm_job_array_of_runs_each_equal_to_the_run_alone(
    tmp_path: Path,
) -> None:
    sweep_dir = tmp_path / "sweep"
    result = slurm_sweep(sweep_dir, "trainer=rsl_rl,skrl", "seed=1,2", *SMALL_JOB)
    assert "4 of 4 jobs completed" in result.stdout
    records = slurm_jobs(sweep_dir)
    array_id = records[0]["slurm_job_id"].split("_")[0]
    assert [record["slurm_job_id"] for record in records] == [f"{array_id}_{task}" for task in range(4)]
    assert [record["state"] for record in records] == ["COMPLETED"] * 4
    for record, (trainer, seed) in zip(records, [(t, s) for t in ("rsl_rl", "skrl") for s in (1, 2)]):
        job_dir = sweep_dir / f"{record['job_num']}_{trainer}_seed{seed}"
        assert f"completed in {job_dir}; Slurm job {record['slurm_job_id']} COMPLETED" in result.stdout
        manifest = json.loads((job_dir / "manifest.json").read_text())
        assert manifest["run"]["job_id"] == record["slurm_job_id"] and manifest["run"]["restart_count"] == 0
        assert json.loads((job_dir / JOB_STATUS_FILE).read_text())["status"] == "completed"
        alone = tmp_path / f"alone_{trainer}_{seed}"
        run_train(f"trainer={trainer}", f"seed={seed}", *SMALL_JOB, f"run_dir={alone}")
        assert (job_dir / "fingerprints.jsonl").read_bytes() == (alone / "fingerprints.jsonl").read_bytes()


def test_a_job_with_a_bad_value_fails_alone_and_the_sweep_says_which_and_exits_1(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = slurm_sweep(sweep_dir, "seed=1,-5", *SMALL_JOB, check=False)
    assert result.returncode == 1, result.stderr
    assert "1 of 2 jobs completed" in result.stdout
    assert "FAILED job 1 (seed=-5" in result.stderr and "seed=-5 is not a valid seed" in result.stderr
    summary = json.loads((sweep_dir / SWEEP_SUMMARY_FILE).read_text())
    assert [job["status"] for job in summary["results"]] == ["completed", "failed"]
    assert [job["slurm_state"] for job in summary["results"]] == ["COMPLETED", "COMPLETED"]  # Slurm ran both
    assert len(fingerprint_lines(sweep_dir / "0_rsl_rl_seed1")) == 2


def test_the_launchers_cluster_settings_reach_slurm(tmp_path: Path) -> None:
    """account, qos, time, array parallelism, setup lines and an extra sbatch flag, as Slurm has them."""
    sweep_dir = tmp_path / "sweep"
    slurm_sweep(
        sweep_dir, "seed=1,2", *SMALL_JOB, "hydra.launcher.account=root", "hydra.launcher.qos=normal",
        "hydra.launcher.timeout_min=7", "hydra.launcher.array_parallelism=1",
        f"hydra.launcher.setup=['touch {tmp_path}/setup-ran-$SLURM_ARRAY_TASK_ID']",
        "+hydra.launcher.additional_parameters.comment=seedlock-settings",
    )
    array_id = slurm_jobs(sweep_dir)[0]["slurm_job_id"].split("_")[0]
    script = (sweep_dir / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%1\n" in script and "#SBATCH --comment=seedlock-settings\n" in script
    assert sorted(path.name for path in tmp_path.glob("setup-ran-*")) == ["setup-ran-0", "setup-ran-1"]
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", array_id, "-o", "JobID,Account,QOS,Timelimit,Start,End"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    rows = sorted(line.split("|") for line in sacct)
    assert [row[:4] for row in rows] == [[f"{array_id}_{task}", "root", "normal", "00:07:00"] for task in (0, 1)]
    assert rows[1][4] >= rows[0][5]  # array_parallelism=1: the second job started after the first ended


def test_a_partition_the_cluster_lacks_is_one_paragraph_naming_it_and_the_partitions(tmp_path: Path) -> None:
    result = slurm_sweep(tmp_path / "sweep", *SMALL_JOB, partition="nope", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and error[0].startswith(
        "seedlock-train: error: Slurm refused the sweep's jobs (sbatch: error: invalid partition specified: nope;"
    )
    assert "hydra.launcher.partition=nope" in error[0]
    assert f"Partitions of this cluster (sinfo): {PARTITION} (the default), {URGENT_PARTITION}." in error[0]
    assert not [path for path in (tmp_path / "sweep").iterdir() if not path.name.startswith(".") and path.is_dir()]


@pytest.fixture(scope="module")
def cancelled_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, subprocess.CompletedProcess[str]]:
    """LONG_JOB as a Slurm job, scancel'd once it has written checkpoints: the sweep dir, the
    job's Slurm id and the sweep's output."""
    sweep_dir = tmp_path_factory.mktemp("cancelled") / "sweep"
    sweep = start_slurm_sweep(sweep_dir, *LONG_JOB)
    job_id = wait_for_checkpoint(sweep, sweep_dir / LONG_JOB_DIR)
    slurm("scancel", job_id)
    return sweep_dir, job_id, finish(sweep)


def test_a_job_cancelled_with_scancel_is_reported_as_cancelled_with_what_it_left(
    cancelled_sweep: tuple[Path, str, subprocess.CompletedProcess[str]],
) -> None:
    sweep_dir, job_id, result = cancelled_sweep
    run_dir = sweep_dir / LONG_JOB_DIR
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "0 of 1 jobs completed" in result.stdout
    assert f"failed (cancelled); Slurm job {job_id} CANCELLED" in result.stdout
    iterations = len(fingerprint_lines(run_dir))
    assert f"Slurm job {job_id} ended CANCELLED" in result.stderr
    assert f"It trained {iterations} iterations in {run_dir}: continue it with checkpoint={run_dir}." in result.stderr
    job = json.loads((sweep_dir / SWEEP_SUMMARY_FILE).read_text())["results"][0]
    assert (job["status"], job["reason"], job["slurm_job_id"]) == ("failed", "cancelled", job_id)
    assert job["slurm_state"].startswith("CANCELLED") and not (run_dir / JOB_STATUS_FILE).exists()


def test_the_cancelled_job_continued_through_slurm_with_checkpoint_is_the_uninterrupted_run(
    cancelled_sweep: tuple[Path, str, subprocess.CompletedProcess[str]], uninterrupted: list[str], tmp_path: Path
) -> None:
    killed = cancelled_sweep[0] / LONG_JOB_DIR
    sweep_dir = tmp_path / "continued"
    result = slurm_sweep(sweep_dir, *LONG_JOB, f"checkpoint={killed}")
    assert "1 of 1 jobs completed" in result.stdout
    continued = sweep_dir / LONG_JOB_DIR
    manifest = json.loads((continued / "manifest.json").read_text())
    start = int(re.fullmatch(r"model_(\d+)\.pt", Path(manifest["run"]["continued_from"]).name).group(1)) + 1
    assert Path(manifest["run"]["continued_from"]).parent == killed / "checkpoints"
    assert fingerprint_lines(continued) == uninterrupted[start:]
    assert fingerprint_lines(killed) == uninterrupted[: len(fingerprint_lines(killed))]


def test_a_job_at_its_slurm_time_limit_is_reported_as_timed_out_and_keeps_its_run(tmp_path: Path) -> None:
    """timeout_min=1: Slurm warns the job signal_delay_s before the limit, submitit stops it there
    (max_num_timeout=0: no requeue), and the job reports the time limit with its run dir. On a
    loaded machine the job may not finish reporting before Slurm ends it (seen once in CI): then
    the launcher reports Slurm's TIMEOUT, with the same run dir to continue."""
    sweep_dir = tmp_path / "sweep"
    result = slurm_sweep(
        sweep_dir, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=15", *LONG_RUN,
        "max_iterations=100000", "seed=3", check=False,
    )
    run_dir = sweep_dir / LONG_JOB_DIR
    assert result.returncode == 1, result.stderr
    assert "failed (time limit)" in result.stdout
    job_reported = (
        "timed out: the job reached its Slurm time limit (hydra.launcher.timeout_min=1) and was not requeued "
        f"(hydra.launcher.max_num_timeout=0). The run so far is kept in {run_dir}: continue it with "
        f"checkpoint={run_dir}"
    ) in result.stderr
    slurm_reported = re.search(
        r"ended TIMEOUT: Slurm ended it at its time limit \(hydra\.launcher\.timeout_min\)\. It trained \d+ "
        rf"iterations in {re.escape(str(run_dir))}: continue it with checkpoint={re.escape(str(run_dir))}\.",
        result.stderr,
    )
    assert job_reported or slurm_reported, result.stderr
    if job_reported:
        status = json.loads((run_dir / JOB_STATUS_FILE).read_text())
        assert (status["status"], status["reason"]) == ("failed", "time limit")
    assert len(fingerprint_lines(run_dir)) >= 5 and (run_dir / "checkpoints" / "model_5.pt").is_file()


def check_requeued_job_continued_as_the_same_run(
    sweep_dir: Path, job_id: str, result: subprocess.CompletedProcess[str], uninterrupted: list[str]
) -> None:
    """The job ran twice: the first attempt's run dir is left as the kill left it (a prefix of the
    uninterrupted run), the second continued from the first's latest checkpoint in a new run dir
    and finished the uninterrupted run, bit for bit; manifest, status and summary say so."""
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = sweep_dir / LONG_JOB_DIR, sweep_dir / f"{LONG_JOB_DIR}_requeue1"
    status = json.loads((second / JOB_STATUS_FILE).read_text())
    checkpoint = Path(status["continued_from"])
    assert (status["status"], status["restart_count"], status["job_id"]) == ("completed", 1, job_id)
    assert checkpoint.parent == first / "checkpoints"
    manifest = json.loads((second / "manifest.json").read_text())["run"]
    assert (manifest["restart_count"], manifest["continued_from"]) == (1, str(checkpoint))
    assert manifest["run_dir"] == str(second)
    line = f"completed in {second} after 1 requeue (continued from {checkpoint}); Slurm job {job_id} COMPLETED"
    assert line in result.stdout
    start = int(re.fullmatch(r"model_(\d+)\.pt", checkpoint.name).group(1)) + 1
    assert fingerprint_lines(second) == uninterrupted[start:]
    assert fingerprint_lines(first) == uninterrupted[: len(fingerprint_lines(first))]
    assert not (first / JOB_STATUS_FILE).exists()  # the first attempt never finished
    newest_of_first = max(path.stat().st_mtime for path in first.rglob("*"))
    assert newest_of_first <= (second / "config.yaml").stat().st_mtime  # nothing written there after


def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint_into_a_new_run_dir_as_the_same_run(
    uninterrupted: list[str], tmp_path: Path
) -> None:
    """Real pre-emption: a job of the urgent partition needs the node's cores, Slurm sends the
    running job submitit's signal (USR2), submitit requeues it (a pre-emption is no time-out:
    timeout_min=60), and the requeued job continues."""
    sweep_dir = tmp_path / "sweep"
    cores = os.cpu_count() or 1
    sweep = start_slurm_sweep(sweep_dir, "hydra.launcher.timeout_min=60", *LONG_JOB, cores=cores)
    job_id = wait_for_checkpoint(sweep, sweep_dir / LONG_JOB_DIR)
    slurm("sbatch", f"--partition={URGENT_PARTITION}", f"--cpus-per-task={cores}", "--mem=100M",
          f"--output={tmp_path / 'urgent.out'}", "--wrap", "sleep 2")
    result = finish(sweep)
    assert "this job is preempted" in "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*_log.err"))
    check_requeued_job_continued_as_the_same_run(sweep_dir, job_id, result, uninterrupted)


def test_a_job_requeued_by_slurm_itself_continues_from_its_checkpoint_into_a_new_run_dir_as_the_same_run(
    uninterrupted: list[str], tmp_path: Path
) -> None:
    """``scontrol requeue`` (an administrator, a node's failure): Slurm kills the job without
    asking submitit and starts it again."""
    sweep_dir = tmp_path / "sweep"
    # Two tasks of one job array, the same run twice: task 0 is requeued, task 1 is not.
    sweep = start_slurm_sweep(sweep_dir, *LONG_RUN, "max_iterations=250", "seed=3,3")
    job_id = wait_for_checkpoint(sweep, sweep_dir / LONG_JOB_DIR)
    slurm("scontrol", "requeue", job_id)
    result = finish(sweep)
    check_requeued_job_continued_as_the_same_run(sweep_dir, job_id, result, uninterrupted)
    other = slurm_jobs(sweep_dir)[1]["slurm_job_id"]
    assert job_id.endswith("_0") and other == job_id.replace("_0", "_1")
    assert f"completed in {sweep_dir / '1_rsl_rl_seed3'}; Slurm job {other} COMPLETED" in result.stdout
    assert fingerprint_lines(sweep_dir / "1_rsl_rl_seed3") == uninterrupted


def test_a_job_at_its_time_limit_with_max_num_timeout_is_requeued_and_continues_as_the_same_run(
    uninterrupted: list[str], tmp_path: Path
) -> None:
    """max_num_timeout=1: the time limit's signal makes submitit requeue the job once. The signal is
    sent as submitit's own tests do (``scancel --signal=USR2``, job.\\_interrupt(timeout=True)):
    with timeout_min=5 submitit takes any signal for the time limit."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_slurm_sweep(sweep_dir, "hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=1", *LONG_JOB)
    job_id = wait_for_checkpoint(sweep, sweep_dir / LONG_JOB_DIR)
    slurm("scancel", "--signal=USR2", job_id)
    result = finish(sweep)
    assert "this job is timed-out" in "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*_log.err"))
    check_requeued_job_continued_as_the_same_run(sweep_dir, job_id, result, uninterrupted)
