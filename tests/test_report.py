"""seedlock-report on real sweeps: one row per library and task, statistics from the fingerprints,
repeats of one sweep bitwise identical, a planted difference located, unfinished runs left out,
bad input exits 2 and an earlier report is never replaced unasked."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from determinism.fingerprint import read_fingerprints
from tests.support import SEEDLOCK_REPORT, run_train
from trainers.report import main as report_main

# One thread: on a busy 2-core machine a multi-threaded PPO update mostly waits for the other jobs.
# The sweeps are one session fixture: the module's tests share one pytest-xdist worker, so it runs once.
pytestmark = pytest.mark.xdist_group("report")

SWEEP = ("-m", "trainer=rsl_rl,skrl", "seed=1,2", "num_envs=32", "max_iterations=3", "determinism.num_threads=1")
GROUPS = {("rsl_rl", "cartpole"), ("skrl", "cartpole")}


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    """``seedlock-report`` in its own process, as a user runs it."""
    return subprocess.run([*SEEDLOCK_REPORT, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300)


def table_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """The report table's cells by (library, task)."""
    rows = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "library":
            rows[(cells[0], cells[1])] = cells
    return rows


def job_dir(sweep: Path, trainer: str, seed: int) -> Path:
    (path,) = sweep.glob(f"*_{trainer}_seed{seed}")
    return path


@pytest.fixture(scope="session")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The same sweep run twice: every (library, seed) is repeated once."""
    root = tmp_path_factory.mktemp("sweeps")
    for name in ("a", "b"):
        run_train(*SWEEP, f"hydra.sweep.dir={root / name}")
    return [root / "a", root / "b"]


@pytest.fixture(scope="session")
def report(
    sweeps: list[Path], tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("out") / "report"
    result = run_report(*map(str, sweeps), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return result, out


def test_returns_png_is_a_small_figure(report: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = report
    with Image.open(out / "returns.png") as image:
        assert image.format == "PNG" and image.size == (700, 450)
    assert (out / "returns.png").stat().st_size < 150_000


def test_markdown_has_one_row_per_library_with_both_seeds_and_identical_repeats(
    report: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = report
    rows = table_rows((out / "report.md").read_text())
    assert set(rows) == GROUPS
    for cells in rows.values():
        assert cells[2:4] == ["1, 2", "4"]  # seeds, runs
        assert cells[7] == "yes (2 seeds repeated)"
    assert table_rows(result.stdout) == rows  # stdout shows the same table
    assert "None." in (out / "report.md").read_text().split("## Failed or unfinished runs")[1]
    for name in ("returns.png", "report.md", "report.csv", "report.json"):
        assert f"wrote {out / name}" in result.stdout


def test_csv_final_return_is_mean_and_population_std_of_the_last_fingerprint_returns(
    sweeps: list[Path], report: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = report
    with (out / "report.csv").open(newline="") as file:
        rows = {row["library"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"rsl_rl", "skrl"}
    for trainer, row in rows.items():
        finals = []
        for sweep in sweeps:
            for seed in (1, 2):
                lines = read_fingerprints(job_dir(sweep, trainer, seed) / "fingerprints.jsonl")
                returns = [line["mean_return"] for line in lines]
                finals.append([value for value in returns if value is not None][-1])
        assert float(row["final_return_mean"]) == pytest.approx(np.mean(finals), rel=1e-12, abs=1e-12)
        assert float(row["final_return_std"]) == pytest.approx(np.std(finals), rel=1e-12, abs=1e-12)
        assert row["seeds"] == "1 2" and row["runs"] == "4"
        assert float(row["wall_seconds_mean"]) > 0 and float(row["env_steps_per_second_mean"]) > 0
    detail = json.loads((out / "report.json").read_text())
    assert {len(group["runs_detail"]) for group in detail["groups"]} == {4}


def test_a_repeat_edited_at_iteration_1_reads_NO_from_iteration_1(sweeps: list[Path], tmp_path: Path) -> None:
    original = job_dir(sweeps[0], "rsl_rl", 1)
    copy = tmp_path / "edited" / original.name
    shutil.copytree(original, copy)
    lines = (copy / "fingerprints.jsonl").read_text().splitlines()
    line = json.loads(lines[1])
    assert line["iteration"] == 1
    line["mean_return"] = (line["mean_return"] or 0.0) + 1.0
    lines[1] = json.dumps(line, sort_keys=True)
    (copy / "fingerprints.jsonl").write_text("\n".join(lines) + "\n")

    result = run_report(str(original), str(copy.parent), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table_rows((tmp_path / "report" / "report.md").read_text())
    assert rows[("rsl_rl", "cartpole")][7] == "NO: seed 1 differs from iteration 1"


def test_unfinished_and_failed_jobs_are_listed_and_left_out_of_the_statistics(
    sweeps: list[Path], tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(sweeps[0], sweep)
    unfinished = job_dir(sweep, "rsl_rl", 1)
    (unfinished / "summary.json").unlink()
    failed = sweep / "4_skrl_seed3"  # a job that failed before its run dir got a manifest
    failed.mkdir()
    (failed / "job_status.json").write_text(json.dumps(
        {"status": "failed", "error": "ConfigError: planted", "job_num": 4, "overrides": ["trainer=skrl", "seed=3"]}))

    result = run_report(str(sweep))
    assert result.returncode == 0, result.stdout + result.stderr
    markdown = (sweep / "report" / "report.md").read_text()
    rows = table_rows(markdown)
    assert rows[("rsl_rl", "cartpole")][2:4] == ["2", "1"]
    assert rows[("skrl", "cartpole")][2:4] == ["1, 2", "2"]
    failures = markdown.split("## Failed or unfinished runs")[1]
    assert f"`{unfinished}`" in failures and "no summary.json" in failures
    assert f"`{failed}`" in failures and "ConfigError: planted" in failures
    listed = json.loads((sweep / "report" / "report.json").read_text())["failures"]
    assert {entry["run_dir"] for entry in listed} == {str(unfinished), str(failed)}


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_path_without_run_dirs_exits_2_naming_it(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / kind
    if kind == "empty":
        path.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(path)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert repr(str(path)) in stderr and "seedlock-train -m" in stderr
    assert not (path / "report").exists()


def test_an_existing_report_is_kept_unless_force(
    sweeps: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    with pytest.raises(SystemExit) as exit_info:
        report_main([*map(str, sweeps), "--out", str(out)])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text() == "my notes\n"
    report_main([*map(str, sweeps), "--out", str(out), "--force"])
    assert (out / "report.md").read_text().startswith("# seedlock report")
