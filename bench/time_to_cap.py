"""Time to the episode cap: how long each library's default CartPole run takes to balance.

For every trainer it runs ``seedlock-train trainer=<name>`` (the default YAML, its own process,
one run at a time so the numbers do not share the CPU), follows ``fingerprints.jsonl`` as the run
appends to it, and notes the first iteration whose mean episode length is at the task's cap and
the wall time at which that line appeared, then the run's total. Results go to stdout as a
Markdown table and to ``bench/results/time_to_cap.json``.

``--mean-return G`` times the first iteration whose mean return is at least G instead of the cap,
for tasks whose episodes do not end at a cap (Isaac Lab's Cartpole-Direct); ``--results`` names
the JSON file.

    .venv/bin/python -m bench.time_to_cap                      # all four libraries
    .venv/bin/python -m bench.time_to_cap sb3 --override device=cuda
    .venv-isaaclab/bin/python -m bench.time_to_cap --mean-return 2 --results bench/results/time_to_return_isaaclab_cpu.json \
        --override task=isaaclab/Isaac-Cartpole-Direct --override task.asset_root=<dir> --override device=cpu \
        --override num_envs=512 --override max_iterations=80
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TRAINERS = sorted(path.stem for path in (ROOT / "conf" / "trainer").glob("*.yaml"))
SEEDLOCK_TRAIN = [sys.executable, "-m", "trainers.train"]
RESULTS = ROOT / "bench" / "results" / "time_to_cap.json"
POLL_S = 0.05


@dataclass
class TimeToCap:
    trainer: str
    cap: int  # the goal: the episode-length cap, or 0 when the goal is goal_return
    goal_return: float | None
    iterations: int
    first_at_cap: int | None  # 0-based iteration
    env_steps_to_cap: int | None
    seconds_to_cap: float | None
    seconds_total: float
    final_mean_episode_length: float | None


def measure(trainer: str, overrides: list[str], work_dir: Path, goal_return: float | None = None) -> TimeToCap:
    run_dir = work_dir / trainer
    fingerprints = run_dir / "fingerprints.jsonl"
    command = [*SEEDLOCK_TRAIN, f"trainer={trainer}", f"run_dir={run_dir}", *overrides]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"{trainer}.log"
    log = log_path.open("w")
    start = time.perf_counter()
    # Output to a file, not a pipe: a pipe nobody reads fills up and stalls the run.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    lines: list[dict] = []
    first_at_cap: tuple[int, float] | None = None
    cap = None if goal_return is not None else _cap(run_dir)
    while True:
        finished = process.poll() is not None
        lines += _new_lines(fingerprints, len(lines))
        cap = cap if goal_return is not None else cap or _cap(run_dir)
        if first_at_cap is None and (cap or goal_return is not None):
            for line in lines:
                if _reached(line, cap, goal_return):
                    first_at_cap = (line["iteration"], time.perf_counter() - start)
                    break
        if finished:
            break
        time.sleep(POLL_S)
    total = time.perf_counter() - start
    log.close()
    output = log_path.read_text()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    at_cap = next((line for line in lines if first_at_cap and line["iteration"] == first_at_cap[0]), None)
    return TimeToCap(
        trainer=trainer,
        cap=cap or 0,
        goal_return=goal_return,
        iterations=len(lines),
        first_at_cap=first_at_cap[0] if first_at_cap else None,
        env_steps_to_cap=at_cap["env_steps"] if at_cap else None,
        seconds_to_cap=round(first_at_cap[1], 1) if first_at_cap else None,
        seconds_total=round(total, 1),
        final_mean_episode_length=lines[-1]["mean_episode_length"] if lines else None,
    )


def _reached(line: dict, cap: int | None, goal_return: float | None) -> bool:
    if goal_return is not None:
        return line["mean_return"] is not None and line["mean_return"] >= goal_return
    return line["mean_episode_length"] is not None and cap is not None and line["mean_episode_length"] >= cap


def _new_lines(path: Path, already: int) -> list[dict]:
    if not path.exists():
        return []
    complete = path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in complete[already:] if line.endswith("\n")]


def _cap(run_dir: Path) -> int | None:
    """The task's episode-length cap, from the resolved config the run wrote."""
    config = run_dir / "config.yaml"
    if not config.exists():
        return None
    from omegaconf import OmegaConf

    from tasks.cartpole import CartpoleConfig

    resolved = OmegaConf.load(config)
    if resolved.task.name != "cartpole":
        raise SystemExit(f"time_to_cap measures the cartpole task, not task={resolved.task.name}")
    return CartpoleConfig(**OmegaConf.to_container(resolved.task.env)).max_episode_length


def table(results: list[TimeToCap]) -> str:
    goal = f"mean return {results[0].goal_return:g}" if results and results[0].goal_return is not None else "the cap"
    rows = [
        f"| library | iterations to {goal} | env steps to {goal} | wall time to {goal} | whole run |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        reached = r.first_at_cap is not None
        rows.append(
            f"| {r.trainer} | {r.first_at_cap + 1 if reached else 'not reached'} of {r.iterations} | "
            f"{f'{r.env_steps_to_cap:,}' if reached else '—'} | "
            f"{f'{r.seconds_to_cap:.0f} s' if reached else '—'} | {r.seconds_total:.0f} s |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trainers", nargs="*", default=TRAINERS, help=f"trainer names (default: {' '.join(TRAINERS)})")
    parser.add_argument("--override", action="append", default=[], help="a seedlock-train override for every run")
    parser.add_argument("--mean-return", type=float, default=None, help="time to this mean return, not to the cap")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"the JSON file (default: {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    results_file = args.results.resolve()
    trainers = [name.removeprefix("trainer=") for name in args.trainers]
    with tempfile.TemporaryDirectory(prefix="seedlock-bench-") as work_dir:
        results = []
        for trainer in trainers:
            results.append(measure(trainer, args.override, Path(work_dir), args.mean_return))
            print(f"{trainer}: {asdict(results[-1])}", flush=True)
    results_file.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cpus": _cpu_count(), "torch": torch.__version__}
    measured = {r.trainer: {**asdict(r), "date": time.strftime("%Y-%m-%d"), "machine": machine,
                            "overrides": args.override} for r in results}
    # Keep earlier measurements of the trainers not measured this time.
    earlier = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    merged = [entry for entry in earlier if entry["trainer"] not in measured] + list(measured.values())
    merged.sort(key=lambda entry: entry["trainer"])
    results_file.write_text(json.dumps({"results": merged}, indent=2) + "\n")
    print(table([TimeToCap(**{"goal_return": None, **{k: v for k, v in entry.items() if k in TimeToCap.__dataclass_fields__}})
                 for entry in merged]))
    print(f"written: {results_file}")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
