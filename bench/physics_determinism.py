"""Physics determinism of an Isaac Lab 3.x task: does the same seed give the same physics twice?

One *cell* is a task, a physics preset and a determinism setting (``default``,
``torch_deterministic``, ``strict``). For each cell the task is built by seedlock itself
(``tasks.make_for_run``: ``determinism.apply``, then the physics lock of determinism/physics.py),
twice, in two separate processes, and stepped ``--steps`` times with seeded random actions; every
step's observations are hashed. The cell's result is the first step at which the two runs'
observations differ (or "identical"), and the env-steps/s of the stepping (warm: after
``--warmup`` steps, so warp's kernel compilation and CUDA graph capture are not counted).

    python -m bench.physics_determinism --tasks Isaac-Cartpole-Direct Isaac-Ant-Direct \\
        --physics newton_mjwarp newton_xpbd --settings default torch_deterministic strict \\
        --device cuda --num-envs 4096 --steps 300 --out bench/results/physics_determinism_cuda.json

A process whose setup is refused (``determinism=strict`` on a solver that cannot be locked) or
fails is recorded with its message, not as a crash of the whole bench.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from determinism.compare import first_unequal

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "default": [],
    "torch_deterministic": ["torch_deterministic=true"],
    "strict": ["determinism=strict"],
    # Isaac Lab's own switch (what its --deterministic sets on the physics), forced past seedlock's check
    "isaaclab_switch": ["+task.env.sim.physics.deterministic=true"],
}


def step_once(args: argparse.Namespace) -> dict[str, Any]:
    """One process: build the task as seedlock-train does, step it, hash every step's observations."""
    import torch
    from hydra import compose, initialize_config_module

    import determinism
    import tasks
    from tasks.isaaclab import isaaclab_major
    from trainers.run_config import register

    register()
    overrides = [f"task=isaaclab/{args.task}", f"device={args.device}", f"num_envs={args.num_envs}",
                 *SETTINGS[args.setting]]
    if args.physics:
        overrides.append(f"task.physics={args.physics}")
    if args.asset_root:
        overrides.append(f"task.asset_root={args.asset_root}")
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    result: dict[str, Any] = {"task": args.task, "physics": args.physics, "setting": args.setting,
                              "num_envs": args.num_envs, "device": args.device, "isaaclab_major": isaaclab_major()}
    try:
        manifest = determinism.apply(cfg)
        task = tasks.make_for_run(cfg, manifest.seed)
    except (determinism.DeterminismError, tasks.TaskConfigError) as error:
        return {**result, "refused": str(error)}
    result["physics_lock"] = task.physics
    env = task.stepped()
    generator = torch.Generator(device=env.device).manual_seed(1234)
    hashes = []
    obs = env.observations()
    start = None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            if env.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        actions = torch.rand((env.num_envs, env.num_actions), generator=generator, device=env.device) * 2 - 1
        obs = env.step(actions).obs
        if step >= args.warmup:
            hashes.append(hashlib.sha256(obs.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16])
    seconds = time.perf_counter() - (start or time.perf_counter())
    result.update(hashes=hashes, seconds=seconds, env_steps_per_s=args.num_envs * args.steps / seconds)
    task.env.close()
    return result


def run_cell(args: argparse.Namespace, task: str, physics: str, setting: str, work: Path) -> dict[str, Any]:
    """The two processes of one cell, one after the other (each has the GPU to itself)."""
    runs = []
    for name in ("a", "b"):
        out = work / f"{task}-{physics}-{setting}-{name}.json"
        command = [sys.executable, "-m", "bench.physics_determinism", "--one", "--task", task, "--physics", physics,
                   "--setting", setting, "--device", args.device, "--num-envs", str(args.num_envs), "--steps",
                   str(args.steps), "--warmup", str(args.warmup), "--out", str(out)]
        if args.asset_root:
            command += ["--asset-root", args.asset_root]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0 or not out.exists():
            runs.append({"failed": (done.stderr or done.stdout)[-1500:]})
        else:
            runs.append(json.loads(out.read_text()))
    cell: dict[str, Any] = {"task": task, "physics": physics, "setting": setting}
    if any("failed" in run for run in runs) or any("refused" in run for run in runs):
        cell["outcome"] = "refused" if all("refused" in run for run in runs) else "failed"
        cell["message"] = next(run.get("refused") or run.get("failed") for run in runs if "refused" in run or "failed" in run)
        return cell
    hashes = runs[0]["hashes"], runs[1]["hashes"]
    difference = None if hashes[0] == hashes[1] else first_unequal(*hashes)
    cell.update(
        outcome="identical" if difference is None else "differ",
        first_divergent_step=difference,
        steps=len(runs[0]["hashes"]),
        env_steps_per_s=[round(run["env_steps_per_s"]) for run in runs],
        physics_lock={key: runs[0]["physics_lock"].get(key) for key in ("solver", "mode_requested", "mode", "reproducible", "versions")},
    )
    return cell


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
                            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            info["driver"] = None
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one process of a cell
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="default", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--tasks", nargs="+", default=["Isaac-Cartpole-Direct", "Isaac-Ant-Direct"])
    parser.add_argument("--physics", nargs="+", default=["newton_mjwarp", "newton_featherstone", "newton_xpbd"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=sorted(SETTINGS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--asset-root", default=os.environ.get("SEEDLOCK_ISAACLAB_ASSETS"))
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.one:
        args.physics = args.physics[0] if isinstance(args.physics, list) else args.physics
        args.out.write_text(json.dumps(step_once(args)) + "\n")
        return
    cells = []
    with tempfile.TemporaryDirectory(prefix="seedlock-physics-") as work:
        for task in args.tasks:
            for physics in args.physics:
                for setting in args.settings:
                    cells.append(run_cell(args, task, physics, setting, Path(work)))
                    print(json.dumps(cells[-1]), flush=True)
                    args.out.write_text(json.dumps({"machine": machine(), "num_envs": args.num_envs, "steps": args.steps,
                                                    "cells": cells}, indent=1) + "\n")


if __name__ == "__main__":
    main()
