"""CUDA determinism, on a machine with an NVIDIA GPU (``make test-gpu``; skipped without one).

For every library on the CartPole task with ``device=cuda``: with ``torch_deterministic=true``
two processes give identical fingerprints and a resumed run equals the uninterrupted one;
without it, what happens is recorded (not asserted: it depends on GPU, driver and library), in
``bench/results/gpu_determinism.jsonl`` with the GPU's name and the date. The same for the CNN
policies on ``cartpole_rgb``: ``determinism=strict`` and ``torch_deterministic=true`` (Conv2d's
matmul weight gradient) must repeat bit for bit; the fast defaults get a recorded verdict.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from determinism.torch_flags import reserve_cublas_workspace
from tests.support import TRAINERS, run_train, run_verify
from trainers.fast_path import SUPPORTED as FAST_PATH_TRAINERS

# The in-process tests (the audit's) lock torch after earlier tests of this process started CUDA:
# cuBLAS's workspace setting must be in place before the first of them.
reserve_cublas_workspace()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]
GPU_SIZE = ("device=cuda", "num_envs=4096", "max_iterations=8")
RESULTS = Path(os.environ.get("SEEDLOCK_GPU_RESULTS", Path(__file__).parent.parent / "bench" / "results" / "gpu_determinism.jsonl"))


def _record(trainer: str, torch_deterministic: bool, verify_dir: Path, exit_code: int, task: str = "cartpole") -> dict:
    report = json.loads((verify_dir / "verify.json").read_text())
    divergence = report["divergences"][0] if report["divergences"] else None
    manifest = json.loads((verify_dir / "run_0" / "manifest.json").read_text())
    line = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "task": task,
        "trainer": trainer,
        "torch_deterministic": torch_deterministic,
        "renderer": manifest.get("renderer", {}).get("name"),
        "overrides": report["overrides"],
        "identical": report["identical"],
        "exit_code": exit_code,
        "first_differing_iteration": divergence["iteration"] if divergence else None,
        "largest_abs_diff": max((t["max_abs_diff"] or 0.0 for t in divergence["tensors"]), default=None) if divergence else None,
        "tensors_differing": len(divergence["tensors"]) if divergence else 0,
        "run_seconds": report["run_seconds"],
        "flags": manifest["flags"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(json.dumps(line) + "\n")
    print(json.dumps(line))
    return line


@pytest.mark.parametrize("trainer", TRAINERS)
def test_torch_deterministic_gpu_runs_are_identical(tmp_path: Path, trainer: str) -> None:
    result = run_verify("--verify-dir", str(tmp_path / "v"), f"trainer={trainer}", "torch_deterministic=true", *GPU_SIZE)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    line = _record(trainer, True, tmp_path / "v", result.returncode)
    assert line["flags"]["deterministic_algorithms"] is True
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("trainer", TRAINERS)
def test_gpu_runs_without_torch_deterministic_get_a_verdict(tmp_path: Path, trainer: str) -> None:
    result = run_verify("--verify-dir", str(tmp_path / "v"), f"trainer={trainer}", "torch_deterministic=false", *GPU_SIZE)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # identical or located; recorded either way
    line = _record(trainer, False, tmp_path / "v", result.returncode)
    assert line["flags"]["deterministic_algorithms"] is False
    assert ("IDENTICAL" in result.stdout) == (result.returncode == 0)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_resumed_gpu_run_equals_the_uninterrupted_run(tmp_path: Path, trainer: str) -> None:
    size = (f"trainer={trainer}", "torch_deterministic=true", "device=cuda", "num_envs=4096", "max_iterations=5",
            "trainer.checkpoint_interval=2")
    run_train(*size, f"run_dir={tmp_path / 'whole'}")
    run_train(*size, f"run_dir={tmp_path / 'resumed'}", f"checkpoint={tmp_path / 'whole' / 'checkpoints' / 'model_2.pt'}")
    whole = (tmp_path / "whole" / "fingerprints.jsonl").read_text().splitlines()
    assert (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines() == whole[3:]
    payload = torch.load(tmp_path / "whole" / "checkpoints" / "model_2.pt", weights_only=True)
    assert len(payload["rng"]["cuda"]) >= 1  # the CUDA generator's state travels with the checkpoint


# Pixels: the CNN policies on cartpole_rgb, where cuDNN's convolution kernels come in.
PIXELS_GPU = ("task=cartpole_rgb", "device=cuda", "num_envs=1024", "max_iterations=8")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_pixels_with_strict_determinism_are_identical_on_gpu(tmp_path: Path, trainer: str) -> None:
    result = run_verify("--verify-dir", str(tmp_path / "v"), f"trainer={trainer}", "determinism=strict", *PIXELS_GPU)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    line = _record(trainer, True, tmp_path / "v", result.returncode, task="cartpole_rgb")
    assert line["flags"]["deterministic_algorithms"] is True and line["renderer"] == "deterministic"
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("trainer", TRAINERS)
def test_pixels_with_torch_deterministic_and_the_matmul_weight_gradient_are_identical_on_gpu(
    tmp_path: Path, trainer: str
) -> None:
    """torch_deterministic=true alone: the fast renderer settings, Conv2d's matmul weight gradient."""
    result = run_verify("--verify-dir", str(tmp_path / "v"), f"trainer={trainer}", "torch_deterministic=true", *PIXELS_GPU)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    line = _record(trainer, True, tmp_path / "v", result.returncode, task="cartpole_rgb")
    assert line["flags"]["conv_weight_grad"] == "matmul" and line["renderer"] == "default"
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("trainer", TRAINERS)
def test_pixels_with_fast_defaults_get_a_verdict_on_gpu(tmp_path: Path, trainer: str) -> None:
    result = run_verify("--verify-dir", str(tmp_path / "v"), f"trainer={trainer}", *PIXELS_GPU)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # identical or located; recorded either way
    line = _record(trainer, False, tmp_path / "v", result.returncode, task="cartpole_rgb")
    assert line["flags"]["deterministic_algorithms"] is False and line["renderer"] == "default"


# The cartpole step as a CUDA graph (task.env.cuda_graph, on by default on CUDA).
def _assert_same_state(left: dict, right: dict) -> None:
    for key in ("state", "episode_length", "generator"):
        assert torch.equal(left[key].cpu(), right[key].cpu()), key
    for key, value in left["statistics"].items():
        assert torch.equal(value.cpu(), right["statistics"][key].cpu()), key


def test_cuda_graph_step_equals_the_eager_step_across_a_checkpoint() -> None:
    """Replays give the eager step's results bit for bit (resets and their random angles included),
    hand out copies, and a checkpoint loaded into a captured env continues as the eager env does."""
    from tasks.cartpole import CartpoleConfig, CartpoleEnv

    num_envs, steps, saved_at = 4096, 400, 150
    graphed = CartpoleEnv(num_envs, seed=7, device="cuda")
    eager = CartpoleEnv(num_envs, seed=7, device="cuda", config=CartpoleConfig(cuda_graph=False))
    pushes = torch.Generator().manual_seed(0)
    actions = [(4 * torch.rand(num_envs, 1, generator=pushes) - 2).cuda() for _ in range(steps)]  # beyond ±1: clamped
    first_obs = None
    for step, action in enumerate(actions):
        replayed, stepped = graphed.step(action), eager.step(action)
        for field in ("obs", "reward", "terminated", "truncated", "final_obs"):
            assert torch.equal(getattr(replayed, field), getattr(stepped, field)), (step, field)
        if step == 1:
            first_obs = (replayed.obs, replayed.obs.clone())
        if step == saved_at:
            checkpoint = graphed.state_dict()
    assert graphed._graph is not None and eager._graph is None
    assert first_obs is not None and torch.equal(*first_obs)  # later replays did not write into it
    assert graphed.statistics.mean_return() == eager.statistics.mean_return()
    final = eager.state_dict()
    _assert_same_state(graphed.state_dict(), final)

    fresh = CartpoleEnv(num_envs, seed=99, device="cuda")
    for env in (graphed, fresh):  # an env already captured, and one that captures after loading
        env.load_state_dict(checkpoint)
        for action in actions[saved_at + 1 :]:
            env.step(action)
        _assert_same_state(env.state_dict(), final)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_training_with_the_cuda_graph_step_equals_the_eager_step(tmp_path: Path, trainer: str) -> None:
    size = (f"trainer={trainer}", "torch_deterministic=true", "device=cuda", "num_envs=4096", "max_iterations=4")
    run_train(*size, f"run_dir={tmp_path / 'graph'}")
    run_train(*size, f"run_dir={tmp_path / 'eager'}", "+task.env.cuda_graph=false")
    graph = (tmp_path / "graph" / "fingerprints.jsonl").read_text()
    assert graph and graph == (tmp_path / "eager" / "fingerprints.jsonl").read_text()


def test_audit_names_planted_nondeterministic_cuda_ops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, restore_torch_state: None,
) -> None:
    """Two ops planted in the env step, named at their line, once per env step: ``index_add_``
    sums with atomics under torch's defaults (torch_deterministic=true swaps in a sorted version,
    which torch's own checks do not report), and ``put_`` (accumulate=False) has no deterministic
    implementation at all (torch's checks flag it)."""
    import tasks.cartpole
    from trainers import audit

    step = tasks.cartpole.CartpoleEnv.step

    def planted_step(self, actions):  # type: ignore[no-untyped-def]
        scratch = torch.zeros(4, device=actions.device)
        scratch.index_add_(0, torch.zeros(8, dtype=torch.long, device=actions.device), torch.ones(8, device=actions.device))
        scratch.put_(torch.zeros(2, dtype=torch.long, device=actions.device), torch.ones(2, device=actions.device))
        return step(self, actions)

    monkeypatch.setattr(tasks.cartpole.CartpoleEnv, "step", planted_step)
    with pytest.raises(SystemExit) as exited:
        audit.main(["--audit-dir", str(tmp_path / "a"), "--iterations", "1", "trainer=rsl_rl", "device=cuda", "num_envs=64",
                    "+task.env.cuda_graph=false"])  # the planted ops run eagerly, every step
    assert exited.value.code == 1
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    [index_add] = [op for op in report["lockable_ops"] if op["what"] == "aten::index_add_"]
    assert "(planted_step)" in index_add["location"] and index_add["count"] > 0
    assert any(op["what"].startswith("put_") and "(planted_step)" in op["location"] for op in report["ops"]), report["ops"]
    assert any("index_add_" in reason for reason in report["breaks"])


@pytest.mark.parametrize("trainer", TRAINERS)
def test_audit_names_the_camera_tasks_convolutions_under_fast_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trainer: str, restore_torch_state: None,
) -> None:
    """The camera task's CNN on cuDNN's defaults: every Conv2d the library trains is named, with
    its weight gradient's replacement; under torch_deterministic=true they are not a break."""
    from trainers import audit

    common = ["--iterations", "1", f"trainer={trainer}", "task=cartpole_rgb", "device=cuda", "num_envs=256"]
    for name, extra, expected in (("fast", ["renderer=default"], 1), ("locked", ["torch_deterministic=true"], None)):
        with pytest.raises(SystemExit) as exited:
            audit.main(["--audit-dir", str(tmp_path / name), *common, *extra])
        report = json.loads((tmp_path / name / "audit.json").read_text())
        convolutions = [op for op in report["lockable_ops"] if op["module"].startswith("Conv2d(")]
        assert convolutions and all(op["shapes"][0][0] > 0 for op in convolutions), report["lockable_ops"]
        breaks = [reason for reason in report["breaks"] if "convolution_backward" in reason]
        assert bool(breaks) == (expected == 1), report["breaks"]
        if expected is not None:
            assert exited.value.code == expected


@pytest.mark.parametrize("trainer", FAST_PATH_TRAINERS)
def test_the_fast_path_is_the_same_run_on_gpu(tmp_path: Path, trainer: str) -> None:
    """trainer.fast_path=true (act and each minibatch's forward and backward as CUDA graphs) gives
    the eager path's fingerprints bit for bit, and resumes as it."""
    common = (f"trainer={trainer}", *GPU_SIZE, "torch_deterministic=true", "progress=false")
    for fast in ("false", "true"):
        run_train(*common, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}", "trainer.checkpoint_interval=4")
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 8 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()
    run_train(*common, "trainer.fast_path=true", f"checkpoint={tmp_path / 'true' / 'checkpoints' / 'model_4.pt'}",
              f"run_dir={tmp_path / 'resumed'}")
    resumed = (tmp_path / "resumed" / "fingerprints.jsonl").read_text().splitlines()
    assert resumed == eager.splitlines()[5:]


@pytest.mark.parametrize("variant", [
    ("trainer=skrl", "agent.models.separate=true", "agent.entropy_loss_scale=0.01"),
    ("trainer=skrl", "task=cartpole_rgb", "num_envs=256"),
    ("trainer=rl_games", "agent.network.separate=true", "agent.config.entropy_coef=0.01", "+agent.config.schedule_entropy=true",
     "agent.config.lr_schedule=linear"),
    ("trainer=rl_games", "task=cartpole_rgb", "num_envs=256"),
], ids=["skrl-separate-entropy", "skrl-pixels", "rl_games-separate-linear-entropy", "rl_games-pixels"])
def test_fast_path_variants_are_the_same_run_on_gpu(tmp_path: Path, variant: tuple[str, ...]) -> None:
    """Separate policy and value models with an entropy loss (rl_games: scheduled, so its graphs
    are recaptured), and the camera task's CNN (cuDNN convolutions inside the captured graphs),
    each the eager run bit for bit."""
    common = (*variant, *GPU_SIZE, "max_iterations=4", "torch_deterministic=true", "progress=false")
    for fast in ("false", "true"):
        run_train(*common, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}")
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 4 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()


def test_rsl_rl_fast_path_with_observation_normalization_is_the_same_run_on_gpu(tmp_path: Path) -> None:
    """The normalizer replaces its std after each update; the graphs must read the new values."""
    common = ("trainer=rsl_rl", *GPU_SIZE, "torch_deterministic=true", "progress=false",
              "agent.actor.obs_normalization=true", "agent.critic.obs_normalization=true")
    for fast in ("false", "true"):
        run_train(*common, f"trainer.fast_path={fast}", f"run_dir={tmp_path / fast}")
    eager = (tmp_path / "false" / "fingerprints.jsonl").read_text()
    assert eager.count("\n") == 8 and eager == (tmp_path / "true" / "fingerprints.jsonl").read_text()
