"""seedlock-verify --explain: two runs' traces (every env step's observations, actions and rewards,
every module's output, every gradient) name the first thing that differs, in data-flow order, for
every library. Divergence is planted by what the CPU offers: the env alone changed (gravity), a
different thread count for the update, and torch's RNG reseeded outside seedlock's seeding during the first env step (so the policy's action
noise differs from the next step on, while everything before it is equal)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tasks.cartpole
import trainers.train
from determinism.trace import first_difference, read_trace
from tests.support import TRAINER_PARAMS, compose_config, run_verify

SMALL = ("num_envs=16", "max_iterations=2", "fingerprints.trace=true", "progress=false")


def _train(run_dir: Path, trainer: str, *overrides: str) -> None:
    trainers.train.run_training(compose_config(f"trainer={trainer}", *SMALL, f"run_dir={run_dir}", *overrides))


@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
def test_an_env_only_difference_is_named_as_the_envs_observations(tmp_path: Path, trainer: str, restore_torch_state: None) -> None:
    _train(tmp_path / "a", trainer)
    _train(tmp_path / "b", trainer, "+task.env.gravity=9.8")
    found = first_difference(tmp_path / "a", tmp_path / "b")
    assert found is not None and (found.iteration, found.what) == (0, "env observations after rollout step 0")
    modules = {event[1] for event in read_trace(tmp_path / "a")[0]["events"] if event[0] == "forward"}
    assert modules, "the library's own modules are traced, by the names the fingerprints give them"


# rsl_rl in make test; the other three libraries in make test-all (make test's 6-minute budget).
@pytest.mark.parametrize("trainer", [param if param.values[0] == "rsl_rl" else pytest.param(*param.values, marks=[*param.marks, pytest.mark.slow])
                                     for param in TRAINER_PARAMS])
def test_an_rng_drawn_outside_seedlocks_seeding_is_named_as_the_actions(
    tmp_path: Path, trainer: str, restore_torch_state: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _train(tmp_path / "a", trainer)
    step = tasks.cartpole.CartpoleEnv.step

    def reseeding_step(self, actions):  # type: ignore[no-untyped-def]
        if not getattr(self, "reseeded", False):  # once, in the first env step: the next actions' noise differs
            self.reseeded = True
            torch.manual_seed(1234)
        return step(self, actions)

    monkeypatch.setattr(tasks.cartpole.CartpoleEnv, "step", reseeding_step)
    _train(tmp_path / "b", trainer)
    found = first_difference(tmp_path / "a", tmp_path / "b")
    # Where the sampling sits: in the env's actions (rl_games, skrl sample outside their modules) or in the
    # output of the module that samples (RSL-RL's actor, SB3's policy); before any observation differs.
    assert found is not None and found.iteration == 0, found
    assert found.what == "actions at rollout step 1" or (
        found.what.startswith("module ") and found.what.endswith("during rollout step 1")
    ), found


@pytest.mark.slow  # 4096 envs, two runs per library: make test-all
@pytest.mark.parametrize("trainer", [param for param in TRAINER_PARAMS if param.values[0] != "sb3"])
def test_a_different_thread_count_for_the_update_is_named_in_the_update(
    tmp_path: Path, trainer: str, restore_torch_state: None,
) -> None:
    """4096 envs: the update's reductions over a whole batch are large enough for torch to split
    them across threads, so 1 and 2 threads sum in another order there (and only there). Measured:
    RSL-RL's std gradient, skrl's and rl_games' value normalisers in minibatch 0. SB3's minibatches
    stay below torch's parallel grain: its runs were identical, so it is not planted here."""
    for name, threads in (("a", 1), ("b", 2)):
        trainers.train.run_training(compose_config(
            f"trainer={trainer}", "num_envs=4096", "max_iterations=1", "fingerprints.trace=true", "progress=false",
            f"determinism.num_threads={threads}", f"run_dir={tmp_path / name}",
        ))
    found = first_difference(tmp_path / "a", tmp_path / "b")
    assert found is not None and found.iteration == 0 and "in the update's minibatch 0" in found.what, found


@pytest.mark.slow  # two traced seedlock-train processes: make test-all (the planted cases above run in make test)
def test_verify_explain_traces_the_runs_and_says_nothing_differs(tmp_path: Path) -> None:
    result = run_verify("--explain", "--verify-dir", str(tmp_path / "v"), "trainer=rsl_rl", "num_envs=16", "max_iterations=2")
    assert result.returncode == 0, result.stderr
    assert all(len(read_trace(tmp_path / "v" / f"run_{i}")) == 2 for i in (0, 1))
    bad = run_verify("--verify-dir", str(tmp_path / "w"), "fingerprints.trace=true")
    assert bad.returncode == 2 and "seedlock-verify sets fingerprints.trace itself; use --explain" in bad.stderr
