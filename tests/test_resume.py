"""Resume: a run continued from a checkpoint is the uninterrupted run, for every library, and a
checkpoint survives a kill in the middle of writing the next one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from determinism import read_fingerprints
from tests.support import TRAINERS, run_train
from trainers.interface import CHECKPOINT_FORMAT

# Five iterations, checkpoints at 0, 2 and 4; the continued run starts after iteration 2.
# One CPU thread keeps SB3's many small minibatch steps quick; both runs use it.
RESUME_SIZE = ("num_envs=64", "max_iterations=5", "trainer.checkpoint_interval=2", "determinism.num_threads=1")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_resumed_run_equals_the_uninterrupted_run(tmp_path: Path, trainer: str) -> None:
    run_train(f"trainer={trainer}", *RESUME_SIZE, f"run_dir={tmp_path / 'whole'}")
    result = run_train(
        f"trainer={trainer}", *RESUME_SIZE, f"run_dir={tmp_path / 'resumed'}",
        f"checkpoint={tmp_path / 'whole' / 'checkpoints' / 'model_2.pt'}",
    )
    assert "differs" not in result.stdout  # same config: no note about a different run
    whole = (tmp_path / "whole" / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    resumed = (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["iteration"] for line in resumed] == [3, 4]
    assert resumed == whole[3:]  # every field, bit for bit: parameters, optimizer, metrics, losses


def test_checkpoint_holds_every_rng_and_the_task_state_and_loads_weights_only(tmp_path: Path) -> None:
    run_train(*RESUME_SIZE, "max_iterations=1", f"run_dir={tmp_path}")
    payload = torch.load(tmp_path / "checkpoints" / "model_0.pt", weights_only=True)
    assert payload["seedlock"]["format"] == CHECKPOINT_FORMAT and payload["seedlock"]["iteration"] == 0
    assert set(payload["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert set(payload["task"]) == {"state", "episode_length", "generator", "statistics"}
    assert json.loads(payload["seedlock"]["config"])["num_envs"] == 64


def test_a_run_dir_as_checkpoint_continues_from_its_latest_checkpoint(tmp_path: Path) -> None:
    run_train(*RESUME_SIZE, "max_iterations=3", f"run_dir={tmp_path / 'first'}")
    result = run_train(*RESUME_SIZE, f"run_dir={tmp_path / 'second'}", f"checkpoint={tmp_path / 'first'}")
    assert f"continuing from {tmp_path / 'first' / 'checkpoints' / 'model_2.pt'}" in result.stdout
    assert [line["iteration"] for line in read_fingerprints(tmp_path / "second" / "fingerprints.jsonl")] == [3, 4]


def test_seed_minus_one_continues_with_the_checkpointed_seed(tmp_path: Path) -> None:
    run_train(*RESUME_SIZE, "seed=-1", f"run_dir={tmp_path / 'whole'}")
    seed = json.loads((tmp_path / "whole" / "manifest.json").read_text())["seed"]
    result = run_train(*RESUME_SIZE, "seed=-1", f"run_dir={tmp_path / 'resumed'}",
                       f"checkpoint={tmp_path / 'whole' / 'checkpoints' / 'model_2.pt'}")
    assert f"continues the checkpointed run's seed {seed}" in result.stdout
    whole = (tmp_path / "whole" / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    assert (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines(keepends=True) == whole[3:]


def test_a_changed_config_is_named_when_continuing(tmp_path: Path) -> None:
    run_train(*RESUME_SIZE, "max_iterations=1", f"run_dir={tmp_path / 'first'}")
    result = run_train(*RESUME_SIZE, "max_iterations=2", "agent.algorithm.learning_rate=0.01",
                       f"run_dir={tmp_path / 'second'}", f"checkpoint={tmp_path / 'first'}")
    assert "agent.algorithm.learning_rate: 0.001 -> 0.01" in result.stdout
    assert "not be the same run" in result.stdout


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [("missing.pt", "does not exist"), ("empty_dir", "no model_<N>.pt checkpoints"), ("garbage.pt", "cannot be loaded")],
)
def test_unusable_checkpoints_are_one_paragraph_errors(tmp_path: Path, checkpoint: str, message: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    result = run_train(*RESUME_SIZE, f"run_dir={tmp_path / 'run'}", f"checkpoint={tmp_path / checkpoint}", check=False)
    assert result.returncode == 2
    assert f"checkpoint='{tmp_path / checkpoint}'" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


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
