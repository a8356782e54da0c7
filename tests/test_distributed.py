"""torchrun: a 2-process run with the gloo backend on the CPU, through each library's own
distributed PPO, reproduces itself bit for bit, rank by rank."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.support import SEEDLOCK_TRAIN, run_torchrun, run_train

DISTRIBUTED_TRAINERS = ("rl_games", "rsl_rl", "skrl")
SIZE = ("num_envs=32", "max_iterations=3")
# Running statistics that the library keeps per rank (rl_games and skrl do not all-reduce them).
PER_RANK_STATISTICS = ("running_mean", "running_var", "running_variance")


def rollout_length(run_dir: Path) -> int:
    agent = OmegaConf.load(run_dir / "config.yaml").agent
    return int(agent.get("num_steps_per_env") or agent.get("rollouts") or agent.config.horizon_length)


def fingerprints(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# rsl_rl in make test; rl_games and skrl (~20 s each) in make test-all.
@pytest.mark.parametrize(
    "trainer", [t if t == "rsl_rl" else pytest.param(t, marks=pytest.mark.slow) for t in DISTRIBUTED_TRAINERS]
)
def test_two_process_gloo_run_reproduces_itself(tmp_path: Path, trainer: str) -> None:
    for name in ("a", "b"):
        run_torchrun("distributed=true", f"trainer={trainer}", "seed=7", *SIZE, f"run_dir={tmp_path / name}")
    a, b = tmp_path / "a", tmp_path / "b"
    for files in (Path("fingerprints.jsonl"), Path("ranks/1/fingerprints.jsonl")):
        assert (a / files).read_bytes() == (b / files).read_bytes(), files
    # Rank 0 owns the run dir; rank 1 writes only its manifest and fingerprints.
    assert sorted(p.name for p in (a / "ranks" / "1").iterdir()) == ["fingerprints.jsonl", "manifest.json"]
    assert (a / "checkpoints" / "model_2.pt").exists() and (a / "summary.json").exists()
    manifests = [json.loads((a / d / "manifest.json").read_text()) for d in (".", "ranks/1")]
    assert [m["seed"] for m in manifests] == [7, 8] and {m["run_seed"] for m in manifests} == {7}
    assert [m["distributed"]["rank"] for m in manifests] == [0, 1]
    assert manifests[0]["distributed"]["backend"] == "gloo" and manifests[0]["distributed"]["seeds"] == [7, 8]
    # One model: the library averaged the gradients, so the weights are equal on both ranks, while
    # each rank's envs (seed + rank) gave it different episodes.
    rank0, rank1 = fingerprints(a / "fingerprints.jsonl"), fingerprints(a / "ranks/1/fingerprints.jsonl")
    for line0, line1 in zip(rank0, rank1):
        weights = [key for key in line0["parameters"] if not key.endswith(PER_RANK_STATISTICS)]
        assert weights and all(line0["parameters"][key] == line1["parameters"][key] for key in weights)
        # env_steps count both ranks' envs: 2 processes x 32 envs x the library's rollout length.
        assert line0["env_steps"] == line1["env_steps"] == (line0["iteration"] + 1) * 2 * 32 * rollout_length(a)
    assert [line["mean_return"] for line in rank0] != [line["mean_return"] for line in rank1]


@pytest.mark.slow  # make test-all
def test_a_random_seed_is_drawn_once_for_all_ranks(tmp_path: Path) -> None:
    run_torchrun("distributed=true", "seed=-1", "num_envs=16", "max_iterations=1", f"run_dir={tmp_path}")
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in (".", "ranks/1")]
    run_seed = manifests[0]["run_seed"]
    assert manifests[0]["seed_source"] == "random" and manifests[1]["run_seed"] == run_seed
    assert [m["seed"] for m in manifests] == [run_seed, run_seed + 1]
    assert f"seed: {run_seed}\n" in (tmp_path / "config.yaml").read_text()


def test_sb3_refuses_distributed_and_says_why(tmp_path: Path) -> None:
    result = run_train("distributed=true", "trainer=sb3", f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2
    assert "distributed=true is not available for trainer=sb3" in result.stderr
    assert "rl_games, rsl_rl, skrl" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_distributed_without_torchrun_and_torchrun_without_distributed_are_refused(tmp_path: Path) -> None:
    alone = run_train("distributed=true", f"run_dir={tmp_path / 'alone'}", check=False)
    assert alone.returncode == 2 and "needs the process to be started by torchrun" in alone.stderr
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    ranked = subprocess.run(
        [*SEEDLOCK_TRAIN, f"run_dir={tmp_path / 'ranked'}"], capture_output=True, text=True, env=env, timeout=300
    )
    assert ranked.returncode == 2 and "distributed=false, but this process was started as one of WORLD_SIZE=2" in ranked.stderr


def test_rank_0s_refusal_ends_every_rank(tmp_path: Path) -> None:
    """Rank 0 finds the run dir taken; rank 1 gets the same error instead of waiting for it."""
    (tmp_path / "manifest.json").write_text("{}")
    result = run_torchrun("distributed=true", f"run_dir={tmp_path}", check=False, timeout=300)
    assert result.returncode != 0
    assert result.stderr.count("already holds a run") == 2  # once per rank
    assert (tmp_path / "manifest.json").read_text() == "{}" and not (tmp_path / "ranks").exists()


@pytest.mark.slow
@pytest.mark.parametrize("trainer", DISTRIBUTED_TRAINERS)
def test_the_fast_path_is_the_same_distributed_run(tmp_path: Path, trainer: str) -> None:
    """trainer.fast_path=true under torchrun: the graphed loops' own copies of the libraries'
    distributed steps (gradients and KL all-reduced) give the eager run, rank by rank (eagerly on
    the CPU; the same code is what the CUDA graphs surround on GPUs)."""
    for fast in ("false", "true"):
        run_torchrun("distributed=true", f"trainer={trainer}", "seed=7", *SIZE, f"trainer.fast_path={fast}",
                     f"run_dir={tmp_path / fast}")
    for files in (Path("fingerprints.jsonl"), Path("ranks/1/fingerprints.jsonl")):
        assert (tmp_path / "false" / files).read_bytes() == (tmp_path / "true" / files).read_bytes(), files
