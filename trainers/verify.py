"""``seedlock-verify``: prove a run config reproducible, or show exactly where it is not.

It runs ``seedlock-train`` with the same overrides N times (default 2), each in its own process
and run dir under one verify dir, with parameter snapshots on, then compares the runs with
:mod:`determinism.compare` and writes ``verify.json``. Exit code 0: identical; 1: the runs differ;
2: bad input (the message names the key); 3: a run failed.

    seedlock-verify trainer=skrl seed=3 num_envs=256 max_iterations=20
    seedlock-verify --runs 3 device=cuda torch_deterministic=true
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from determinism.compare import Comparison, compare_runs, prune_snapshots
from determinism.trace import first_difference
from trainers.run_config import ConfigError, register, validate

REPORT_FILE = "verify.json"
EXIT_IDENTICAL, EXIT_DIFFERENT, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 0, 1, 2, 3
# Overrides that verify decides itself.
OWNED_KEYS = {"run_dir": "--verify-dir", "fingerprints.snapshots": None, "hydra.run.dir": "--verify-dir",
              "fingerprints.trace": "--explain"}
TENSORS_SHOWN = 20


class VerifyInputError(ValueError):
    """Bad command-line input to seedlock-verify."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seedlock-verify",
        description="Run a seedlock-train config several times in separate processes and compare "
        "the runs' fingerprints, bit for bit.",
        epilog="Overrides are seedlock-train's, e.g. trainer=sb3 seed=3 device=cuda torch_deterministic=true. "
        "Exit codes: 0 identical, 1 different, 2 bad input, 3 a run failed.",
    )
    parser.add_argument("--runs", type=int, default=2, help="how many runs to compare (>= 2, default 2)")
    parser.add_argument("--verify-dir", type=Path, default=None,
                        help="where the runs and verify.json go (default runs/verify/<experiment>/<timestamp>)")
    parser.add_argument("--keep-snapshots", action="store_true",
                        help="keep every iteration's parameter snapshot (default: only those where runs differ)")
    parser.add_argument("--explain", action="store_true",
                        help="trace every env step, module call and gradient, and name the first that differs")
    parser.add_argument("overrides", nargs="*", help="seedlock-train overrides")
    args = parser.parse_args(argv)
    try:
        cfg = check_input(args.runs, args.overrides)
        verify_dir = args.verify_dir or default_verify_dir(cfg)
        refuse_existing(verify_dir)
    except VerifyInputError as error:
        print(f"seedlock-verify: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(verify(args.overrides, args.runs, verify_dir, keep_snapshots=args.keep_snapshots, explain=args.explain))


def check_input(runs: int, overrides: list[str]) -> DictConfig:
    """Compose the run config the runs will use, so bad input fails here, before any run."""
    if runs < 2:
        raise VerifyInputError(f"--runs={runs} is not valid: it takes at least 2 runs to compare.")
    return composed(overrides, "seedlock-verify", OWNED_KEYS)


def composed(overrides: list[str], program: str, owned: dict[str, str | None]) -> DictConfig:
    """The run config of seedlock-train's ``overrides``, validated; bad input, or a key that
    ``program`` sets itself (``owned``: key -> its own option), is a VerifyInputError paragraph."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if override in ("-m", "--multirun"):
            raise VerifyInputError(f"-m/--multirun is not valid here: {program} takes one config at a time.")
        if key in owned:
            instead = f"; use {owned[key]}" if owned[key] else ""
            raise VerifyInputError(f"{override!r} is not valid here: {program} sets {key} itself{instead}.")
    register()
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        validate(cfg)
    except ConfigError as error:
        raise VerifyInputError(str(error)) from None
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise VerifyInputError(_one_paragraph(error)) from None
    return cfg


def _one_paragraph(error: BaseException) -> str:
    """Hydra's/OmegaConf's message and its cause (which names the bad value), on one line,
    without the config search path."""
    parts = [str(error)]
    if error.__cause__ is not None and str(error.__cause__) not in parts[0]:
        parts.append(str(error.__cause__))
    text = " ".join(" ".join(parts).split())
    return text.split(" Config search path:")[0]


def default_verify_dir(cfg: DictConfig) -> Path:
    return Path("runs") / "verify" / str(cfg.experiment) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


def refuse_existing(verify_dir: Path) -> None:
    if verify_dir.exists() and any(verify_dir.iterdir()):
        raise VerifyInputError(
            f"--verify-dir={str(verify_dir)!r} is not empty; seedlock-verify never writes into earlier runs. "
            "Choose another directory or leave --verify-dir unset for a fresh one."
        )


def verify(overrides: list[str], runs: int, verify_dir: Path, keep_snapshots: bool = False, explain: bool = False) -> int:
    """Run, compare, report; returns the exit code. ``explain``: the runs also trace their data
    flow (determinism/trace.py), and a divergence is explained by the first event that differs."""
    verify_dir.mkdir(parents=True, exist_ok=True)
    print(f"seedlock-verify: {runs} runs of [{' '.join(overrides) or 'the default config'}] in {verify_dir}")
    run_dirs = [verify_dir / f"run_{index}" for index in range(runs)]
    seconds = []
    for index, run_dir in enumerate(run_dirs):
        code, duration = train_once([*overrides, *(["fingerprints.trace=true"] if explain else [])], run_dir,
                                    verify_dir / f"run_{index}.log", index, runs)
        seconds.append(round(duration, 2))
        if code != 0:
            log = (verify_dir / f"run_{index}.log").read_text()
            print(log[-4000:], file=sys.stderr, end="")
            print(f"seedlock-verify: run {index} exited with code {code} (log: {verify_dir / f'run_{index}.log'})",
                  file=sys.stderr)
            return EXIT_BAD_INPUT if code == 2 else EXIT_RUN_FAILED
    comparison = compare_runs(run_dirs)
    if not keep_snapshots:
        prune_snapshots(run_dirs, {d.iteration for d in comparison.divergences if d.iteration is not None})
    report = {"overrides": overrides, "verify_dir": str(verify_dir), "run_seconds": seconds, **comparison.to_dict()}
    explained = {d.run: first_difference(run_dirs[0], run_dirs[d.run]) for d in comparison.divergences} if explain else {}
    report["explain"] = {run: asdict(found) if found else None for run, found in explained.items()}
    (verify_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(render(comparison))
    for run, found in explained.items():
        print(f"seedlock-verify: explain: run {run} vs run 0, first difference in data-flow order: "
              + (f"{found.what}, in iteration {found.iteration}." if found else "none in the traces (the difference is after them)."))
    print(f"seedlock-verify: report: {verify_dir / REPORT_FILE}")
    return EXIT_IDENTICAL if comparison.identical else EXIT_DIFFERENT


def train_once(overrides: list[str], run_dir: Path, log_path: Path, index: int, runs: int) -> tuple[int, float]:
    """One ``seedlock-train`` process; its exit code and wall time (process start included)."""
    command = [sys.executable, "-m", "trainers.train", *overrides, f"run_dir={run_dir}", "fingerprints.snapshots=true"]
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    duration = time.perf_counter() - start
    print(f"seedlock-verify: run {index + 1}/{runs} finished in {duration:.1f} s (exit {code})", flush=True)
    return code, duration


def render(comparison: Comparison) -> str:
    """The verdict, for people."""
    lines = []
    if comparison.identical:
        lines.append(
            f"IDENTICAL: {len(comparison.runs)} runs, {comparison.iterations} iterations each, "
            "fingerprints equal bit for bit (parameters, optimizer state, metrics, losses)."
        )
    for divergence in comparison.divergences:
        lines.append(
            f"DIFFERENT: run {divergence.run} differs from run 0 first at iteration {divergence.iteration} "
            f"(env steps {divergence.env_steps:,}); fields that differ: {', '.join(divergence.fields)}."
        )
        if divergence.observation_step is not None:
            lines.append(
                f"  the observations differ first at rollout step {divergence.observation_step} of "
                f"{divergence.rollout_steps} in iteration {divergence.iteration}, the parameters being equal "
                "until then: the env's physics (or the actions fed to it at that step) diverged first, "
                "not the library's update."
            )
        if divergence.lengths[0] != divergence.lengths[1]:
            lines.append(f"  run 0 has {divergence.lengths[0]} iterations, run {divergence.run} has {divergence.lengths[1]}.")
        if divergence.tensors:
            lines.append(f"  parameter tensors that differ there ({len(divergence.tensors)} of {divergence.tensors_compared}), "
                         "largest absolute difference:")
            width = max(len(t.name) for t in divergence.tensors[:TENSORS_SHOWN])
            for tensor in divergence.tensors[:TENSORS_SHOWN]:
                value = f"{tensor.max_abs_diff:.3e}" if tensor.max_abs_diff is not None else tensor.note
                lines.append(f"    {tensor.name:<{width}}  {value}")
            if len(divergence.tensors) > TENSORS_SHOWN:
                lines.append(f"    ... and {len(divergence.tensors) - TENSORS_SHOWN} more (verify.json lists all)")
        elif "parameters_sha256" not in divergence.fields and divergence.fields != ["missing iteration"]:
            lines.append("  the parameters are equal there; the difference is in the fields above.")
    if comparison.manifest_differences:
        lines.append("manifest fields that differ between the runs (these explain divergence):")
        for key, values in comparison.manifest_differences.items():
            lines.append(f"  {key}: {' | '.join(json.dumps(value) for value in values)}")
    elif not comparison.identical:
        lines.append("the manifests agree (seed, flags, versions, devices, threads): the divergence is in the run itself.")
    return "\n".join(f"seedlock-verify: {line}" if not line.startswith("  ") else line for line in lines)


if __name__ == "__main__":
    main()
