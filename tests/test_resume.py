"""Resume: a run continued from a checkpoint is the uninterrupted run, for every library, and a
checkpoint survives a kill in the middle of writing the next one."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from determinism import read_fingerprints
from tests.support import BASE_RUN, SEEDLOCK_TRAIN, TRAINER_PARAMS, TrainedRuns, run_train
from trainers.interface import CHECKPOINT_FORMAT

@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
def test_resumed_run_equals_the_uninterrupted_run(trained_runs: TrainedRuns, trainer: str, tmp_path: Path) -> None:
    whole_dir = trained_runs.base(trainer)
    result = run_train(
        f"trainer={trainer}", *BASE_RUN, f"run_dir={tmp_path / 'resumed'}",
        f"checkpoint={whole_dir / 'checkpoints' / 'model_2.pt'}",
    )
    assert "differs" not in result.stdout  # same config: no note about a different run
    whole = (whole_dir / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    resumed = (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["iteration"] for line in resumed] == [3, 4]
    assert resumed == whole[3:]  # every field, bit for bit: parameters, optimizer, metrics, losses
    for output in (result, trained_runs.output(whole_dir)):  # no library warnings, no progress bar in a pipe
        assert "it/s" not in output.stdout + output.stderr and "env-steps/s" not in output.stderr


def test_checkpoint_holds_every_rng_and_the_task_state_and_loads_weights_only(trained_runs: TrainedRuns) -> None:
    payload = torch.load(trained_runs.base("rsl_rl") / "checkpoints" / "model_0.pt", weights_only=True)
    assert payload["seedlock"]["format"] == CHECKPOINT_FORMAT and payload["seedlock"]["iteration"] == 0
    assert set(payload["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert set(payload["task"]) == {"state", "episode_length", "generator", "statistics"}
    assert json.loads(payload["seedlock"]["config"])["num_envs"] == 64


def test_a_run_dir_continues_from_its_latest_checkpoint_and_a_changed_config_is_named(
    trained_runs: TrainedRuns, tmp_path: Path
) -> None:
    first = trained_runs.base("rsl_rl")
    result = run_train(*BASE_RUN, "max_iterations=6", "agent.algorithm.learning_rate=0.01",
                       f"run_dir={tmp_path / 'second'}", f"checkpoint={first}")
    assert f"continuing from {first / 'checkpoints' / 'model_4.pt'}" in result.stdout
    assert [line["iteration"] for line in read_fingerprints(tmp_path / "second" / "fingerprints.jsonl")] == [5]
    assert "agent.algorithm.learning_rate: 0.001 -> 0.01" in result.stdout
    assert "not be the same run" in result.stdout


@pytest.mark.xdist_group("rsl_rl")
def test_a_run_killed_at_a_random_moment_and_continued_is_the_uninterrupted_run(
    trained_runs: TrainedRuns, tmp_path: Path
) -> None:
    """kill -9 once the first checkpoint exists, a random moment of the iterations after it; then
    checkpoint=<the killed run dir> finishes it into a new run dir, as the same run."""
    whole = trained_runs.base("rsl_rl")
    killed = tmp_path / "killed"
    command = [*SEEDLOCK_TRAIN, "trainer=rsl_rl", *BASE_RUN, f"run_dir={killed}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "model_0.pt").exists():
        assert time.monotonic() < deadline and process.poll() is None, "the run never wrote its first checkpoint"
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    continued = tmp_path / "continued"
    result = run_train("trainer=rsl_rl", *BASE_RUN, f"run_dir={continued}", f"checkpoint={killed}")
    start = int(result.stdout.split("after iteration ")[1].split(")")[0]) + 1
    lines = (whole / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    assert (continued / "fingerprints.jsonl").read_text().splitlines(keepends=True) == lines[start:]


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    from omegaconf import OmegaConf
    from tasks.cartpole import CartpoleEnv
    from trainers.interface import TrainingRun, save_checkpoint

    cfg = OmegaConf.create({"task": {"name": "cartpole"}, "trainer": {"name": "rsl_rl"}, "device": "cpu"})
    run = TrainingRun(CartpoleEnv(4, seed=0), cfg, Path(sys.argv[1]), 0, None)
    save_checkpoint(run, 0, {"weights": torch.ones(3)})
    print("saved", flush=True)
    # The kill must land before the rename: a slow disk, where flushing takes ten seconds.
    os.fsync = lambda fd: time.sleep(10)
    save_checkpoint(run, 1, {"weights": torch.ones(10_000_000)})
    print("unreachable", flush=True)
    """
)


def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "saved"
    checkpoints = tmp_path / "checkpoints"
    deadline = time.monotonic() + 60
    while not any(path.name.startswith(".model_1.pt.") and path.stat().st_size > 0 for path in checkpoints.iterdir()):
        assert time.monotonic() < deadline and process.poll() is None, "the second checkpoint was never being written"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (checkpoints / "model_1.pt").exists()  # the half-written file never took the name
    payload = torch.load(checkpoints / "model_0.pt", weights_only=True)
    assert torch.equal(payload["library"]["weights"], torch.ones(3)) and payload["seedlock"]["iteration"] == 0
