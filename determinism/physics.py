"""The physics' determinism: the switches of warp, the solver and the collision pipeline, in one place.

Isaac Lab 3.x runs its physics in NVIDIA warp kernels (Newton's solvers: MuJoCo Warp, XPBD,
Featherstone, Kamino). On a GPU a kernel that accumulates with floating-point atomics adds in a
different order on every run, so two runs of the same seed differ from the first contact (MuJoCo
Warp) or the first frame (XPBD). Warp's ``DeterministicMode`` makes a module's atomics
reproducible, and Newton's ``CollisionPipeline`` sorts its contacts when asked; Isaac Lab 3.0
exposes both as ``PhysicsCfg.deterministic``, which its ``NewtonManager`` turns into
``DeterministicMode.RUN_TO_RUN`` for the solver's kernels (the solver's ``deterministic`` argument),
a sorted collision pipeline, and, for MuJoCo Warp, ``disable_sensors`` (its sensor stage has no
deterministic form).

:func:`lock_isaaclab_physics` is the one place that sets them, from the run's
``torch_deterministic``, for every library alike, before the simulation starts, and says what it
set and what it could not set in the manifest's ``physics`` block:

- ``wp.config.deterministic``, warp's process-wide mode, is left as it is: it compiles every warp
  module deterministically, and Newton's narrow phase (warp 1.19, newton 1.8) and MuJoCo Warp's
  sensor kernels (warp 1.17, mujoco-warp 3.12) fail to compile under it, measured on an H200.
  The solver's and the collision pipeline's own switches are the ones that compile.
- A solver with no deterministic mode on this device and these versions (:data:`UNLOCKABLE`)
  is refused before anything runs under ``determinism.unlockable_physics=refuse``
  (``determinism=strict``), and under ``warn`` (``torch_deterministic=true`` alone) warned about
  once, recorded as ``not_guaranteed``, and run without the switch (which would not compile).
- On the CPU warp runs a kernel's threads one after another, so its results repeat with or
  without a mode; the switches are still set where the solver accepts them (the same results,
  tested), and nothing is refused.
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from determinism.torch_flags import DeterminismError

NOT_GUARANTEED = "not_guaranteed"
RUN_TO_RUN = "run_to_run"
UNLOCKABLE_POLICIES = ("warn", "refuse")
SERIAL_CPU = "yes: warp runs CPU kernels serially"
PHYSICS_DISTRIBUTIONS = ("warp-lang", "newton", "mujoco-warp", "mujoco", "isaaclab")  # isaaclab_newton ships in isaaclab
# Isaac Lab 3.0's solver configs by class name -> seedlock's name for the solver.
SOLVERS = {
    "MJWarpSolverCfg": "mujoco_warp",
    "XPBDSolverCfg": "xpbd",
    "FeatherstoneSolverCfg": "featherstone",
    "KaminoPADMMSolverCfg": "kamino",
}
# Solvers whose Newton deterministic mode Isaac Lab 3.0's NewtonManager accepts.
ISAACLAB_LOCKABLE_SOLVERS = ("mujoco_warp", "xpbd", "featherstone")
WARP_GLOBAL_MODE_LEFT = (
    "left as it is: warp's process-wide mode compiles every warp module deterministically, and "
    "Newton's narrow phase (warp 1.19, newton 1.8) and MuJoCo Warp's sensor kernels (warp 1.17, "
    "mujoco-warp 3.12) fail to compile under it (measured on an H200); the solver's and the "
    "collision pipeline's own switches are set instead. Isaac Lab's own warp kernels run without a mode."
)


class PhysicsNotLockedWarning(UserWarning):
    """torch_deterministic=true on physics that has no deterministic mode here."""


@dataclass(frozen=True)
class Unlockable:
    """A solver that has no working deterministic mode on a device type, up to a version."""

    solver: str
    device_type: str  # "cuda"
    distribution: str  # whose version decides
    up_to: str | None  # the last version known to fail; None: every version
    why: str
    after: str | None = None  # the last version known to work, below the failing ones

    def applies(self, solver: str, device_type: str, versions: Mapping[str, str | None]) -> bool:
        if (solver, device_type) != (self.solver, self.device_type):
            return False
        version = versions.get(self.distribution)
        if version is None or self.up_to is None:
            return True
        return Version(version) <= Version(self.up_to) and (self.after is None or Version(version) > Version(self.after))


UNLOCKABLE = (
    Unlockable(
        "mujoco_warp", "cuda", "mujoco-warp", "3.17",
        "MuJoCo Warp's kernels do not compile in warp's deterministic mode on this version (measured on an "
        "H200 with warp 1.19, newton 1.8 and mujoco-warp 3.17; Isaac Lab 3.0's pins, mujoco-warp 3.12, do), "
        "and without it two runs differ from the first contact",
        after="3.12.0",
    ),
    Unlockable(
        "kamino", "cuda", "newton", None,
        "Isaac Lab 3.0's NewtonManager offers deterministic modes for Featherstone, MuJoCo Warp and XPBD "
        "only, and Kamino's kernels accumulate with atomics",
    ),
)
# What would run reproducibly instead, for the messages: seedlock's preset (tasks/isaaclab.py) that
# locked and trained Cartpole- and Ant-Direct; newton_xpbd locks too but Ant's training turned NaN.
LOCKABLE_PRESETS = ("newton_featherstone",)


@dataclass
class PhysicsLock:
    """The manifest's ``physics`` block: what computes the physics and how far it is locked."""

    engine: str  # newton, physx, or the embedded/gym engines
    solver: str
    preset: str | None  # task.physics, or the task's default
    device: str
    versions: dict[str, str | None]
    mode_requested: str  # not_guaranteed, or run_to_run under torch_deterministic
    mode: str  # the mode that runs
    reproducible: str  # what repeats, in words
    settings: dict[str, Any] = field(default_factory=dict)  # what seedlock set, by Isaac Lab's names
    applied_by_isaaclab: list[str] = field(default_factory=list)  # what Isaac Lab derives from them
    not_locked: dict[str, str] = field(default_factory=dict)  # what was not set, and why


def physics_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PHYSICS_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def solver_name(physics_cfg: Any) -> tuple[str, str]:
    """(engine, solver) of an Isaac Lab 3.x physics config."""
    kind = type(physics_cfg).__name__
    if "Physx" in kind:
        return "physx", "physx"
    solver_cfg = getattr(physics_cfg, "solver_cfg", None)
    if solver_cfg is None:
        return kind, "unknown"
    if getattr(solver_cfg, "use_mujoco_cpu", False):
        return "newton", "mujoco_cpu"
    return "newton", SOLVERS.get(type(solver_cfg).__name__, type(solver_cfg).__name__)


def unlockable_reason(solver: str, device: str, versions: Mapping[str, str | None]) -> str | None:
    device_type = device.split(":")[0]
    for entry in UNLOCKABLE:
        if entry.applies(solver, device_type, versions):
            return entry.why
    return None


def lock_isaaclab_physics(
    physics_cfg: Any, device: str, torch_deterministic: bool, unlockable_physics: str, preset: str | None, task_id: str,
) -> PhysicsLock:
    """Set the physics' deterministic switches on Isaac Lab's physics config (before the simulation
    starts), or refuse/warn where the solver has none here; returns what was set, for the manifest.
    ``unlockable_physics`` is warn or refuse (checked with the run config, trainers/run_config.py)."""
    engine, solver = solver_name(physics_cfg)
    versions = physics_versions()
    on_cpu = device.split(":")[0] == "cpu"
    lock = PhysicsLock(
        engine=engine, solver=solver, preset=preset, device=device, versions=versions,
        mode_requested=RUN_TO_RUN if torch_deterministic else NOT_GUARANTEED, mode=NOT_GUARANTEED, reproducible="",
    )
    lock.not_locked["wp.config.deterministic"] = f"{warp_global_mode()}, {WARP_GLOBAL_MODE_LEFT}"
    requested_in_task_env = isaaclab_switch(physics_cfg)
    if requested_in_task_env:  # +task.env.sim.physics.deterministic=true, or deterministic_mode
        lock.settings["task.env (the command line)"] = requested_in_task_env
        lock.mode = RUN_TO_RUN if requested_in_task_env.endswith("True") else requested_in_task_env.rsplit("=", 1)[1]
    if not torch_deterministic:
        if on_cpu:
            lock.reproducible = SERIAL_CPU
        elif requested_in_task_env:
            lock.reproducible = "run to run on this GPU model where Isaac Lab accepts the switch task.env set"
        else:
            lock.reproducible = "no guarantee: torch_deterministic=false leaves the physics' atomics unordered"
        return lock
    why = None if on_cpu else unlockable_reason(solver, device, versions)
    if why is not None:
        return not_lockable(lock, why, unlockable_physics, task_id)
    if engine == "physx":
        lock_physx(physics_cfg, lock)
    elif solver in ISAACLAB_LOCKABLE_SOLVERS:
        physics_cfg.deterministic = True
        lock.settings["sim.physics.deterministic"] = True
        lock.applied_by_isaaclab = [
            "NewtonCfg.deterministic_mode: run_to_run (warp.DeterministicMode.RUN_TO_RUN) for the solver's kernels",
            "CollisionPipeline(deterministic=True): contacts sorted before the solver reads them",
        ]
        if solver == "mujoco_warp":
            lock.applied_by_isaaclab.append("MJWarpSolverCfg.disable_sensors=True (MuJoCo Warp's sensor stage has no deterministic form)")
        lock.mode = RUN_TO_RUN
    else:  # on the CPU: Kamino, MuJoCo-C; reproducible without a mode
        lock.not_locked[f"solver {solver}"] = "Isaac Lab 3.0 has no deterministic mode for it; on the CPU none is needed"
    lock.reproducible = SERIAL_CPU if on_cpu else "yes, run to run on this GPU model (warp RUN_TO_RUN)"
    return lock


def isaaclab_switch(physics_cfg: Any) -> str:
    """Isaac Lab's own determinism request when the command line already set it (task.env), else ''."""
    mode = getattr(physics_cfg, "deterministic_mode", NOT_GUARANTEED)
    if mode != NOT_GUARANTEED:
        return f"sim.physics.deterministic_mode={mode}"
    return "sim.physics.deterministic=True" if getattr(physics_cfg, "deterministic", False) else ""


def lock_physx(physics_cfg: Any, lock: PhysicsLock) -> None:
    """PhysX (Isaac Sim): its enhanced determinism, on every PhysX config the preset holds."""
    physics_cfg.deterministic = True
    lock.settings["sim.physics.deterministic"] = True
    for name in ("", "isaacsim_physx", "ovphysx"):
        target = getattr(physics_cfg, name) if name else physics_cfg
        if target is not None and hasattr(target, "enable_enhanced_determinism"):
            target.enable_enhanced_determinism = True
            lock.settings[".".join(filter(None, ["sim.physics", name, "enable_enhanced_determinism"]))] = True
    lock.mode = RUN_TO_RUN
    lock.not_locked["physx"] = "untested: PhysX runs in Isaac Sim, which seedlock has not run"


def not_lockable(lock: PhysicsLock, why: str, unlockable_physics: str, task_id: str) -> PhysicsLock:
    preset = f"task.physics={lock.preset}" if lock.preset else "the task's default physics"
    versions = ", ".join(f"{name} {version}" for name, version in lock.versions.items() if version)
    message = (
        f"task.id={task_id} cannot run with locked physics on {lock.device}: its solver, {lock.solver} ({preset}; "
        f"{versions}), has no deterministic mode that works here: {why}. What would: task.physics="
        f"{' or task.physics='.join(LOCKABLE_PRESETS)} (Newton's Featherstone solver, whose deterministic mode works here), or "
        "device=cpu (warp runs CPU kernels serially, the same every run)"
    )
    if unlockable_physics == "refuse":
        raise DeterminismError(
            f"{message}; or drop determinism=strict (determinism.unlockable_physics=refuse) to run it unlocked, "
            "recorded as not_guaranteed."
        )
    warnings.warn(f"{message}. Running with the physics unlocked (manifest.json: physics.mode not_guaranteed).",
                  PhysicsNotLockedWarning, stacklevel=3)
    lock.not_locked[f"solver {lock.solver}"] = why
    lock.reproducible = "no guarantee: the solver cannot be locked here (see not_locked)"
    return lock


def warp_global_mode() -> str:
    """``wp.config.deterministic`` as it is now (warp is imported by Isaac Lab by then)."""
    warp = sys.modules.get("warp")
    mode = getattr(getattr(warp, "config", None), "deterministic", None)
    return f"wp.config.deterministic is {getattr(mode, 'name', mode)}"


def torch_physics(task: str, backend: str, device: str, torch_deterministic: bool) -> dict[str, Any]:
    """The ``physics`` block of a task that is not Isaac Lab's: the embedded tasks step in PyTorch
    (locked with it), gymnasium's on the CPU in their own engine (MuJoCo, Box2D, plain Python)."""
    if backend == "gym":
        return {
            "engine": f"gymnasium {task}", "device": "cpu", "mode_requested": RUN_TO_RUN if torch_deterministic else NOT_GUARANTEED,
            "mode": "serial_cpu", "reproducible": "yes: gymnasium's engines run on the CPU, one env after another",
            "versions": {name: version for name, version in physics_versions().items() if name == "mujoco"},
        }
    return {
        "engine": f"seedlock {task} (PyTorch)", "device": device,
        "mode_requested": RUN_TO_RUN if torch_deterministic else NOT_GUARANTEED,
        "mode": "torch_deterministic" if torch_deterministic else NOT_GUARANTEED,
        "reproducible": "as PyTorch's own kernels: the step is PyTorch code, locked with it",
    }


def task_refuses_lock(
    lock: PhysicsLock, physics_cfg: Any, reason: str, unlockable_physics: str, task_id: str,
) -> PhysicsLock:
    """The task itself cannot run with locked physics, which Isaac Lab says only while it builds
    the task (MuJoCo Warp's sensor stage feeds a sensor the task reads, such as Ant's joint
    wrenches): refuse under ``refuse``; under ``warn``, take the switches back off so that the
    caller builds the task again, unlocked, and record why."""
    message = (
        f"task.id={task_id} cannot run with locked physics: Isaac Lab refuses the deterministic mode of its "
        f"solver, {lock.solver}: {reason.strip()} What would: task.physics={' or task.physics='.join(LOCKABLE_PRESETS)} "
        "(no MuJoCo sensor stage), or torch_deterministic without determinism=strict to run it unlocked"
    )
    if unlockable_physics == "refuse":
        raise DeterminismError(f"{message} (recorded as not_guaranteed).")
    warnings.warn(f"{message}. Running with the physics unlocked (manifest.json: physics.mode not_guaranteed).",
                  PhysicsNotLockedWarning, stacklevel=3)
    physics_cfg.deterministic = False
    solver_cfg = getattr(physics_cfg, "solver_cfg", None)
    if lock.solver == "mujoco_warp" and solver_cfg is not None:
        solver_cfg.disable_sensors = False  # Isaac Lab turned it on for the lock; the task needs its sensors
    lock.settings = {}
    lock.applied_by_isaaclab = []
    lock.mode = NOT_GUARANTEED
    lock.not_locked[f"task {task_id}"] = reason.strip()
    on_cpu = lock.device.split(":")[0] == "cpu"
    lock.reproducible = SERIAL_CPU if on_cpu else "no guarantee: the task cannot be locked (see not_locked)"
    return lock
