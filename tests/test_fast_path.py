"""``trainer.fast_path=true``: the library makes no host sync per env step, and the run is the same
run; a NaN from the env is still caught (once per iteration); a library without a fast path is
refused by name before anything is built."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import initialize_config_module

import tasks.cartpole
from bench import step_profile
from tests.support import compose_config, run_train
from trainers.cuda_graphs import into_static
from trainers.fast_path import REFUSED, SUPPORTED, FastPathError
from trainers.rsl_rl_graphs import GraphedPpo

SMALL = ("num_envs=64", "max_iterations=3", "progress=false")


@pytest.mark.parametrize("trainer", SUPPORTED)
def test_the_fast_path_is_the_same_run(tmp_path: Path, trainer: str, restore_torch_state: None) -> None:
    from trainers.train import run_training

    for fast in ("false", "true"):
        run_training(compose_config(f"trainer={trainer}", *SMALL, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}"))
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 3 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()


def test_rsl_rl_with_observation_normalization_is_the_same_run_on_the_fast_path(
    tmp_path: Path, restore_torch_state: None,
) -> None:
    """RSL-RL's normalizer replaces its std tensor after each update; the graphed loop keeps the
    captured tensor as the buffer (same values), so the run stays the eager run."""
    from trainers.train import run_training

    normalized = ("trainer=rsl_rl", *SMALL, "agent.actor.obs_normalization=true", "agent.critic.obs_normalization=true")
    for fast in ("false", "true"):
        run_training(compose_config(*normalized, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}"))
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 3 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()


@pytest.mark.parametrize("agent", [
    ("trainer=skrl", "agent.models.separate=true", "agent.entropy_loss_scale=0.01", "agent.grad_norm_clip=0"),
    ("trainer=skrl", "agent.observation_preprocessor=null", "agent.value_preprocessor=null",
     "agent.learning_rate_scheduler=null", "agent.value_clip=0"),
    # A schedule that changes the entropy coefficient each iteration: the graphs are recaptured.
    ("trainer=rl_games", "agent.network.separate=true", "agent.config.entropy_coef=0.01", "+agent.config.schedule_entropy=true",
     "agent.config.lr_schedule=linear", "agent.config.normalize_input=false", "agent.config.clip_value=false"),
], ids=["skrl-separate-entropy-noclip", "skrl-no-scalers-no-scheduler", "rl_games-separate-linear-entropy"])
def test_agent_variants_are_the_same_run_on_the_fast_path(
    tmp_path: Path, agent: tuple[str, ...], restore_torch_state: None,
) -> None:
    """The graphed loops are copies of the libraries' own: each branch they take gives the library's run."""
    from trainers.train import run_training

    for fast in ("false", "true"):
        run_training(compose_config(*agent, *SMALL, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}"))
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 3 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()


def _rl_games_normalizers(agent):  # type: ignore[no-untyped-def]
    return agent.model


def _skrl_scalers(agent):  # type: ignore[no-untyped-def]
    return torch.nn.ModuleList([agent._observation_preprocessor, agent._value_preprocessor])


@pytest.mark.parametrize(("trainer", "adapter_class", "method", "normalizers"), [
    ("rl_games", "trainers.rl_games:SeedlockA2CAgent", "train_epoch", _rl_games_normalizers),
    ("skrl", "trainers.skrl:SeedlockPPO", "update", _skrl_scalers),
])
def test_normalizers_stay_where_the_graphs_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_torch_state: None,
    trainer: str, adapter_class: str, method: str, normalizers,  # type: ignore[no-untyped-def]
) -> None:
    """rl_games' TorchScript RunningMeanStd and skrl's RunningStandardScaler assign new statistics
    tensors at each update; on the fast path their buffers stay the same tensors, with the library's values."""
    import importlib

    from trainers.train import run_training

    module_name, class_name = adapter_class.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    original, seen = getattr(cls, method), []

    def watched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        before = {name: buffer.data_ptr() for name, buffer in normalizers(self).named_buffers()}
        result = original(self, *args, **kwargs)
        seen.append(before == {name: buffer.data_ptr() for name, buffer in normalizers(self).named_buffers()})
        return result

    monkeypatch.setattr(cls, method, watched)
    for fast in ("false", "true"):
        run_training(compose_config(f"trainer={trainer}", *SMALL, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}"))
    assert seen == [False] * 3 + [True] * 3  # eager: the library replaces them; fast: kept in place
    assert (tmp_path / "false" / "fingerprints.jsonl").read_text() == (tmp_path / "true" / "fingerprints.jsonl").read_text()


def test_graph_inputs_keep_their_addresses_and_take_each_new_value() -> None:
    """A captured graph reads its inputs where it was captured: the first call copies them, later
    calls copy into those copies (tensors, tuples, None alike), and a changed structure is refused."""
    first = {"obs": torch.ones(3), "params": (torch.zeros(2), torch.ones(2)), "states": None}
    static = into_static(None, **first)
    addresses = [static.obs.data_ptr(), *(p.data_ptr() for p in static.params)]
    assert static.obs.data_ptr() != first["obs"].data_ptr() and static.states is None
    second = {"obs": torch.full((3,), 2.0), "params": (torch.full((2,), 3.0), torch.full((2,), 4.0)), "states": None}
    assert into_static(static, **second) is static
    assert addresses == [static.obs.data_ptr(), *(p.data_ptr() for p in static.params)]
    assert torch.equal(static.obs, second["obs"]) and all(map(torch.equal, static.params, second["params"]))
    with pytest.raises(ValueError):
        into_static(static, states=torch.ones(1))


@pytest.mark.parametrize(("setting", "named"), [
    ("agent.kl_threshold=0.05", "kl_threshold=0.05"), ("agent.mini_batches=7", "mini_batches=7"),
])
def test_a_skrl_agent_the_graphed_loop_cannot_run_is_refused_by_name(
    tmp_path: Path, setting: str, named: str, restore_torch_state: None,
) -> None:
    """In process (seedlock-train reports a FastPathError as one paragraph: the sb3 test below)."""
    from trainers.train import run_training

    cfg = compose_config("trainer=skrl", *SMALL, setting, "trainer.fast_path=true", f"run_dir={tmp_path / 'run'}")
    with pytest.raises(FastPathError, match=f"not valid for this trainer=skrl agent: .*{named}"):
        run_training(cfg)


def test_an_rsl_rl_fast_path_run_resumes_as_the_same_run(tmp_path: Path, restore_torch_state: None) -> None:
    """The graphs (eager on the CPU: RSL-RL's act and update as seedlock runs them) start afresh in
    the continued process, which equals the uninterrupted run."""
    from trainers.train import run_training

    common = ("trainer=rsl_rl", *SMALL, "trainer.fast_path=true", "trainer.checkpoint_interval=1")
    run_training(compose_config(*common, f"run_dir={tmp_path / 'whole'}"))
    run_training(compose_config(*common, f"run_dir={tmp_path / 'resumed'}",
                                f"checkpoint={tmp_path / 'whole' / 'checkpoints' / 'model_0.pt'}"))
    whole = (tmp_path / "whole" / "fingerprints.jsonl").read_text().splitlines()
    assert (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines() == whole[1:]


@pytest.mark.parametrize(("feature", "named"), [
    ({"recurrent": True}, "a recurrent actor or critic"), ({"rnd": object()}, "RND"),
    ({"symmetry": object()}, "symmetry augmentation"), ({"use_mixed_precision": True}, "use_mixed_precision"),
])
def test_an_rsl_rl_agent_the_graphed_loop_cannot_run_is_refused_by_name(feature: dict, named: str) -> None:
    model = SimpleNamespace(is_recurrent=feature.get("recurrent", False))
    alg = SimpleNamespace(actor=model, critic=model, rnd=feature.get("rnd"), symmetry=feature.get("symmetry"),
                          use_mixed_precision=feature.get("use_mixed_precision", False))
    with pytest.raises(FastPathError, match=f"trainer.fast_path=true is not valid for this trainer=rsl_rl agent.*{named}"):
        GraphedPpo(alg, "cpu")


@pytest.mark.parametrize("trainer", SUPPORTED)
def test_the_fast_path_rollout_makes_no_host_sync(tmp_path: Path, trainer: str, restore_torch_state: None) -> None:
    """Counted by bench.step_profile (ops that read a value or size their output by the data; on
    the CPU the device-to-host copies do not exist, the ones they come with are removed too)."""
    args = argparse.Namespace(task="cartpole", device="cpu", num_envs=16, iterations=2, torch_deterministic=False, overrides=[])
    with initialize_config_module(config_module="conf", version_base="1.3"):
        eager = step_profile.profile_run(trainer, args, tmp_path / "eager")
        args.overrides = ["trainer.fast_path=true"]
        fast = step_profile.profile_run(trainer, args, tmp_path / "fast")
    # The library's bookkeeping, every step (rl_games': after the env step, so the last one counts
    # as the update's).
    assert eager["rollout_per_env_step"]["syncs"] > 0.9
    assert fast["rollout_per_env_step"]["syncs"] == 0 and fast["seedlock_per_env_step"]["syncs"] == 0


def test_a_nan_from_the_env_still_stops_an_rsl_rl_fast_path_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_torch_state: None,
) -> None:
    from trainers.train import run_training

    step = tasks.cartpole.CartpoleEnv.step

    def nan_step(self, actions):  # type: ignore[no-untyped-def]
        result = step(self, actions)
        result.obs[3, 1] = torch.nan
        return result

    monkeypatch.setattr(tasks.cartpole.CartpoleEnv, "step", nan_step)
    cfg = compose_config("trainer=rsl_rl", *SMALL, "trainer.fast_path=true", f"run_dir={tmp_path / 'run'}")
    with pytest.raises(ValueError, match="The environment returned NaN values in the observations or rewards"):
        run_training(cfg)


@pytest.mark.parametrize("trainer", sorted(REFUSED))
def test_a_library_without_a_fast_path_is_refused_by_name(tmp_path: Path, trainer: str) -> None:
    result = run_train(f"trainer={trainer}", "trainer.fast_path=true", f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"trainer.fast_path=true is not valid for trainer={trainer}" in result.stderr
    assert "trainer=rl_games or trainer=rsl_rl or trainer=skrl" in result.stderr and not (tmp_path / "run").exists()
