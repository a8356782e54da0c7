"""Env alone: env-steps/s of the embedded ``cartpole`` and ``cartpole_rgb`` at several batch sizes.

No policy, no library: fixed actions, the task's own ``step`` (physics, rewards, resets, and for
``cartpole_rgb`` the rasterizer and frame stack). Each size is warmed up, then timed in
repetitions of at least ``--seconds`` each (CUDA synchronised around every timing); the median
repetition is reported. On CUDA ``cartpole`` is timed twice: its step replayed as a CUDA graph
(the default) and run eagerly (``task.env.cuda_graph=false``), so the table shows what the graph
saves. Writes ``bench/results/env_throughput_<device>.json`` and ``.md``.

    .venv/bin/python -m bench.env_throughput                     # CPU: 1, 256, 4096 envs
    python -m bench.env_throughput --device cuda                 # GPU: 1, 256, 4096, 16384 envs
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

import determinism
import tasks
from bench.machine import describe, machine
from trainers.run_config import register

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
TASKS = ("cartpole", "cartpole_rgb")
SIZES = {"cpu": (1, 256, 4096), "cuda": (1, 256, 4096, 16384)}
# (step label, task.env overrides) of each task per device kind
STEPS: dict[tuple[str, str], tuple[tuple[str, dict[str, Any]], ...]] = {
    ("cartpole", "cuda"): (("cuda graph", {}), ("eager", {"cuda_graph": False})),
}
WARMUP_STEPS = 20


def time_steps(env: Any, device: str, seconds: float, repetitions: int) -> float:
    """Median env-steps/s over ``repetitions`` timings of at least ``seconds`` each."""
    actions = torch.zeros(env.num_envs, env.num_actions, device=device)
    for _ in range(WARMUP_STEPS):
        env.step(actions)
    rates = []
    for _ in range(repetitions):
        sync(device)
        start, steps = time.perf_counter(), 0
        while True:
            env.step(actions)
            steps += 1
            if steps % 10 == 0 or steps < 10:
                sync(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds and steps >= 3:
                    break
        rates.append(steps * env.num_envs / elapsed)
    return statistics.median(rates)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.env_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum length of one timing")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--out", type=Path, help="results file stem (default bench/results/env_throughput_<cpu|cuda>)")
    args = parser.parse_args()
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    register()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"device={args.device}"])
    determinism.apply(cfg)
    rows = []
    for task in TASKS:
        for step, params in STEPS.get((task, kind), (("eager", {}),)):
            for num_envs in SIZES[kind]:
                env = tasks.make(task, params, num_envs, seed=0, device=args.device, render={})
                rate = time_steps(env, args.device, args.seconds, args.repetitions)
                rows.append({"task": task, "step": step, "num_envs": num_envs, "env_steps_per_second": round(rate, 1)})
                print(f"{task:13s} {step:10s} {num_envs:6d} envs: {rate:14,.0f} env-steps/s", flush=True)
                del env
    result = {"machine": machine(args.device), "warmup_steps": WARMUP_STEPS, "repetitions": args.repetitions,
              "seconds_per_repetition": args.seconds, "results": rows}
    stem = args.out or RESULTS_DIR / f"env_throughput_{kind}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"# Env alone: env-steps/s ({info['device']})", "",
        describe(info) + f"; median of {result['repetitions']} timings of >= {result['seconds_per_repetition']} s after "
        f"{result['warmup_steps']} warm-up steps; fixed actions, no policy.", "",
        "| task | step | envs | env-steps/s |", "|---|---|---:|---:|",
    ]
    lines += [  # results from before the CUDA graph have no step: they ran eagerly
        f"| {row['task']} | {row.get('step', 'eager')} | {row['num_envs']:,} | {row['env_steps_per_second']:,.0f} |"
        for row in result["results"]
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
