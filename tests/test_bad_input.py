"""Every kind of bad input ends in one paragraph that names the key and what is valid, exit code 2,
no traceback, and no half-written run dir: top-level keys, group choices, agent keys (checked
ranges, run-owned keys, and what the library rejects while building its agent), checkpoints, task
ids, and facts of the machine (no GPU, no display for a GIF).

The programs run in this process (their ``main``, with ``sys.argv`` as typed), so 50 cases take
seconds; ``test_the_console_scripts_say_it_the_same_way`` runs a few as real processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tests.support import TrainedRuns, run_train
from trainers import export, play, train, verify

SMALL_RUN = ("num_envs=4", "max_iterations=1")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def checkpoint_files(root: Path) -> None:
    """Files that are not usable checkpoints, each for its own reason."""
    (root / "empty_dir").mkdir()
    (root / "garbage.pt").write_bytes(b"not a checkpoint")
    (root / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.ones(2)}, root / "headerless.pt")
    header = {"format": 2, "iteration": 0, "seed": 1, "config": "{}"}
    torch.save({"seedlock": {**header, "task": "cartpole", "trainer": "sb3"}}, root / "sb3.pt")
    torch.save({"seedlock": {**header, "task": "Pendulum-v1", "trainer": "rsl_rl"}}, root / "gym.pt")
    torch.save({"seedlock": {**header, "task": "cartpole", "trainer": "rsl_rl", "format": 1}}, root / "old.pt")
    torch.save({"seedlock": {"task": "cartpole"}}, root / "partial.pt")
    (root / "a_file").write_text("not a directory")
    (root / "existing" / "checkpoints").mkdir(parents=True)
    (root / "existing" / "manifest.json").write_text("{}")


# (overrides, what the paragraph must name). {tmp} is the test's tmp_path.
TRAIN_CASES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # top-level keys
    (("seed=abc",), ("seed=abc", "Integer")),
    (("seed=-5",), ("seed=-5", "0 to 4294967295", "-1 (or null)")),
    (("seed=4294967296",), ("seed=4294967296", "0 to 4294967295")),
    (("seed=1.5",), ("seed=1.5",)),
    (("num_envs=0",), ("num_envs=0", ">= 1")),
    (("num_envs=many",), ("num_envs=many",)),
    (("max_iterations=0",), ("max_iterations=0", ">= 1")),
    (("torch_deterministic=maybe",), ("torch_deterministic=maybe",)),
    (("device=tpu",), ("device='tpu'", "cpu, cuda")),
    (("device=cuda:x",), ("device='cuda:x'", "cuda:<index>")),
    pytest.param(("device=cuda",), ("device='cuda'", "device=cpu"), marks=NO_CUDA),
    pytest.param(("device=cuda:7",), ("device='cuda:7'", "device=cpu"), marks=NO_CUDA),
    (("progress=maybe",), ("progress='maybe'", "auto")),
    (("distributed=true",), ("distributed=true", "torchrun")),
    (("trainer.checkpoint_interval=0",), ("trainer.checkpoint_interval=0", ">= 1")),
    (("nope=1",), ("nope", "+nope=1")),
    (("seed=[1",), ("'[1'", "override grammar")),
    # group choices
    (("trainer=nope",), ("trainer=nope", "rl_games, rsl_rl, sb3, skrl")),
    (("task=nope",), ("task=nope", "cartpole")),
    (("seeding=nope",), ("seeding=nope", "default")),
    (("determinism=nope",), ("determinism=nope", "strict")),
    (("renderer=nope",), ("renderer=nope", "deterministic")),
    # determinism and renderer keys
    (("torch_deterministic=true", "determinism.cublas_workspace_config=:1:1"), ("cublas_workspace_config", ":4096:8")),
    (("determinism.conv_weight_grad=fast",), ("determinism.conv_weight_grad='fast'", "matmul", "cudnn")),
    (("determinism.num_threads=0",), ("determinism.num_threads=0", ">= 1")),
    (("task=cartpole_rgb", "renderer.embedded.supersampling=0"), ("supersampling", ">= 1")),
    (("task=cartpole_rgb", "renderer.embedded.precision=bfloat8"), ("renderer.embedded.precision='bfloat8' is not valid", "float16")),
    # task keys and ids
    (("task.env.mass=2",), ("task.env.mass", "+task.env.mass=2")),
    (("+task.env.mass=2",), ("'mass'", "valid keys", "action_scale")),
    (("task=cartpole_rgb", "+task.env.cuda_graph=true", "device=cpu", "+task.env.nope=1"), ("nope", "valid keys")),
    (("task=gym",), ("task.id", "Pendulum-v1")),
    (("task=gym", "task.id=NoSuchEnv-v0"), ("task.id='NoSuchEnv-v0'", "registered id")),
    (("task=gym", "task.id=CartPole-v1"), ("task.id='CartPole-v1'", "Box")),
    # agent keys: run-owned, checked ranges, and what the library rejects while building its agent
    (("+agent.seed=3",), ("agent.seed", "top-level seed=")),
    (("+agent.algorithm.seed=3",), ("agent.algorithm.seed", "top-level seed=")),
    (("+agent.device=cuda",), ("agent.device", "top-level device=")),
    (("trainer=sb3", "+agent.seed=7"), ("agent.seed", "top-level seed=")),
    (("agent.nope=1",), ("agent.nope", "Valid keys there", "algorithm")),
    (("agent.algorithm.learning_rate=-1",), ("agent.algorithm.learning_rate=-1", "a number > 0")),
    (("agent.algorithm.learning_rate=abc",), ("agent.algorithm.learning_rate='abc'", "a number > 0")),
    (("agent.algorithm.gamma=1.5",), ("agent.algorithm.gamma=1.5", "from 0 to 1")),
    (("agent.algorithm.num_mini_batches=0",), ("agent.algorithm.num_mini_batches=0", "integer >= 1")),
    (("trainer=rl_games", "agent.config.learning_rate=-1"), ("agent.config.learning_rate=-1", "> 0")),
    (("trainer=sb3", "agent.n_steps=0"), ("agent.n_steps=0", "integer >= 1")),
    (("trainer=sb3", "agent.learning_rate=fast"), ("agent.learning_rate='fast'", "lin_")),
    (("trainer=skrl", "agent.discount_factor=2"), ("agent.discount_factor=2", "from 0 to 1")),
    (("agent.actor.activation=foo",), ("agent.actor.activation=foo", "rejected the agent config", "elu")),
    (("trainer=sb3", "agent.policy_kwargs.net_arch=abc"), ("agent.policy_kwargs.net_arch=abc", "rejected")),
    # checkpoints
    (("checkpoint={tmp}/missing.pt",), ("checkpoint='{tmp}/missing.pt'", "does not exist")),
    (("checkpoint={tmp}/empty_dir",), ("checkpoint='{tmp}/empty_dir'", "no model_<N>.pt")),
    (("checkpoint={tmp}/garbage.pt",), ("checkpoint='{tmp}/garbage.pt'", "not a PyTorch checkpoint", "model_<N>.pt")),
    (("checkpoint={tmp}/empty.pt",), ("checkpoint='{tmp}/empty.pt'", "is empty")),
    (("checkpoint={tmp}/headerless.pt",), ("checkpoint='{tmp}/headerless.pt'", "not written by seedlock")),
    (("checkpoint={tmp}/partial.pt",), ("checkpoint='{tmp}/partial.pt'", "incomplete")),
    (("checkpoint={tmp}/sb3.pt",), ("checkpoint='{tmp}/sb3.pt'", "trainer=sb3", "this run is task=cartpole trainer=rsl_rl")),
    (("checkpoint={tmp}/old.pt",), ("checkpoint='{tmp}/old.pt'", "format 1")),
    (("task=gym/Pendulum-v1", "checkpoint={tmp}/gym.pt"), ("task=gym", "cannot continue from a checkpoint")),
    # run dirs
    (("run_dir={tmp}/a_file/run",), ("run_dir='{tmp}/a_file/run'", "cannot be created", "Not a directory")),
    (("run_dir={tmp}/existing",), ("run_dir='{tmp}/existing'", "already holds a run")),
]


def run_main(main: object, program: str, args: list[str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """A program's ``main`` as its console script runs it: its exit code and what it printed."""
    monkeypatch.setattr(sys, "argv", [program, *args])
    with pytest.raises(SystemExit) as exited:
        main()  # type: ignore[operator]
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


@pytest.mark.usefixtures("restore_torch_state")
@pytest.mark.parametrize(("overrides", "expected"), TRAIN_CASES)
def test_bad_train_input_is_one_paragraph_naming_the_key(
    tmp_path: Path, overrides: tuple[str, ...], expected: tuple[str, ...],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint_files(tmp_path)
    before = sorted(path.name for path in tmp_path.iterdir())
    args = [*SMALL_RUN, *(item.format(tmp=tmp_path) for item in overrides)]
    if not any(arg.startswith("run_dir=") for arg in args):
        args.append(f"run_dir={tmp_path / 'run'}")
    code, output = run_main(train.main, "seedlock-train", args, capsys, monkeypatch)
    assert code == 2, output
    assert "Traceback" not in output
    error = [line for line in output.splitlines() if line.startswith("seedlock-train: error: ")]
    assert len(error) == 1, output  # one paragraph
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in error[0], error[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no run dir left behind
    assert not (tmp_path / "existing" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["episodes=2"], ("checkpoint= is required",)),
        (["checkpoint=/no/such/run"], ("checkpoint='/no/such/run'", "does not exist")),
        (["checkpoint={tmp}", "episodes=0"], ("episodes=0", ">= 1")),
        (["checkpoint={tmp}", "episodes=lots"], ("episodes='lots'", "integer")),
        (["checkpoint={tmp}", "gif={tmp}/garbage.pt"], ("gif=", "already exists")),
        (["checkpoint={tmp}", "progress=maybe"], ("progress",)),
        (["checkpoint={tmp}/garbage.pt"], ("checkpoint=", "a seedlock run's checkpoint")),
    ],
)
def test_bad_play_input_is_one_paragraph(
    tmp_path: Path, args: list[str], expected: tuple[str, ...],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint_files(tmp_path)
    code, output = run_main(play.main, "seedlock-play", [arg.format(tmp=tmp_path) for arg in args], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in output, output


@pytest.mark.parametrize(
    ("program", "main", "args", "expected"),
    [
        ("seedlock-verify", verify.main, ["--runs", "1"], ("--runs=1 is not valid",)),
        ("seedlock-verify", verify.main, ["seed=abc"], ("seed=abc",)),
        ("seedlock-verify", verify.main, ["trainer=nope"], ("Available options in 'trainer': rl_games rsl_rl sb3 skrl",)),
        ("seedlock-verify", verify.main, ["num_envs=0"], ("num_envs=0 is not valid",)),
        ("seedlock-verify", verify.main, ["run_dir=/tmp/x"], ("seedlock-verify sets run_dir itself; use --verify-dir",)),
        ("seedlock-export", export.main, ["checkpoint=/no/such/run"], ("does not exist",)),
        ("seedlock-export", export.main, ["checkpoint=/no/such/run", "format=zip"], ("format=zip", "checkpoint= and out=")),
    ],
)
def test_bad_verify_and_export_input_is_one_paragraph(
    tmp_path: Path, program: str, main: object, args: list[str], expected: tuple[str, ...],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    if program == "seedlock-verify":
        args = ["--verify-dir", str(tmp_path / "v"), *args]
    code, output = run_main(main, program, args, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, output
    assert not (tmp_path / "v").exists()


@pytest.mark.xdist_group("rsl_rl")
@pytest.mark.usefixtures("restore_torch_state")
def test_play_on_a_device_this_machine_lacks_is_one_paragraph(
    trained_runs: TrainedRuns, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any GPU on a CPU machine
    args = [f"checkpoint={trained_runs.base('rsl_rl')}", "episodes=1", f"device={device}"]
    code, output = run_main(play.main, "seedlock-play", args, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output and f"device='{device}' is not available" in output


def test_the_console_scripts_say_it_the_same_way(tmp_path: Path) -> None:
    """Real processes: Hydra's own errors, a machine fact and a library's rejection, each exit 2."""
    for override, fragment in [
        ("trainer=nope", "trainer=nope is not valid"),
        ("device=cuda:99", "device='cuda:99' is not available"),
    ]:
        result = run_train(*SMALL_RUN, override, f"run_dir={tmp_path / 'run'}", check=False)
        assert result.returncode == 2, result.stderr
        assert fragment in result.stderr and "Traceback" not in result.stderr + result.stdout
        assert not (tmp_path / "run").exists()
