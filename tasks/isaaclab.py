"""Isaac Lab tasks by id: ``task=isaaclab/Isaac-Cartpole-Direct``, ``task=isaaclab task.id=<id>``.

Isaac Lab 3.x (when installed) runs its classic tasks kitless on Newton, without Isaac Sim:
:func:`make_kitless` resolves the task's config with Isaac Lab's ``resolve_task_config`` (its
physics preset from ``task.physics``), sets the run's seed, envs and device on it, opens
``launch_simulation`` (which starts Kit only for PhysX or RTX cameras) and calls ``gym.make``. That
path runs for real in ``make test-isaaclab`` (tests/test_isaaclab_kitless.py).

Isaac Lab 2.x follows its own ``scripts/reinforcement_learning/<library>/train.py``: Isaac Sim
first, through ``isaaclab.app.AppLauncher`` (``isaaclab_tasks`` and the env classes can only be
imported once the app runs), then the env cfg from the gym registry (``parse_env_cfg``), its
``seed``, ``sim.device`` and ``scene.num_envs`` set, then ``gym.make(id, cfg=env_cfg)``. Each
adapter wraps the env in Isaac Lab's wrapper for its library (``isaaclab_rl.<library>``), inside
the adapter, since only adapters import training libraries.

What seedlock decides, and why:

- ``determinism.apply`` has run before Isaac Sim starts (``tasks.make`` refuses otherwise), so the
  env vars (``CUBLAS_WORKSPACE_CONFIG``) are set before anything initialises CUDA.
- ``experience`` is the kit the ``renderer`` group picked, as an absolute path into ``kits/``; Isaac
  Lab's ``apps/`` folder is added to Kit's extension folders (``--ext-folder``), where that kit's
  dependency ``isaaclab.python.headless.rendering`` lives.
- The env seeds itself from ``env_cfg.seed`` (the run's seed) at construction and again on
  ``reset(seed=...)``, through Isaac Sim's ``set_seed``, which also switches cuDNN benchmark on
  and deterministic mode off. Those two calls run with the PyTorch flags ``determinism`` set
  kept as they were; the re-seeding itself restarts the RNGs from the run's seed.
- Episode returns and lengths are recorded into the same ``EpisodeStatistics`` as the embedded
  tasks, so fingerprints carry the mean return for every library.
- A run cannot continue from a checkpoint: Isaac Lab saves no simulation state (Newton, PhysX, the
  env's own counters). Its checkpoints still play and export: :meth:`IsaacLabTask.stepped` is the
  task as seedlock-play steps it; gif= is refused (frames need Isaac Sim's RTX renderer).
- Isaac Sim starts once per process, so one Isaac Lab run per process (no in-process sweeps).

The 2.x path has not run on Isaac Sim: it is tested with fakes of Isaac Lab's modules (tests/fakes/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from omegaconf import DictConfig, OmegaConf

import determinism
import determinism.physics
from determinism.fingerprint import ObservationDigests
from determinism.torch_flags import torch_flags_kept
from tasks import TaskConfigError
from tasks.cartpole import EpisodeStatistics, StepResult

REQUIRED_PACKAGES = ("isaacsim", "isaaclab", "isaaclab_tasks", "isaaclab_rl")
KITS_DIR = Path(__file__).resolve().parent.parent / "kits"
# AppLauncher arguments that the run config owns (renderer=, device=), not task.app.
RUN_OWNED_APP_ARGS = {"experience": "renderer=", "device": "device=", "distributed": "distributed="}
RESUME_REFUSED = (
    "task=isaaclab runs cannot continue from a checkpoint: Isaac Lab saves no simulation state (not "
    "Newton's or PhysX's bodies and joints, nor its env's episode counters and warp random states), so "
    "a continued run would not be the same run. Start a new run instead; seedlock-play and "
    "seedlock-export do read the checkpoint."
)
GIF_REFUSED = (
    "gif= cannot film task=isaaclab: Isaac Lab draws frames only through Isaac Sim's RTX renderer, "
    "which its kitless (Newton) tasks do not start. Leave gif= out; the returns are still measured."
)

# What Isaac Lab 3.0's NewtonManager says when a task's sensors rule out deterministic physics.
LOCK_REFUSED_BY_TASK = "does not support deterministic physics"

_launched: dict[str, Any] | None = None  # launch_info of the Isaac Sim this process started


class IsaacLabMissingError(TaskConfigError):
    """task=isaaclab on a Python without Isaac Sim / Isaac Lab."""


@dataclass
class IsaacLabTask:
    """What the adapters get for task=isaaclab: the Isaac Lab env (inside :class:`EpisodeRecorder`),
    which each adapter wraps with Isaac Lab's wrapper for its library, and what seedlock reads from
    every task (num_envs, device, max_episode_length, statistics)."""

    env: EpisodeRecorder
    app: Any  # what close() ends last: Isaac Sim's SimulationApp (2.x), launch_simulation's context (3.x)
    launch_info: dict[str, Any]  # how Isaac Sim was started, for manifest.json
    physics: dict[str, Any] = dataclasses.field(default_factory=dict)  # manifest.json's physics block (3.x)

    @property
    def statistics(self) -> EpisodeStatistics:
        return self.env.statistics

    @property
    def observation_digests(self) -> ObservationDigests:
        return self.env.observation_digests

    @property
    def num_envs(self) -> int:
        return int(self.env.unwrapped.num_envs)

    @property
    def device(self) -> torch.device:
        return torch.device(self.env.unwrapped.device)

    @property
    def max_episode_length(self) -> int:
        return int(self.env.unwrapped.max_episode_length)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one env's ``policy`` observation, e.g. (100, 100, 3) for an RGB camera task."""
        return tuple(self.env.unwrapped.single_observation_space["policy"].shape)

    def state_dict(self) -> dict[str, Any]:
        """The episode statistics only; checkpoints still hold the policy for evaluation."""
        return {"statistics": self.statistics.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise RuntimeError(RESUME_REFUSED)

    def stepped(self) -> SteppedIsaacLabTask:
        """This task as seedlock-play and seedlock-export step it (a batched task)."""
        return SteppedIsaacLabTask(self)

    def close(self) -> None:
        """Close the env, then Isaac Sim. Closing Isaac Sim can end the process (Kit's fast
        shutdown), so this comes last and flushes what the run printed first."""
        self.env.close()
        sys.stdout.flush()
        sys.stderr.flush()
        self.app.close()


class SteppedIsaacLabTask:
    """An Isaac Lab task stepped by seedlock, with the batched interface of the embedded tasks
    (``BatchedTask``): seedlock-play and seedlock-export act on its ``policy`` observations with a
    library's trained policy, as the library's Isaac Lab wrapper would hand them over. Isaac Lab
    resets finished envs inside its step, so ``final_obs`` is the observation after that reset."""

    def __init__(self, task: IsaacLabTask) -> None:
        self.task = task
        self._obs: torch.Tensor | None = None

    @property
    def num_envs(self) -> int:
        return self.task.num_envs

    @property
    def device(self) -> torch.device:
        return self.task.device

    @property
    def num_actions(self) -> int:
        return int(self.task.env.unwrapped.single_action_space.shape[0])

    def observations(self) -> torch.Tensor:
        if self._obs is None:
            obs, _ = self.task.env.reset()
            self._obs = obs["policy"]
        return self._obs

    def step(self, actions: torch.Tensor) -> StepResult:
        self.observations()  # reset first: gymnasium refuses a step before the first reset
        obs, reward, terminated, truncated, _ = self.task.env.step(actions.to(self.device))
        self._obs = obs["policy"]
        return StepResult(self._obs, reward, terminated, truncated, self._obs)


def is_isaaclab(env: Any) -> bool:
    """Whether an adapter's ``run.env`` is an Isaac Lab task (wrap it with ``isaaclab_rl``)."""
    return isinstance(env, IsaacLabTask)


def check_agent_inputs(task: IsaacLabTask, trainer: str, agent_takes_images: bool) -> None:
    """Stop with a message, not deep inside a library, when the agent config's network does not fit
    the task's observations (a CNN on flat observations, an MLP on camera frames)."""
    shape = task.observation_shape
    if (len(shape) == 3) == agent_takes_images:
        return
    task_id = task.launch_info.get("task_id")
    if agent_takes_images:
        raise TaskConfigError(
            f"task.id={task_id} has flat observations of shape {shape}, and the agent config of "
            f"trainer={trainer} is a CNN for camera frames (Isaac Lab's camera Cartpole agent). For a "
            f"state task use agent=cartpole/{trainer} (Isaac Lab's Cartpole agent) or another agent config."
        )
    raise TaskConfigError(
        f"task.id={task_id} has image observations of shape {shape}, and the agent config of "
        f"trainer={trainer} is an MLP for flat observations. Use trainer=rl_games or trainer=skrl (their "
        "task=isaaclab agents are Isaac Lab's camera CNNs) or an agent config for images."
    )


def make(cfg: DictConfig, seed: int) -> IsaacLabTask:
    """Build the env ``cfg.task.id`` with the run's seed, num_envs and device: Isaac Lab 3.x through
    its own config resolution and ``launch_simulation`` (kitless on Newton: no Isaac Sim), Isaac
    Lab 2.x by starting Isaac Sim first. Call it after ``determinism.apply`` (``tasks.make`` checks)."""
    if cfg.checkpoint:
        raise TaskConfigError(RESUME_REFUSED)
    if not cfg.task.id:
        raise TaskConfigError("task=isaaclab needs task.id, an Isaac Lab task id such as Isaac-Cartpole-Direct.")
    if cfg.task.get("asset_root"):
        # Isaac Lab reads its asset root when isaaclab.utils.assets is imported: set it before.
        os.environ["ISAACSIM_ASSET_ROOT"] = str(Path(cfg.task.asset_root).expanduser().resolve())
    if isaaclab_major() >= 3:
        return make_kitless(cfg, seed)
    return make_with_isaac_sim(cfg, seed)


def isaaclab_major() -> int:
    """Isaac Lab's major version, 0 when it is not installed."""
    try:
        return int(importlib.metadata.version("isaaclab").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


def make_kitless(cfg: DictConfig, seed: int) -> IsaacLabTask:
    """Isaac Lab 3.x: the task's config with its physics preset (``task.physics``), the run's seed,
    envs and device set on it, then ``launch_simulation``, which starts Kit only for what needs it
    (PhysX, RTX cameras) and nothing for Newton, held open until the task is closed."""
    global _launched
    if _launched is not None:
        raise TaskConfigError("task=isaaclab builds one Isaac Lab env per process: run each in its own seedlock-train process.")
    import isaaclab_tasks  # noqa: F401  registers Isaac Lab's task ids with gymnasium
    from isaaclab.app import launch_simulation
    from isaaclab_tasks.utils import resolve_task_config

    task_id = registered_id(str(cfg.task.id))
    preset = cfg.task.get("physics") or None
    isaac_preset = None if preset in SEEDLOCK_PHYSICS else preset
    env_cfg, _ = resolve_task_config(task_id, None, overrides=[f"physics={isaac_preset}"] if isaac_preset else [])
    if preset in SEEDLOCK_PHYSICS:
        env_cfg.sim.physics = SEEDLOCK_PHYSICS[preset]()
    env_cfg.seed = seed  # Isaac Lab seeds python, numpy, torch and warp from it at construction
    env_cfg.scene.num_envs = int(cfg.num_envs)
    env_cfg.sim.device = isaac_device(str(cfg.device))
    apply_overrides(env_cfg, OmegaConf.to_container(cfg.task.env, resolve=True), "task.env")
    physics = determinism.lock_isaaclab_physics(
        env_cfg.sim.physics, env_cfg.sim.device, bool(cfg.torch_deterministic),
        str(cfg.determinism.get("unlockable_physics", "warn")), preset, task_id,  # older runs: warn
    )
    simulation = contextlib.ExitStack()
    simulation.enter_context(launch_simulation(env_cfg, {"visualizer": []}))
    _launched = {
        "task_id": task_id,
        "kitless": True,
        "physics": cfg.task.get("physics") or "the task's default",
        "physics_cfg": type(env_cfg.sim.physics).__name__,
        "device": env_cfg.sim.device,
        "asset_root": os.environ.get("ISAACSIM_ASSET_ROOT"),
        "versions": isaaclab_versions(),
    }
    try:
        try:
            with torch_flags_kept():
                env = gymnasium.make(task_id, cfg=env_cfg, render_mode=None)
        except ValueError as error:
            if LOCK_REFUSED_BY_TASK not in str(error):
                raise
            # Isaac Lab refuses the physics lock for this task (its sensors need MuJoCo Warp's sensor
            # stage): determinism decides (refuse, or warn and unlock), then the task is built again.
            simulation.close()
            physics = determinism.physics.task_refuses_lock(
                physics, env_cfg.sim.physics, str(error), str(cfg.determinism.get("unlockable_physics", "warn")), task_id,
            )
            simulation = contextlib.ExitStack()
            simulation.enter_context(launch_simulation(env_cfg, {"visualizer": []}))
            with torch_flags_kept():
                env = gymnasium.make(task_id, cfg=env_cfg, render_mode=None)
    except FileNotFoundError as error:  # Isaac Lab's retrieve_file_path: an asset it cannot find
        simulation.close()
        root = os.environ.get("ISAACSIM_ASSET_ROOT") or "NVIDIA's asset server (no task.asset_root set)"
        raise TaskConfigError(
            f"task.id={task_id} needs an asset that is not there ({error}); assets are looked up under {root}. "
            "Offline, write stand-ins with `seedlock-isaaclab-assets <dir>` and set task.asset_root=<dir>; with "
            "internet, leave task.asset_root unset."
        ) from None
    statistics = EpisodeStatistics(int(env.unwrapped.num_envs), torch.device(env.unwrapped.device))
    return IsaacLabTask(env=EpisodeRecorder(env, statistics), app=simulation, launch_info=dict(_launched),
                        physics=dataclasses.asdict(physics))


def newton_featherstone() -> Any:
    """Newton's Featherstone articulation solver, 16 substeps a physics step: deterministic on a GPU
    under warp's RUN_TO_RUN with a sorted collision pipeline (Cartpole- and Ant-Direct, H200), where
    MuJoCo Warp cannot be locked for Ant. Explicit integration: at 4 substeps Ant's observations
    turned NaN in training (CPU and H200), at 16 they did not (``+task.env.sim.physics.num_substeps``)."""
    from isaaclab_newton.physics import FeatherstoneSolverCfg, NewtonCfg

    return NewtonCfg(solver_cfg=FeatherstoneSolverCfg(), num_substeps=16, use_cuda_graph=True)


def newton_xpbd() -> Any:
    """Newton's XPBD solver, 4 substeps a physics step: deterministic on a GPU with its
    RUN_TO_RUN mode and a sorted collision pipeline (H200: Cartpole-Direct, and Ant-Direct's
    physics), but Ant-Direct's observations turn NaN in training with Newton's stand-in Ant (CPU and
    H200, at 4 and 16 substeps): use it for Cartpole, newton_featherstone for Ant."""
    from isaaclab_newton.physics import NewtonCfg, XPBDSolverCfg

    return NewtonCfg(solver_cfg=XPBDSolverCfg(), num_substeps=4, use_cuda_graph=True)


# task.physics presets seedlock adds to each task's own (Isaac Lab's newton_mjwarp, newton_kamino, physx).
SEEDLOCK_PHYSICS = {"newton_featherstone": newton_featherstone, "newton_xpbd": newton_xpbd}


def make_with_isaac_sim(cfg: DictConfig, seed: int) -> IsaacLabTask:
    """Isaac Lab 2.x: Isaac Sim first (AppLauncher, with the renderer group's kit), then the env."""
    global _launched
    require_isaaclab()
    if _launched is not None:
        raise TaskConfigError(
            "Isaac Sim was already started in this process (it starts once per process): run each "
            "task=isaaclab run in its own seedlock-train process."
        )
    from isaaclab.app import AppLauncher

    launch = launcher_kwargs(cfg, isaaclab_apps_dir(AppLauncher))
    app_launcher = AppLauncher(**launch)
    _launched = {**launch, "task_id": str(cfg.task.id), "versions": isaaclab_versions()}

    import isaaclab_tasks  # noqa: F401  registers Isaac Lab's task ids with gymnasium
    from isaaclab_tasks.utils import parse_env_cfg

    task_id = registered_id(str(cfg.task.id))
    env_cfg = parse_env_cfg(task_id, device=isaac_device(str(cfg.device)), num_envs=int(cfg.num_envs))
    # Isaac Lab seeds at construction from env_cfg.seed (some randomisation happens there).
    env_cfg.seed = seed
    apply_overrides(env_cfg, OmegaConf.to_container(cfg.task.env, resolve=True), "task.env")
    with torch_flags_kept():
        env = gymnasium.make(task_id, cfg=env_cfg, render_mode=None)
    statistics = EpisodeStatistics(int(env.unwrapped.num_envs), torch.device(env.unwrapped.device))
    return IsaacLabTask(env=EpisodeRecorder(env, statistics), app=app_launcher.app, launch_info=dict(_launched))


def require_isaaclab() -> None:
    """One paragraph naming what is missing and how to get it, instead of an ImportError later."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise IsaacLabMissingError(
            f"task=isaaclab needs Isaac Lab, and this Python lacks the package(s) {', '.join(missing)}. "
            "Isaac Lab 3.x runs its classic tasks kitless on Newton, on the CPU too: `make install-isaaclab` "
            "creates .venv-isaaclab with seedlock and Isaac Lab 3.0 (README, \"Isaac Lab backend\"). Isaac Lab "
            f"2.x needs all of {', '.join(REQUIRED_PACKAGES)} (Isaac Sim: Python 3.11, an NVIDIA RTX GPU), e.g. "
            "`pip install \"isaaclab[isaacsim,all]==2.3.0\" --extra-index-url https://pypi.nvidia.com`."
        )


def launcher_kwargs(cfg: DictConfig, apps_dir: Path | None) -> dict[str, Any]:
    """AppLauncher's keyword arguments: ``task.app`` (headless, enable_cameras, ...), the run's
    device, and the renderer's kit as the experience (empty: Isaac Lab picks one)."""
    app = OmegaConf.to_container(cfg.task.app, resolve=True)
    assert isinstance(app, dict)
    for key, owner in RUN_OWNED_APP_ARGS.items():
        if key in app:
            raise TaskConfigError(f"task.app.{key} is set by the run config's {owner}, not task.app; remove it.")
    device = isaac_device(str(cfg.device))
    kwargs: dict[str, Any] = {**app, "device": device, "experience": experience_path(cfg.renderer.kit)}
    if cfg.get("distributed"):
        kwargs["distributed"] = True  # Isaac Sim on this rank's GPU (LOCAL_RANK), as Isaac Lab's train scripts do
    if kwargs["experience"] and apps_dir is not None:
        # The kit depends on Isaac Lab's isaaclab.python.headless.rendering, found in Isaac Lab's
        # apps/ only when that folder is one of Kit's extension folders.
        kwargs["kit_args"] = " ".join(filter(None, [str(app.get("kit_args", "")), f"--ext-folder={apps_dir}"]))
    return kwargs


def isaac_device(device: str) -> str:
    """seedlock's ``cuda`` is the current CUDA device; Isaac Lab's configs name devices by index."""
    return "cuda:0" if device == "cuda" else device


def experience_path(kit: str | None) -> str:
    if not kit:
        return ""
    path = KITS_DIR / kit
    if not path.is_file():
        raise TaskConfigError(f"renderer.kit={kit!r} is not a file in {KITS_DIR}.")
    return str(path)


def isaaclab_apps_dir(app_launcher_class: type) -> Path | None:
    """Isaac Lab's apps/ folder, found as AppLauncher finds it: four levels above its module."""
    path = Path(inspect.getfile(app_launcher_class)).parent.joinpath(*[".."] * 4, "apps").resolve()
    return path if path.is_dir() else None


def isaaclab_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in REQUIRED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def registered_id(task_id: str) -> str:
    if task_id in gymnasium.registry:
        return task_id
    isaac_ids = [name for name in gymnasium.registry if name.startswith("Isaac-")]
    close = difflib.get_close_matches(task_id, isaac_ids, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" {len(isaac_ids)} Isaac Lab ids are registered."
    raise TaskConfigError(f"task.id={task_id!r} is not a registered Isaac Lab task.{hint}")


def apply_overrides(target: Any, overrides: Mapping[str, Any], prefix: str) -> None:
    """Set ``task.env`` values onto Isaac Lab's env cfg (nested: +task.env.sim.dt=0.01); an unknown
    attribute is an error that names it, rather than a silently ignored key."""
    for key, value in overrides.items():
        if not hasattr(target, key):
            raise TaskConfigError(f"{prefix}.{key}: the Isaac Lab env cfg {type(target).__name__} has no {key!r}.")
        current = getattr(target, key)
        if isinstance(value, Mapping) and not isinstance(current, Mapping):
            apply_overrides(current, value, f"{prefix}.{key}")
        else:
            setattr(target, key, value)


class EpisodeRecorder(gymnasium.Wrapper):
    """Records each finished episode's return and length into :class:`EpisodeStatistics`, as the
    embedded tasks do, so fingerprints carry the mean return whatever the library. The length is
    Isaac Lab's own counter (``episode_length_buf``, before the step resets it), so RSL-RL's random
    initial episode lengths count as they do on the embedded tasks."""

    def __init__(self, env: gymnasium.Env, statistics: EpisodeStatistics) -> None:
        super().__init__(env)
        self.statistics = statistics
        self.observation_digests = ObservationDigests()

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        lengths = self.env.unwrapped.episode_length_buf + 1
        obs, reward, terminated, truncated, extras = self.env.step(action)
        self.statistics.record(reward.detach(), terminated | truncated, lengths)
        self.observation_digests.note(obs["policy"], action if isinstance(action, torch.Tensor) else None, reward)
        return obs, reward, terminated, truncated, extras

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        with torch_flags_kept():  # reset(seed=...) seeds through Isaac Sim's set_seed
            return self.env.reset(**kwargs)
