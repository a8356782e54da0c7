"""bench/: the training-throughput benchmark runs every library both ways and reports ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.train_throughput import TRAINERS, VARIANTS, RunResult, StepClock, markdown, summarize, timed_iterations
from tests.support import compose_config


def test_the_step_clock_marks_the_first_step_of_every_iteration(restore_torch_state: None) -> None:
    import determinism
    import tasks

    cfg = compose_config("num_envs=8")
    determinism.apply(cfg)
    env = tasks.make_for_run(cfg, 0)
    clock = StepClock(env, rollout_steps=4, device="cpu")
    for _ in range(12):
        env.step(torch.zeros(8, 1))
    assert clock.calls == 12 and len(clock.marks) == 3
    assert clock.env_steps_per_second(warmup=1, timed=1) == pytest.approx(4 * 8 / (clock.marks[2] - clock.marks[1]))
    with pytest.raises(RuntimeError, match="fewer than 4"):
        clock.env_steps_per_second(warmup=1, timed=2)


def _run(variant: str, repetition: int, rate: float) -> RunResult:
    return RunResult("cartpole", "rsl_rl", variant, repetition, 3, rate, 1.0, 2.0, 100.0 + repetition, None)


def test_timed_iterations_fill_the_asked_window_at_the_probe_pace() -> None:
    probe = RunResult("cartpole", "sb3", "seedlock", -1, 2, 1000.0, 1.5, 9.0, None, None)  # 0.75 s an iteration
    assert timed_iterations(probe, seconds=4.0) == 6
    assert timed_iterations(probe, seconds=0.1) == 2  # never fewer than two


def test_ratios_are_medians_of_per_round_ratios_and_the_warm_up_run_is_left_out() -> None:
    runs = [_run("handwritten", -1, 1.0), _run("seedlock", -1, 1000.0)]  # warm-up: ignored
    rates = {0: (100.0, 50.0, 25.0), 1: (110.0, 100.0, 100.0), 2: (120.0, 100.0, 80.0)}
    for repetition, (hand, suite, deterministic) in rates.items():
        runs += [_run("handwritten", repetition, hand), _run("seedlock", repetition, suite),
                 _run("deterministic", repetition, deterministic)]
    summary = summarize(runs, "cartpole", "rsl_rl")
    assert summary["rounds"] == 3
    assert summary["overhead"] == pytest.approx(0.2)  # ratios 2.0, 1.1, 1.2 -> median 1.2
    assert summary["determinism_tax"] == pytest.approx(0.25)  # ratios 2.0, 1.0, 1.25
    assert summary["overhead_quartiles"] == pytest.approx([0.15, 0.6])
    assert summary["overhead_best_runs"] == pytest.approx(0.2)  # fastest runs: 120 by hand, 100 through seedlock
    assert summary["determinism_tax_best_runs"] == pytest.approx(0.0)  # 100 and 100
    assert summary["seedlock"]["env_steps_per_second"] == 100.0
    assert summary["handwritten"]["peak_rss_mb"] == 102.0
    table = markdown({"machine": {"date": "d", "device": "cpu", "cpu": "x", "cpu_threads": 2, "torch": "t"},
                      "settings": {"num_envs": 8, "warmup_iterations": 1, "timed_seconds": 4.0, "repetitions": 3},
                      "summary": [summary]})
    assert "3 rounds, the variants alternating" in table
    assert ("| cartpole | rsl_rl | 3 | 3 | 110 | 100 | +20.0% (+15.0%…+60.0%; +20.0%) | 80 | +25.0% (+12.5%…+62.5%; +0.0%) | "
            "102 / 102 / 102 | — / — / — |") in table
    # a file merged from two bench processes with different round counts, and its note
    merged = markdown({"machine": {"date": "d", "device": "cpu", "cpu": "x", "cpu_threads": 2, "torch": "t"},
                       "settings": {"num_envs": 8, "warmup_iterations": 1, "timed_seconds": 4.0, "repetitions": 3},
                       "summary": [summary, {**summary, "trainer": "sb3", "rounds": 9}], "note": "SB3 ran apart."})
    assert "the rounds in the table (per library), the variants alternating" in merged
    assert "\nSB3 ran apart.\n" in merged and "| cartpole | sb3 | 9 | 3 |" in merged


@pytest.mark.slow  # ~35 s on 2 cores: make test-all
def test_every_library_trains_by_hand_and_through_seedlock_in_one_bench_process(tmp_path: Path) -> None:
    """The real benchmark, tiny: each baseline must train the iterations asked for (the clock
    raises otherwise) and every variant and ratio must be reported."""
    stem = tmp_path / "train_throughput"
    command = [sys.executable, "-m", "bench.train_throughput", "--num-envs", "16", "--warmup-iterations", "0",
               "--iterations", "1", "--repetitions", "1", "--out", str(stem)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(stem.with_suffix(".json").read_text())
    assert [row["trainer"] for row in report["summary"]] == list(TRAINERS)
    assert len(report["runs"]) == len(TRAINERS) * len(VARIANTS) * 2  # an untimed and a timed run each
    assert {run["timed_iterations"] for run in report["runs"] if run["repetition"] == 0} == {1}
    for row in report["summary"]:
        assert row["overhead"] is not None and row["determinism_tax"] is not None
        assert all(row[variant]["env_steps_per_second"] > 0 for variant in VARIANTS)
    assert "| cartpole | skrl |" in stem.with_suffix(".md").read_text()


def test_conv_wgrad_times_every_variant_and_each_locked_one_repeats(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.conv_wgrad", "--device", "cpu", "--batches", "8", "--steps", "1",
               "--out", str(tmp_path / "conv")]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    rows = json.loads((tmp_path / "conv.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == ["cudnn unlocked", "cudnn locked", "cudnn locked, channels-last",
                                                "matmul wgrad locked", "matmul wgrad locked, channels-last"]
    assert all(row["ms"] > 0 and row["repeatable"] for row in rows if "unlocked" not in row["variant"])
    assert "| 8 | matmul wgrad locked |" in (tmp_path / "conv.md").read_text()


def test_env_throughput_table_names_the_step_and_reads_results_from_before_it() -> None:
    from bench.env_throughput import markdown as env_markdown

    info = {"device": "cuda", "date": "2026-12-02", "torch": "2.11", "gpu": "NVIDIA H200", "driver": "580", "cuda": "13.0"}
    rows = [{"task": "cartpole", "step": "cuda graph", "num_envs": 4096, "env_steps_per_second": 19437385.0},
            {"task": "cartpole_rgb", "num_envs": 1, "env_steps_per_second": 466.0}]  # no step: an older result
    table = env_markdown({"machine": info, "warmup_steps": 20, "repetitions": 3, "seconds_per_repetition": 1.0,
                          "results": rows})
    assert "| cartpole | cuda graph | 4,096 | 19,437,385 |" in table
    assert "| cartpole_rgb | eager | 1 | 466 |" in table
