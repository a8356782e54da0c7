"""The real Isaac Lab 3.x, kitless on Newton, on the CPU (``make test-isaaclab`` runs these in
.venv-isaaclab; elsewhere they are skipped): stand-in assets; Isaac-Cartpole-Direct trained through
Isaac Lab's own wrapper of each library, the same run bit for bit in two processes; Isaac-Ant-Direct
trained an iteration by each library; a run that cannot continue from a checkpoint says why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import determinism
from determinism import read_fingerprints
from determinism.compare import compare_runs
from determinism.physics import PhysicsNotLockedWarning, unlockable_reason
from tasks.isaaclab import isaaclab_major
from tests.support import SEEDLOCK_EXPORT, TRAINERS, _command, run_play, run_train
from trainers.verify import render

pytestmark = [
    pytest.mark.isaaclab,
    pytest.mark.skipif(isaaclab_major() < 3, reason="needs Isaac Lab 3.x (make install-isaaclab)"),
]

SEEDLOCK_ISAACLAB_ASSETS = _command("seedlock-isaaclab-assets", "trainers.isaaclab_assets")
ITERATIONS = 5
CARTPOLE = ("task=isaaclab/Isaac-Cartpole-Direct", "device=cpu", "num_envs=64", f"max_iterations={ITERATIONS}")


@pytest.fixture(scope="session")
def asset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isaaclab-assets")
    written = subprocess.run([*SEEDLOCK_ISAACLAB_ASSETS, str(root)], capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    return root


def test_the_stand_in_assets_are_where_isaac_lab_looks_and_never_replaced(asset_root: Path) -> None:
    for relative in ("Isaac/IsaacLab/Robots/Classic/Cartpole/cartpole.usd", "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd",
                     "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"):
        assert (asset_root / relative).is_file()
    again = subprocess.run([*SEEDLOCK_ISAACLAB_ASSETS, str(asset_root)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "never replaces a file" in again.stderr


@pytest.mark.parametrize("trainer", TRAINERS)
def test_cartpole_direct_is_the_same_run_in_two_processes(asset_root: Path, tmp_path: Path, trainer: str) -> None:
    for name in ("a", "b"):
        run_train(f"trainer={trainer}", *CARTPOLE, f"task.asset_root={asset_root}", f"run_dir={tmp_path / name}", timeout=1200)
    files = [tmp_path / name / "fingerprints.jsonl" for name in ("a", "b")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert [line["iteration"] for line in read_fingerprints(files[0])] == list(range(ITERATIONS))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    launched = manifest["renderer"]["isaacsim"]
    assert launched["kitless"] is True and launched["task_id"] == "Isaac-Cartpole-Direct"
    physics = manifest["physics"]  # torch_deterministic=false: nothing set, and said so
    assert (physics["engine"], physics["solver"], physics["device"]) == ("newton", "mujoco_warp", "cpu")
    assert (physics["mode_requested"], physics["mode"], physics["settings"]) == ("not_guaranteed", "not_guaranteed", {})


@pytest.mark.parametrize("trainer", TRAINERS)
def test_a_short_run_on_cartpole_direct_raises_the_mean_return(asset_root: Path, tmp_path: Path, trainer: str) -> None:
    """Isaac Lab 3.0's Cartpole-Direct ends an episode only when the cart leaves its rail (the pole
    may fall and swing) and pays the upright pole per second: about 5 for a whole episode held up.
    Measured here, 512 envs, 40 iterations (36-52 s): the best of the first ten returns rsl_rl 0.07
    (iteration 0, episodes cut short by RSL-RL's random initial lengths), skrl -1.3, rl_games -2.6,
    SB3 -1.0; the mean of the last five 1.75 (rsl_rl) to 4.7 (skrl)."""
    run_train(f"trainer={trainer}", "task=isaaclab/Isaac-Cartpole-Direct", "device=cpu", "num_envs=512",
              "max_iterations=40", f"task.asset_root={asset_root}", f"run_dir={tmp_path / 'run'}", timeout=1200)
    lines = read_fingerprints(tmp_path / "run" / "fingerprints.jsonl")
    returns = [line["mean_return"] for line in lines if line["mean_return"] is not None]  # once episodes end
    early, late = max(returns[:10]), sum(returns[-5:]) / 5
    assert late > early + 1.0, returns
    # The trained checkpoint plays as well as it trained (Isaac Lab's observations reach the library's
    # own inference path as in training), the same returns in two processes, and exports.
    played = []
    for name in ("a", "b"):
        result = run_play(f"checkpoint={tmp_path / 'run'}", "episodes=16", f"out={tmp_path / name}.json", "progress=false")
        assert result.returncode == 0, result.stderr
        played.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert played[0] == played[1]
    assert played[0]["mean_return"] > early + 1.0, (played[0]["returns"], returns)
    exported = subprocess.run([*SEEDLOCK_EXPORT, f"checkpoint={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "run" / "exported" / "policy.onnx").is_file()
    differences = [float(value) for value in exported.stdout.rsplit("TorchScript ", 1)[1].split(", ONNX ")]
    assert max(differences) < 1e-4, exported.stdout


@pytest.mark.parametrize("trainer", TRAINERS)
def test_ant_direct_trains_an_iteration(asset_root: Path, tmp_path: Path, trainer: str) -> None:
    run_train(f"trainer={trainer}", "task=isaaclab/Isaac-Ant-Direct", "device=cpu", "num_envs=8", "max_iterations=1",
              f"task.asset_root={asset_root}", f"run_dir={tmp_path / 'ant'}", timeout=1200)
    assert [line["iteration"] for line in read_fingerprints(tmp_path / "ant" / "fingerprints.jsonl")] == [0]


def test_a_run_cannot_continue_from_a_checkpoint_and_says_why(asset_root: Path, tmp_path: Path) -> None:
    run_train("trainer=rsl_rl", *CARTPOLE, "max_iterations=1", f"task.asset_root={asset_root}", f"run_dir={tmp_path / 'a'}")
    result = run_train("trainer=rsl_rl", *CARTPOLE, f"task.asset_root={asset_root}", f"checkpoint={tmp_path / 'a'}",
                       f"run_dir={tmp_path / 'b'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot continue from a checkpoint" in result.stderr and not (tmp_path / "b").exists()


def test_an_asset_root_without_the_assets_is_one_paragraph(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_train("trainer=rsl_rl", *CARTPOLE, f"task.asset_root={tmp_path / 'empty'}", f"run_dir={tmp_path / 'run'}",
                       check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "needs an asset that is not there" in result.stderr and "seedlock-isaaclab-assets" in result.stderr
    assert not (tmp_path / "run").exists()


def test_play_refuses_a_gif_and_says_why(asset_root: Path, tmp_path: Path) -> None:
    run_train("trainer=skrl", *CARTPOLE, "max_iterations=1", f"task.asset_root={asset_root}", f"run_dir={tmp_path / 'a'}")
    result = run_play(f"checkpoint={tmp_path / 'a'}", f"gif={tmp_path / 'a.gif'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "gif= cannot film task=isaaclab" in result.stderr and not (tmp_path / "a.gif").exists()


def test_a_task_id_that_is_not_registered_is_one_paragraph_with_suggestions(tmp_path: Path) -> None:
    result = run_train("trainer=rsl_rl", "task=isaaclab", "task.id=Isaac-Cartpol-Direct", "device=cpu",
                       f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "task.id='Isaac-Cartpol-Direct' is not a registered Isaac Lab task" in result.stderr
    assert "Did you mean Isaac-Cartpole-Direct" in result.stderr


def test_task_env_sets_isaac_labs_env_cfg_and_refuses_an_unknown_key(asset_root: Path, tmp_path: Path) -> None:
    """Half-second episodes (30 steps at 60 Hz) end inside skrl's first 32-step rollout."""
    run_train("trainer=skrl", *CARTPOLE, "max_iterations=1", "+task.env.episode_length_s=0.5",
              f"task.asset_root={asset_root}", f"run_dir={tmp_path / 'short'}")
    [line] = read_fingerprints(tmp_path / "short" / "fingerprints.jsonl")
    assert line["mean_episode_length"] is not None and line["mean_episode_length"] <= 30
    result = run_train("trainer=skrl", *CARTPOLE, "+task.env.no_such_key=1", f"task.asset_root={asset_root}",
                       f"run_dir={tmp_path / 'bad'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "task.env.no_such_key: the Isaac Lab env cfg CartpoleEnvCfg has no 'no_such_key'" in result.stderr


def test_a_camera_agent_on_a_state_task_stops_with_a_message(asset_root: Path, tmp_path: Path) -> None:
    """agent=isaaclab/rl_games is Isaac Lab's camera CNN; Cartpole-Direct observes four numbers."""
    result = run_train("trainer=rl_games", *CARTPOLE, "agent=isaaclab/rl_games", f"task.asset_root={asset_root}",
                       f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "is a CNN for camera frames" in result.stderr and "agent=cartpole/rl_games" in result.stderr


@pytest.mark.parametrize("physics", ["newton_mjwarp", "newton_featherstone"])
def test_torch_deterministic_locks_the_physics_and_the_manifest_says_what_was_set(
    asset_root: Path, tmp_path: Path, physics: str,
) -> None:
    """On the CPU warp runs kernels serially, so the locked run equals the unlocked one; the lock
    is still set (Isaac Lab's deterministic mode compiles here) and recorded."""
    runs = {}
    for name, extra in (("locked", ["torch_deterministic=true"]), ("unlocked", [])):
        run_train("trainer=rsl_rl", *CARTPOLE, "max_iterations=2", f"task.physics={physics}", *extra,
                  f"task.asset_root={asset_root}", f"run_dir={tmp_path / name}")
        runs[name] = json.loads((tmp_path / name / "manifest.json").read_text())["physics"]
    locked = runs["locked"]
    assert (locked["mode_requested"], locked["mode"], locked["preset"]) == ("run_to_run", "run_to_run", physics)
    assert locked["settings"] == {"sim.physics.deterministic": True}
    assert any("CollisionPipeline(deterministic=True)" in line for line in locked["applied_by_isaaclab"])
    assert set(locked["versions"]) >= {"warp-lang", "newton", "mujoco-warp"} and locked["versions"]["warp-lang"]
    assert "wp.config.deterministic is NOT_GUARANTEED" in locked["not_locked"]["wp.config.deterministic"]
    assert runs["unlocked"]["mode"] == "not_guaranteed"
    fingerprints = [(tmp_path / name / "fingerprints.jsonl").read_text() for name in ("locked", "unlocked")]
    assert fingerprints[0] == fingerprints[1]


def _kamino_physics() -> object:
    from isaaclab_newton.physics import KaminoPADMMSolverCfg, NewtonCfg

    return NewtonCfg(solver_cfg=KaminoPADMMSolverCfg(sparse_jacobian=True))


def test_strict_refuses_a_solver_that_cannot_be_locked_on_a_gpu_by_the_check_seedlock_makes() -> None:
    """The GPU case, simulated by the check itself: Isaac Lab 3.0's Kamino preset (Cartpole's
    newton_kamino; Isaac Lab offers no deterministic mode for it), the versions installed here, and
    device cuda:0. strict stops with one paragraph that names the solver, the versions and what
    would work; nothing is set on the physics."""
    physics = _kamino_physics()
    with pytest.raises(determinism.DeterminismError) as refused:
        determinism.lock_isaaclab_physics(physics, "cuda:0", True, "refuse", "newton_kamino", "Isaac-Cartpole-Direct")
    message = str(refused.value)
    assert "task.id=Isaac-Cartpole-Direct cannot run with locked physics on cuda:0" in message
    assert "kamino (task.physics=newton_kamino; warp-lang 1.17.0" in message and "newton 1.6.1" in message
    assert "What would: task.physics=newton_featherstone" in message and "device=cpu" in message
    assert "\n" not in message and physics.deterministic is False


def test_torch_deterministic_alone_warns_once_and_runs_it_unlocked() -> None:
    physics = _kamino_physics()
    with pytest.warns(PhysicsNotLockedWarning, match="Running with the physics unlocked") as warned:
        lock = determinism.lock_isaaclab_physics(physics, "cuda:0", True, "warn", None, "Isaac-Cartpole-Direct")
    assert len(warned) == 1
    assert (lock.mode_requested, lock.mode, lock.settings) == ("run_to_run", "not_guaranteed", {})
    assert "solver kamino" in lock.not_locked and physics.deterministic is False


def test_mujoco_warp_on_a_gpu_is_locked_on_the_versions_measured_to_work() -> None:
    """H200: Isaac Lab 3.0's pins (mujoco-warp 3.12) compile MuJoCo Warp's deterministic mode and
    repeat Cartpole-Direct; mujoco-warp 3.17 (newton 1.8) did not compile it."""
    assert unlockable_reason("mujoco_warp", "cuda:0", {"mujoco-warp": "3.12.0"}) is None
    assert "do not compile" in (unlockable_reason("mujoco_warp", "cuda:0", {"mujoco-warp": "3.17.0"}) or "")
    assert unlockable_reason("mujoco_warp", "cpu", {"mujoco-warp": "3.17.0"}) is None
    from isaaclab_newton.physics import MJWarpSolverCfg, NewtonCfg

    physics = NewtonCfg(solver_cfg=MJWarpSolverCfg())
    lock = determinism.lock_isaaclab_physics(physics, "cuda:0", True, "refuse", None, "Isaac-Cartpole-Direct")
    assert (lock.mode, physics.deterministic) == ("run_to_run", True)


def test_xpbd_on_a_gpu_is_locked_by_the_same_check() -> None:
    from isaaclab_newton.physics import NewtonCfg, XPBDSolverCfg

    physics = NewtonCfg(solver_cfg=XPBDSolverCfg())
    lock = determinism.lock_isaaclab_physics(physics, "cuda:0", True, "refuse", "newton_xpbd", "Isaac-Ant-Direct")
    assert (lock.mode, physics.deterministic) == ("run_to_run", True)


def test_verify_names_the_rollout_step_where_the_observations_first_differ(asset_root: Path, tmp_path: Path) -> None:
    """A physics-only difference planted in the second run (the cart is reset at 2.9 m instead of
    3.0 m): both runs start from the same seed and parameters, and the report names the first
    iteration and rollout step whose observations differ, before any parameter does."""
    for name, extra in (("a", []), ("b", ["+task.env.max_cart_pos=2.9"])):
        run_train("trainer=rsl_rl", *CARTPOLE, *extra, f"task.asset_root={asset_root}", f"run_dir={tmp_path / name}")
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"])
    [divergence] = comparison.divergences
    a, b = (read_fingerprints(tmp_path / name / "fingerprints.jsonl") for name in ("a", "b"))
    iteration = divergence.iteration
    assert all(x["parameters_sha256"] == y["parameters_sha256"] for x, y in zip(a[:iteration], b[:iteration]))
    step = next(k for k, (x, y) in enumerate(zip(a[iteration]["observations"], b[iteration]["observations"])) if x != y)
    assert divergence.observation_step == step and divergence.rollout_steps == len(a[iteration]["observations"])
    report = render(comparison)
    assert f"observations differ first at rollout step {step} of {divergence.rollout_steps} in iteration {iteration}" in report


def test_a_task_whose_sensors_rule_out_the_lock_warns_and_runs_or_strict_refuses(asset_root: Path, tmp_path: Path) -> None:
    """Isaac Lab 3.0 refuses MuJoCo Warp's deterministic mode for Ant-Direct (it reads joint wrenches
    from MuJoCo's sensor stage), while it builds the task: torch_deterministic=true builds it again
    unlocked, with one warning and the reason in the manifest; determinism=strict stops with one
    paragraph that names Featherstone, which locks Ant."""
    ant = ("trainer=skrl", "task=isaaclab/Isaac-Ant-Direct", "device=cpu", "num_envs=8", "max_iterations=1",
           f"task.asset_root={asset_root}")
    warned = run_train(*ant, "torch_deterministic=true", f"run_dir={tmp_path / 'warn'}")
    assert warned.stderr.count("PhysicsNotLockedWarning") == 1 and "joint-wrench sensor" in warned.stderr
    physics = json.loads((tmp_path / "warn" / "manifest.json").read_text())["physics"]
    assert (physics["mode_requested"], physics["mode"], physics["settings"]) == ("run_to_run", "not_guaranteed", {})
    assert "joint-wrench sensor" in physics["not_locked"]["task Isaac-Ant-Direct"]
    refused = run_train(*ant, "determinism=strict", f"run_dir={tmp_path / 'strict'}", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "task.id=Isaac-Ant-Direct cannot run with locked physics" in refused.stderr
    assert "task.physics=newton_featherstone" in refused.stderr and not (tmp_path / "strict").exists()


def test_ant_direct_trains_locked_on_featherstone(asset_root: Path, tmp_path: Path) -> None:
    run_train("trainer=rsl_rl", "task=isaaclab/Isaac-Ant-Direct", "device=cpu", "num_envs=16", "max_iterations=2",
              "task.physics=newton_featherstone", "torch_deterministic=true", f"task.asset_root={asset_root}",
              f"run_dir={tmp_path / 'run'}", timeout=1200)
    physics = json.loads((tmp_path / "run" / "manifest.json").read_text())["physics"]
    assert (physics["solver"], physics["mode"]) == ("featherstone", "run_to_run")
    assert len(read_fingerprints(tmp_path / "run" / "fingerprints.jsonl")) == 2  # no NaN observations (RSL-RL checks)
