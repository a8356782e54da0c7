"""The Stable-Baselines3 adapter: its seed, its VecEnv's time-outs, checkpoints and load_policy."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import determinism
from determinism import FingerprintWriter, read_fingerprints
from determinism.fingerprint import fingerprint_parameters
from tasks.cartpole import CartpoleConfig, CartpoleEnv
from tests.support import SMALL, in_process_run, run_train
from trainers import sb3
from trainers.interface import TrainingRun

pytestmark = pytest.mark.usefixtures("restore_torch_state")
# One intra-op thread: SB3 takes hundreds of small minibatch steps per iteration, which torch's
# thread pool slows down many times over on a small, shared CPU. Nothing tested here depends on it.
SB3_SMALL = ("trainer=sb3", *SMALL, "determinism.num_threads=1")


def _run(run_dir: Path, fingerprints: FingerprintWriter, *overrides: str) -> TrainingRun:
    return in_process_run(run_dir, *SB3_SMALL, *overrides, fingerprints=fingerprints)


def test_sb3_is_seeded_with_the_resolved_run_seed_and_only_with_it(tmp_path: Path, monkeypatch) -> None:
    seeds: list[int | None] = []
    original = sb3.SeedlockPPO.set_random_seed

    def spy(self: sb3.SeedlockPPO, seed: int | None = None) -> None:
        seeds.append(seed)
        original(self, seed)

    monkeypatch.setattr(sb3.SeedlockPPO, "set_random_seed", spy)
    with FingerprintWriter(tmp_path) as fingerprints:
        run = _run(tmp_path, fingerprints, "seed=-1", "max_iterations=1")
        model = sb3.make_model(run, seed=run.seed)
        # What SB3's seeding leaves behind: numpy (the minibatch permutations) and the action space
        # restarted from the run's seed.
        assert np.random.randint(2**31) == np.random.RandomState(run.seed).randint(2**31)
        reference = gymnasium.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        reference.seed(run.seed)
        assert model.action_space.sample() == reference.sample()
        sb3.train(run)
    assert determinism.applied().seed_source == "random"
    assert seeds == [run.seed, run.seed]  # make_model above, then train's own model


def test_seeding_on_cuda_keeps_the_cudnn_switches_determinism_set(tmp_path: Path) -> None:
    with FingerprintWriter(tmp_path) as fingerprints:
        model = sb3.make_model(_run(tmp_path, fingerprints), seed=3)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    model.device = torch.device("cuda")  # only read by set_random_seed to pick the CUDA branch
    model.set_random_seed(3)
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == (False, True)
    PPO.set_random_seed(model, 3)  # SB3's own: it would flip them
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == (True, False)


def test_time_outs_reach_sb3_as_truncations_and_failures_do_not() -> None:
    # 3-step episodes; with no force every pole starting within ±0.25π stays up for 3 steps.
    env = CartpoleEnv(num_envs=8, seed=0, config=CartpoleConfig(episode_length_s=3 * 2 / 120))
    vec_env = sb3.SB3VecEnv(env)
    zeros = np.zeros((8, 1), dtype=np.float32)
    for _ in range(2):
        _, _, dones, infos = vec_env.step(zeros)
        assert not dones.any() and infos == [{}] * 8
    before_reset = env.observations().numpy()
    obs, rewards, dones, infos = vec_env.step(zeros)
    assert dones.all() and obs.dtype == np.float32 and rewards.dtype == np.float32
    for index, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 3
        assert info["terminal_observation"].shape == (4,)
        assert not np.array_equal(info["terminal_observation"], before_reset[index])  # it stepped
        assert not np.array_equal(info["terminal_observation"], obs[index])  # obs is after the reset

    # A cart that leaves the track at once: a failure, which SB3 must not bootstrap.
    env = CartpoleEnv(num_envs=4, seed=0, config=CartpoleConfig(max_cart_pos=1e-6))
    _, _, dones, infos = sb3.SB3VecEnv(env).step(np.ones((4, 1), dtype=np.float32))
    assert dones.all()
    assert all(info["TimeLimit.truncated"] is False and "terminal_observation" in info for info in infos)


def test_load_policy_acts_as_the_trained_policy(tmp_path: Path, monkeypatch) -> None:
    trained: list[sb3.SeedlockPPO] = []
    original = sb3.SeedlockPPO.train

    def keep(self: sb3.SeedlockPPO) -> None:
        original(self)
        trained[:] = [self]

    monkeypatch.setattr(sb3.SeedlockPPO, "train", keep)
    with FingerprintWriter(tmp_path) as fingerprints:
        run = _run(tmp_path, fingerprints, "seed=5")
        summary = sb3.train(run)
    assert summary.last_checkpoint == tmp_path / "checkpoints" / "model_2.pt"
    last = read_fingerprints(tmp_path / "fingerprints.jsonl")[-1]
    policy = trained[0].policy
    assert fingerprint_parameters({"policy": policy})[0] == last["parameters_sha256"]

    numpy_state = np.random.get_state()[1].copy()
    act = sb3.load_policy(run, summary.last_checkpoint)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # loading re-seeds nothing
    obs = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = policy._predict(obs, deterministic=True).clamp(-1.0, 1.0)
    assert torch.equal(act(obs), expected)
    assert torch.equal(act(obs), act(obs))


@pytest.mark.slow  # make test-all; make test proves continuing with test_resume's run of every library
def test_a_checkpoint_continues_the_run_to_max_iterations(tmp_path: Path) -> None:
    first = run_train(*SB3_SMALL, f"run_dir={tmp_path / 'first'}", "seed=9")
    # SB3's per-run warnings (GPU advice, a minibatch size that does not divide the rollout) are
    # fixed at their source, not filtered.
    assert "warn" not in (first.stdout + first.stderr).lower()
    assert sorted(p.name for p in (tmp_path / "first" / "checkpoints").iterdir()) == ["model_0.pt", "model_2.pt"]
    # TensorBoard: one point per iteration, the update's losses at the env steps of its rollout.
    fingerprints = read_fingerprints(tmp_path / "first" / "fingerprints.jsonl")
    value_loss = EventAccumulator(str(tmp_path / "first" / "tensorboard")).Reload().Scalars("train/value_loss")
    assert [(event.step, event.value) for event in value_loss] == [
        (line["env_steps"], pytest.approx(line["losses"]["value_loss"], rel=1e-6)) for line in fingerprints
    ]

    run_train(*SB3_SMALL, f"run_dir={tmp_path / 'resumed'}", "seed=9",
              f"checkpoint={tmp_path / 'first' / 'checkpoints' / 'model_0.pt'}")
    lines = read_fingerprints(tmp_path / "resumed" / "fingerprints.jsonl")
    assert [(line["iteration"], line["env_steps"]) for line in lines] == [(1, 2 * 16 * 64), (2, 3 * 16 * 64)]
    assert (tmp_path / "resumed" / "checkpoints" / "model_2.pt").is_file()
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoints" / "model_2.pt", weights_only=True)
    assert checkpoint["library"]["num_timesteps"] == 3 * 16 * 64

    other_size = run_train(*SB3_SMALL, "num_envs=32", f"run_dir={tmp_path / 'other'}",
                           f"checkpoint={tmp_path / 'first' / 'checkpoints' / 'model_0.pt'}", check=False)
    assert other_size.returncode == 2 and "same num_envs and agent.n_steps" in other_size.stderr


def test_pixel_agent_gets_its_cnn_class_and_a_bad_name_lists_the_choices(tmp_path: Path) -> None:
    run = in_process_run(tmp_path / "ok", "trainer=sb3", "task=cartpole_rgb", "num_envs=4")
    policy, kwargs = sb3.ppo_kwargs(run)
    assert policy == "CnnPolicy" and kwargs["policy_kwargs"]["features_extractor_class"] is sb3.ConvEncoder
    encoder = sb3.ConvEncoder(run.env.observation_space, **kwargs["policy_kwargs"]["features_extractor_kwargs"])
    assert encoder(run.env.observations()).shape == (4, 128)
    bad = in_process_run(tmp_path / "bad", "trainer=sb3", "task=cartpole_rgb", "num_envs=4",
                         "agent.policy_kwargs.features_extractor_class=ResNet")
    with pytest.raises(sb3.ConfigError, match="features_extractor_class='ResNet' is not valid; choices: ConvEncoder, NatureCNN"):
        sb3.ppo_kwargs(bad)
