"""Training determinism of a task per library and setting: two seedlock-train runs, compared.

For each (library, overrides) pair it runs ``seedlock-train`` twice in separate processes (at the
same time with ``--parallel``: then the env-steps/s are of two runs sharing the device), then
compares the fingerprints as seedlock-verify does: identical, or the first divergent iteration,
the rollout step whose observations first differ, and the fields that differ. The env-steps/s is
each run's own (``summary.json``: training only, after the task is built). A run refused at start
(``determinism=strict`` on physics that cannot be locked) is recorded with its message.

    python -m bench.train_determinism --trainers rsl_rl skrl --common task=isaaclab/Isaac-Cartpole-Direct \\
        device=cuda num_envs=4096 max_iterations=3 --variant default= \\
        --variant torch_deterministic=torch_deterministic=true --out bench/results/x.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from determinism.compare import compare_runs

ROOT = Path(__file__).resolve().parent.parent


def train(overrides: list[str], run_dir: Path, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "trainers.train", *overrides, f"run_dir={run_dir}", "progress=false"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        # The last line is the error (or seedlock's refusal); the tail says where a library failed.
        return {"exit_code": done.returncode, "message": (lines[-1] if lines else done.stdout[-500:])[-1500:],
                "log_tail": "\n".join(lines[-25:])[-4000:]}
    summary = json.loads((run_dir / "summary.json").read_text())
    physics = json.loads((run_dir / "manifest.json").read_text()).get("physics", {})
    return {"exit_code": 0, "env_steps_per_s": summary["env_steps_per_second"], "physics_mode": physics.get("mode"),
            "solver": physics.get("solver")}


def pair(trainer: str, variant: str, overrides: list[str], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    dirs = [work / f"{trainer}-{variant}-{name}" for name in ("a", "b")]
    full = [f"trainer={trainer}", *args.common, *overrides]
    if args.parallel:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda d: train(full, d, args.timeout), dirs))
    else:
        runs = [train(full, d, args.timeout) for d in dirs]
    result: dict[str, Any] = {"trainer": trainer, "variant": variant, "overrides": full}
    if any(run["exit_code"] for run in runs):
        result.update(outcome="refused" if all(run["exit_code"] == 2 for run in runs) else "failed",
                      message=next(run["message"] for run in runs if run["exit_code"]))
        if result["outcome"] == "failed":
            result["log_tail"] = next(run["log_tail"] for run in runs if run["exit_code"])
        return result
    comparison = compare_runs(dirs)
    result.update(
        outcome="identical" if comparison.identical else "differ",
        iterations=comparison.iterations,
        env_steps_per_s=[round(run["env_steps_per_s"]) for run in runs],
        physics_mode=runs[0]["physics_mode"], solver=runs[0]["solver"],
    )
    if comparison.divergences:
        divergence = comparison.divergences[0]
        result.update(first_divergent_iteration=divergence.iteration, observation_step=divergence.observation_step,
                      fields=divergence.fields)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=["rl_games", "rsl_rl", "sb3", "skrl"])
    parser.add_argument("--common", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=OVERRIDE[,OVERRIDE...]: one setting to compare (repeatable)")
    parser.add_argument("--parallel", action="store_true", help="run the two runs of a pair at the same time")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    variants = {}
    for item in args.variant or ["default="]:
        name, _, overrides = item.partition("=")
        variants[name] = [value for value in overrides.split(",") if value]
    results = []
    with tempfile.TemporaryDirectory(prefix="seedlock-train-determinism-") as work:
        for trainer in args.trainers:
            for name, overrides in variants.items():
                results.append(pair(trainer, name, overrides, Path(work), args))
                print(json.dumps(results[-1]), flush=True)
                args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "common": args.common,
                                                "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
