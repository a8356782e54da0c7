"""Training throughput: the suite's overhead and the determinism tax, per library.

For each library and task, three variants train the same env with the same agent YAML:

``handwritten``
    the library driven by a minimal script (``bench/baselines/<library>.py``): no seedlock code
    in its loop;
``seedlock``
    ``seedlock-train``'s own ``run_training`` (fingerprints, checkpoints, manifest and all),
    ``torch_deterministic=false``;
``deterministic``
    the same with ``torch_deterministic=true``.

All runs share one process. Per library, one untimed run (imports, caches, the CUDA context)
also measures an iteration's time, from which the number of timed iterations is chosen so the
timed window lasts at least ``--seconds`` (or ``--iterations`` fixes it); then the variants
alternate, in a rotated order each round, for ``--repetitions`` rounds. A run trains
``warm-up + timed + 1`` iterations; its throughput is the env steps of the
timed iterations over the time from the first env step of the first timed iteration to the first
of the iteration after them (CUDA synchronised at those two points), so a run's set-up, its
warm-up iterations and its last checkpoint are outside the window. Per round, the ratios
``handwritten / seedlock`` (the overhead) and ``seedlock / deterministic`` (the determinism tax)
are taken, and their medians reported. Peak CPU RSS (VmHWM, reset before each run) and the GPU's
max allocated memory are recorded per run. Writes ``bench/results/train_throughput_<device>.json``
and ``.md``.

    .venv/bin/python -m bench.train_throughput                       # CPU, cartpole, 1024 envs
    python -m bench.train_throughput --device cuda --tasks cartpole cartpole_rgb
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

import determinism
import tasks
from bench.machine import describe, machine
from trainers.run_config import register

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
TRAINERS = ("rl_games", "rsl_rl", "sb3", "skrl")
VARIANTS = ("handwritten", "seedlock", "deterministic")
# ratio name -> (faster-if-free variant, variant that pays the cost)
RATIOS = {"overhead": ("handwritten", "seedlock"), "determinism_tax": ("seedlock", "deterministic")}
# Tasks with a hand-written baseline; the camera task is measured for the determinism tax only.
BASELINE_TASKS = ("cartpole",)
DEFAULT_NUM_ENVS = {"cpu": 1024, "cuda": 4096}
PROBE_ITERATIONS = 2  # timed iterations of the untimed run that sets a library's timed iterations
MIN_TIMED_ITERATIONS = 2


@dataclass
class RunResult:
    task: str
    trainer: str
    variant: str
    repetition: int  # -1: the untimed warm-up run
    timed_iterations: int
    env_steps_per_second: float
    window_seconds: float  # the timed iterations' wall time
    wall_seconds: float  # the whole run: config, env, library set-up, every iteration
    peak_rss_mb: float | None
    gpu_max_allocated_mb: float | None


def run_config(task: str, trainer: str, device: str, num_envs: int, iterations: int, deterministic: bool,
               run_dir: Path, overrides: list[str]) -> DictConfig:
    """``seedlock-train``'s config for one benchmark run: no progress bar, its own run dir."""
    return compose(config_name="train", overrides=[
        f"task={task}", f"trainer={trainer}", f"device={device}", f"num_envs={num_envs}",
        f"max_iterations={iterations}", f"torch_deterministic={str(deterministic).lower()}",
        "progress=false", f"run_dir={run_dir}", *overrides,
    ])


class StepClock:
    """Wraps an env's ``step`` and notes the time at the first step of every iteration."""

    def __init__(self, env: Any, rollout_steps: int, device: str) -> None:
        self.marks: list[float] = []
        self.rollout_steps, self.num_envs, self.device = rollout_steps, env.num_envs, device
        self.calls = 0
        step = env.step

        def timed_step(actions: torch.Tensor) -> Any:
            if self.calls % self.rollout_steps == 0:
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
                self.marks.append(time.perf_counter())
            self.calls += 1
            return step(actions)

        env.step = timed_step

    def env_steps_per_second(self, warmup: int, timed: int) -> float:
        if len(self.marks) < warmup + timed + 1:
            raise RuntimeError(f"the run made {len(self.marks)} iterations, fewer than {warmup + timed + 1}")
        return timed * self.rollout_steps * self.num_envs / self.window_seconds(warmup, timed)

    def window_seconds(self, warmup: int, timed: int) -> float:
        return self.marks[warmup + timed] - self.marks[warmup]


@contextlib.contextmanager
def clocked_run_envs(rollout_steps: int, device: str) -> Iterator[list[StepClock]]:
    """Clock the env that ``seedlock-train`` builds (``tasks.make_for_run``) for one run."""
    clocks: list[StepClock] = []
    make_for_run = tasks.make_for_run

    def make_and_clock(cfg: DictConfig, seed: int) -> Any:
        env = make_for_run(cfg, seed)
        clocks.append(StepClock(env, rollout_steps, device))
        return env

    tasks.make_for_run = make_and_clock
    try:
        yield clocks
    finally:
        tasks.make_for_run = make_for_run


@dataclass
class Bench:
    device: str
    num_envs: int
    warmup: int
    work_dir: Path
    threads: int | None = None  # torch's CPU threads for every run (determinism.num_threads); None: torch's default
    overrides: list[str] = field(default_factory=list)  # more Hydra overrides for every run
    runs: list[RunResult] = field(default_factory=list)

    def config(self, task: str, trainer: str, deterministic: bool, run_dir: Path, timed: int) -> DictConfig:
        threads = [f"determinism.num_threads={self.threads}"] if self.threads else []
        return run_config(task, trainer, self.device, self.num_envs, self.warmup + timed + 1, deterministic,
                          run_dir, threads + self.overrides)

    def run(self, task: str, trainer: str, variant: str, repetition: int, timed: int) -> RunResult:
        run_dir = self.work_dir / f"{task}_{trainer}_{variant}_{repetition}"
        cfg = self.config(task, trainer, variant == "deterministic", run_dir, timed)
        agent = OmegaConf.to_container(cfg.agent, resolve=True)
        assert isinstance(agent, dict)
        baseline = importlib.import_module(f"bench.baselines.{trainer}")
        rollout_steps = baseline.rollout_steps(agent)
        threads = torch.get_num_threads()
        reset_peak_memory(self.device)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the libraries' per-iteration lines
            if variant == "handwritten":
                clock = self.run_handwritten(cfg, baseline, agent, run_dir, rollout_steps)
            else:
                clock = self.run_seedlock(cfg, rollout_steps)
        wall = time.perf_counter() - start
        result = RunResult(
            task, trainer, variant, repetition, timed, round(clock.env_steps_per_second(self.warmup, timed), 1),
            round(clock.window_seconds(self.warmup, timed), 3), round(wall, 3), peak_rss_mb(), gpu_max_allocated_mb(self.device),
        )
        torch.set_num_threads(threads)  # a library that changed it must not slow the next run
        shutil.rmtree(run_dir, ignore_errors=True)
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        self.runs.append(result)
        return result

    def run_seedlock(self, cfg: DictConfig, rollout_steps: int) -> StepClock:
        from trainers.train import run_training

        with clocked_run_envs(rollout_steps, self.device) as clocks:
            run_training(cfg)
        return clocks[0]

    def run_handwritten(self, cfg: DictConfig, baseline: Any, agent: dict[str, Any], run_dir: Path,
                        rollout_steps: int) -> StepClock:
        # Set-up as seedlock's (so both start from the same seeded state and torch flags); the
        # training itself is the baseline's own code.
        manifest = determinism.apply(cfg)
        env = tasks.make_for_run(cfg, manifest.seed)
        clock = StepClock(env, rollout_steps, self.device)
        run_dir.mkdir(parents=True)
        agent.pop("max_iterations", None)
        baseline.train(env, agent, int(cfg.max_iterations), self.device, run_dir,
                       int(cfg.trainer.checkpoint_interval), manifest.seed)
        return clock


def reset_peak_memory(device: str) -> None:
    """Restart the peak counters: Linux's VmHWM (``clear_refs`` 5) and torch's CUDA allocator."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_rss_mb() -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def gpu_max_allocated_mb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None


def rotated(items: tuple[str, ...], by: int) -> tuple[str, ...]:
    by %= len(items)
    return items[by:] + items[:by]


def summarize(runs: list[RunResult], task: str, trainer: str) -> dict[str, Any]:
    """Medians per variant, and the medians (and quartiles) of the per-round ratios; also the
    ratio of each variant's fastest run, which a shared machine's slow spells (they only ever
    slow a run down) disturb least."""
    timed = [run for run in runs if run.task == task and run.trainer == trainer and run.repetition >= 0]
    by_round: dict[int, dict[str, RunResult]] = {}
    for run in timed:
        by_round.setdefault(run.repetition, {})[run.variant] = run
    summary: dict[str, Any] = {"task": task, "trainer": trainer, "rounds": len(by_round),
                               "timed_iterations": max((run.timed_iterations for run in timed), default=0)}
    for variant in VARIANTS:
        of_variant = [run for run in timed if run.variant == variant]
        if not of_variant:
            continue
        summary[variant] = {
            "env_steps_per_second": round(statistics.median(run.env_steps_per_second for run in of_variant), 1),
            "best_env_steps_per_second": max(run.env_steps_per_second for run in of_variant),
            "window_seconds": round(statistics.median(run.window_seconds for run in of_variant), 3),
            "wall_seconds": round(statistics.median(run.wall_seconds for run in of_variant), 3),
            "peak_rss_mb": _max(run.peak_rss_mb for run in of_variant),
            "gpu_max_allocated_mb": _max(run.gpu_max_allocated_mb for run in of_variant),
        }

    for name, (numerator, denominator) in RATIOS.items():  # 0.02: the denominator 2% slower
        ratios = [
            rounds[numerator].env_steps_per_second / rounds[denominator].env_steps_per_second - 1.0
            for rounds in by_round.values() if numerator in rounds and denominator in rounds
        ]
        summary[name] = round(statistics.median(ratios), 4) if ratios else None
        summary[f"{name}_quartiles"] = quartiles(ratios)
        summary[f"{name}_best_runs"] = (
            round(summary[numerator]["best_env_steps_per_second"] / summary[denominator]["best_env_steps_per_second"] - 1.0, 4)
            if ratios else None
        )
    return summary


def quartiles(values: list[float]) -> list[float] | None:
    if len(values) < 2:
        return None
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return [round(low, 4), round(high, 4)]


def _max(values: Iterator[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


CUDA_NOTE = (" CUBLAS_WORKSPACE_CONFIG (which torch_deterministic=true needs before CUDA starts) is set for "
             "the whole process, so every variant runs with it.")


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        f"# Training throughput: suite overhead and determinism tax ({result['machine']['device']})", "",
        describe(result["machine"]) + ".", "",
        f"{settings['num_envs']:,} envs; each run trains {settings['warmup_iterations']} warm-up iterations, "
        "then the timed ones (per library, enough for a timed window of at least "
        f"{settings['timed_seconds']} s), then one more; {_rounds(result)}, the variants "
        "alternating in a rotated order within one process, after one untimed run of each. env-steps/s: median "
        "over rounds; overhead = hand-written / seedlock - 1 and tax = seedlock / deterministic - 1: the "
        "median of the per-round ratios, their quartiles, and the ratio of each variant's fastest run (on a "
        "shared machine, slow spells only ever slow a run down, so this one is disturbed least). Peak RSS: the process's VmHWM during a run (the libraries' imports "
        "included); GPU: torch's max allocated." + CUDA_NOTE * (result["machine"]["device"] != "cpu")
        + (f" Overrides of every run: `{' '.join(settings['overrides'])}`." if settings.get("overrides") else ""), "",
        *([result["note"], ""] if result.get("note") else []),  # what a re-summarized or merged file says about itself
        "| task | library | rounds | timed iterations | hand-written steps/s | seedlock steps/s | overhead (quartiles; best runs) "
        "| deterministic steps/s | determinism tax (quartiles; best runs) | peak RSS MB (hand / seedlock / det) "
        "| GPU max alloc MB (hand / seedlock / det) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in result["summary"]:
        cells = {variant: row.get(variant, {}) for variant in VARIANTS}
        lines.append(
            f"| {row['task']} | {row['trainer']} | {row['rounds']} | {row['timed_iterations']} | {_rate(cells['handwritten'])} | "
            f"{_rate(cells['seedlock'])} | {_ratio(row, 'overhead')} | {_rate(cells['deterministic'])} | "
            f"{_ratio(row, 'determinism_tax')} | {_triple(cells, 'peak_rss_mb')} | {_triple(cells, 'gpu_max_allocated_mb')} |"
        )
    return "\n".join(lines) + "\n"


def _rounds(result: dict[str, Any]) -> str:
    """'7 rounds', or where libraries were run apart with different counts (a results file
    merged from two runs), a pointer to the table's column."""
    counts = {row["rounds"] for row in result["summary"]} or {result["settings"]["repetitions"]}
    return f"{counts.pop()} rounds" if len(counts) == 1 else "the rounds in the table (per library)"


def _rate(cell: dict[str, Any]) -> str:
    return f"{cell['env_steps_per_second']:,.0f}" if cell else "—"


def _ratio(row: dict[str, Any], name: str) -> str:
    """'+2.1% (-1.0…+4.0; +1.5)': the median per-round ratio, its quartiles, the best runs' ratio."""
    if row.get(name) is None:
        return "—"
    spread = row.get(f"{name}_quartiles")
    inner = [f"{_percent(spread[0])}…{_percent(spread[1])}"] if spread else []
    inner.append(_percent(row.get(f"{name}_best_runs")))
    return f"{_percent(row[name])} ({'; '.join(inner)})"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%"


def _triple(cells: dict[str, dict[str, Any]], key: str) -> str:
    return " / ".join("—" if not cells[v] or cells[v].get(key) is None else f"{cells[v][key]:,.0f}" for v in VARIANTS)


def timed_iterations(probe: RunResult, seconds: float) -> int:
    """Enough timed iterations for a window of ``seconds`` at the probe run's pace (at least 2)."""
    per_iteration = probe.window_seconds / probe.timed_iterations
    return max(MIN_TIMED_ITERATIONS, math.ceil(seconds / per_iteration))


def resummarize(path: Path) -> dict[str, Any]:
    """An earlier result's summary and table, recomputed from its runs (after a change to ``summarize``)."""
    result = json.loads(path.read_text())
    runs = [RunResult(**run) for run in result["runs"]]
    pairs = dict.fromkeys((run.task, run.trainer) for run in runs)
    result["summary"] = [summarize(runs, task, trainer) for task, trainer in pairs]
    write(result, path.with_suffix(""))
    return result


def write(result: dict[str, Any], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.train_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["cartpole"], choices=sorted(tasks.EMBEDDED_TASKS))
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    parser.add_argument("--num-envs", type=int, help="default: 1024 on the CPU, 4096 on CUDA")
    parser.add_argument("--warmup-iterations", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="the least length of a run's timed window: sets each library's timed iterations")
    parser.add_argument("--iterations", type=int, help="timed iterations of every run, instead of --seconds")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--out", type=Path, help="results file stem (default bench/results/train_throughput_<cpu|cuda>)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of every run (default: torch's own)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides for every run, e.g. renderer.embedded.channels_last=true")
    parser.add_argument("--resummarize", type=Path, metavar="JSON",
                        help="recompute the summary and table of an earlier results file from its runs, and stop")
    args = parser.parse_args(argv)
    if args.resummarize:
        return resummarize(args.resummarize)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    if kind == "cuda":
        # Before CUDA starts, for the deterministic runs; all runs share it (CUDA_NOTE).
        determinism.reserve_cublas_workspace()
    register()
    bench_dir = Path(tempfile.mkdtemp(prefix="seedlock-bench-"))
    bench = Bench(args.device, args.num_envs or DEFAULT_NUM_ENVS[kind], args.warmup_iterations, bench_dir, args.threads,
                  args.overrides)
    stem = args.out or RESULTS_DIR / f"train_throughput_{kind}"
    result: dict[str, Any] = {
        "machine": machine(args.device),
        "settings": {"num_envs": bench.num_envs, "warmup_iterations": args.warmup_iterations,
                     "timed_seconds": None if args.iterations else args.seconds, "threads": args.threads, "overrides": args.overrides, "repetitions": args.repetitions},
        "summary": [], "runs": [],
    }
    if args.threads:
        result["machine"]["cpu_threads"] = args.threads
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            for task in args.tasks:
                variants = VARIANTS if task in BASELINE_TASKS else VARIANTS[1:]
                for trainer in args.trainers:
                    # untimed, each variant once: imports, caches, the CUDA context, first-use kernels
                    probe = bench.run(task, trainer, "seedlock", -1, timed=PROBE_ITERATIONS)
                    for variant in variants:
                        if variant != "seedlock":
                            bench.run(task, trainer, variant, -1, timed=1)
                    timed = args.iterations or timed_iterations(probe, args.seconds)
                    for repetition in range(args.repetitions):
                        for variant in rotated(variants, repetition):
                            run = bench.run(task, trainer, variant, repetition, timed)
                            print(f"{task} {trainer:8s} {variant:13s} round {repetition}: "
                                  f"{run.env_steps_per_second:12,.0f} env-steps/s, {run.wall_seconds:6.1f} s", flush=True)
                    result["summary"].append(summarize(bench.runs, task, trainer))
                    result["runs"] = [asdict(run) for run in bench.runs]
                    write(result, stem)  # after every library, so a run cut short keeps what it measured
                    print(json.dumps(result["summary"][-1]), flush=True)
    finally:
        shutil.rmtree(bench_dir, ignore_errors=True)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
