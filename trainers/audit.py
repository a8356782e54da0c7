"""``seedlock-audit``: what in this run config could make two runs differ? One short run, watched.

    seedlock-audit trainer=skrl task=cartpole_rgb device=cuda
    seedlock-audit --iterations 1 --audit-dir runs/audit/ant task=isaaclab/Isaac-Ant-Direct device=cuda

It composes the config seedlock-train would and reads the settings that config sets (TF32, cuDNN,
threads, ``CUBLAS_WORKSPACE_CONFIG``). Then it trains ``--iterations`` iterations (default 2) in
this process, in ``<audit dir>/run``, with PyTorch's deterministic checks in warn-only mode, and
lists every op those checks flag (with the caller that ran it and how often per iteration), every
op that differs under torch's defaults and that ``torch_deterministic=true`` replaces (with what;
``python -m bench.op_cost <audit.json>`` times both), every
RNG seeded from the OS's entropy instead of seedlock's seeding (with its caller), and, where the
task runs on NVIDIA warp (Isaac Lab 3.x), the loaded kernels that accumulate with atomics and
their module's deterministic mode. It writes ``<audit dir>/audit.json`` and prints a table.
Exit code 0: nothing found that makes runs differ; 1: something does (listed); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

import determinism
from determinism.audit import (
    Finding, Probes, lockable_ops, nondeterministic_ops, reserve_cublas_for_audit, settings_facts, settings_that_break,
    unseeded_rngs, warp_atomics,
)
from determinism.torch_flags import DEFAULT_CUBLAS_WORKSPACE_CONFIG
from trainers.train import USER_ERRORS, run_training
from trainers.verify import VerifyInputError, composed

EXIT_CLEAN, EXIT_FOUND, EXIT_BAD_INPUT = 0, 1, 2
REPORT_FILE = "audit.json"
OWNED_KEYS = {"run_dir": "--audit-dir", "hydra.run.dir": "--audit-dir", "max_iterations": "--iterations",
              "checkpoint": None, "determinism.warn_only": None}
UNWATCHED_RNGS = "RNGs made as numpy.random.RandomState() or SeedSequence() directly, and torch.Generator.seed()"
CPU_NOTE = (
    "On the CPU PyTorch's kernels are deterministic at a fixed thread count (this run: {threads} "
    "threads; pin it with determinism.num_threads=N, since another count sums in another order), "
    "except the few listed above when the run makes them. "
    "PyTorch flags few CPU ops, so the op probe checks little here; not checked on the CPU: CUDA "
    "kernels, cuDNN's algorithm choice and cuBLAS workspaces (run the audit with device=cuda on a GPU)."
)


@dataclass
class Audit:
    overrides: list[str]
    device: str
    iterations: int
    settings: dict[str, Any]  # as the config sets them
    ops: list[Finding] = field(default_factory=list)
    lockable_ops: list[Finding] = field(default_factory=list)  # differ under torch's defaults; torch_deterministic=true replaces them
    rngs: list[Finding] = field(default_factory=list)
    warp_kernels: list[Finding] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)  # why two runs would differ; empty: nothing found
    not_checked: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seedlock-audit", description=__doc__.split("\n\n")[0],
        epilog="Overrides are seedlock-train's. Exit codes: 0 nothing found, 1 something makes runs differ, 2 bad input.",
    )
    parser.add_argument("--iterations", type=int, default=2, help="iterations of the watched run (1 or 2; default 2)")
    parser.add_argument("--audit-dir", type=Path, default=None,
                        help="where the run and audit.json go (default runs/audit/<experiment>/<timestamp>)")
    parser.add_argument("overrides", nargs="*", help="seedlock-train overrides")
    args = parser.parse_args(argv)
    try:
        if args.iterations not in (1, 2):
            raise VerifyInputError(f"--iterations={args.iterations} is not valid: the audit watches 1 or 2 iterations.")
        cfg = composed(args.overrides, "seedlock-audit", OWNED_KEYS)
        audit_dir = args.audit_dir or Path("runs") / "audit" / str(cfg.experiment) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
        if audit_dir.exists() and any(audit_dir.iterdir()):
            raise VerifyInputError(f"--audit-dir={str(audit_dir)!r} is not empty; seedlock-audit never writes into earlier runs.")
        report = audit(cfg, args.overrides, args.iterations, audit_dir)
    except (VerifyInputError, *USER_ERRORS) as error:
        print(f"seedlock-audit: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(render(report))
    print(f"seedlock-audit: report: {audit_dir / REPORT_FILE}")
    sys.exit(EXIT_FOUND if report.breaks else EXIT_CLEAN)


def audit(cfg: DictConfig, overrides: list[str], iterations: int, audit_dir: Path) -> Audit:
    """Read the config's settings, then run it ``iterations`` iterations under the probes."""
    # The watched run locks torch, which needs cuBLAS's workspace setting before CUDA starts (and
    # applying the config may start it): set it now, and report the value the config itself leaves.
    config_cublas = reserve_cublas_for_audit(str(cfg.determinism.get("cublas_workspace_config", DEFAULT_CUBLAS_WORKSPACE_CONFIG)))
    determinism.apply(cfg)  # the settings as this config sets them, before anything runs
    settings = settings_facts()
    if not cfg.torch_deterministic:
        settings["CUBLAS_WORKSPACE_CONFIG"] = config_cublas
    device = str(cfg.device)
    cfg.max_iterations = iterations
    cfg.run_dir = str(audit_dir / "run")
    cfg.progress = "false"
    # The watched run: PyTorch's deterministic checks on, warning instead of raising, so every
    # flagged op is seen once per call (determinism.apply sets them from these two keys).
    cfg.torch_deterministic = True
    cfg.determinism.warn_only = True
    probes = Probes()
    with nondeterministic_ops(probes), unseeded_rngs(probes), lockable_ops(probes):
        run_training(cfg)
    if torch.cuda.is_initialized():
        settings["device"] = torch.cuda.get_device_name(0)
    report = Audit(overrides, device, iterations, settings, probes.op_findings(iterations),
                   probes.lockable_findings(iterations), probes.rng_findings())
    report.not_checked.append(UNWATCHED_RNGS)
    report.warp_kernels, warp_unread = warp_atomics()
    if warp_unread:
        report.not_checked.append(warp_unread)
    report.breaks = reasons(report, device)
    if not device.startswith("cuda"):
        report.not_checked.append(CPU_NOTE.format(threads=settings["num_threads"]))
    (audit_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def reasons(report: Audit, device: str) -> list[str]:
    """What makes two runs of this config differ, from the findings and settings."""
    found = [f"op {op.what} at {op.location} ({op.detail.split(';')[0]})" for op in report.ops]
    for op in report.lockable_ops:
        convolution = bool(op.module)
        unlocked = (not report.settings["cudnn_deterministic"] or report.settings["cudnn_benchmark"]) if convolution \
            else not report.settings["deterministic_algorithms"]
        if unlocked:
            found.append(f"op {op.what}{f' in {op.module}' if convolution else ''} at {op.location} "
                         f"({op.detail.split(';')[0]}; torch_deterministic=true replaces it)")
    found += [f"{rng.what} at {rng.location} ({rng.count}x)" for rng in report.rngs]
    found += settings_that_break(report.settings, device)
    if device.startswith("cuda"):
        found += [f"warp kernel {kernel.what} ({kernel.detail})" for kernel in report.warp_kernels
                  if "NOT_GUARANTEED" in kernel.detail or "None" in kernel.detail]
    return found


def render(report: Audit) -> str:
    lines = [f"seedlock-audit: {report.iterations} iteration(s) of [{' '.join(report.overrides) or 'the default config'}] on {report.device}"]
    lines.append("settings that change results, as this config sets them:")
    lines += [f"  {key:<24} {value}" for key, value in report.settings.items()]
    for title, findings in (("ops PyTorch flags as non-deterministic (no deterministic version on this device)", report.ops),
                            ("ops that differ under torch's defaults (torch_deterministic=true replaces them)", report.lockable_ops),
                            ("RNGs seeded from the OS's entropy, outside seedlock's seeding (made; draws not tracked)", report.rngs),
                            ("warp kernels that accumulate with atomics (in the modules the run loaded)", report.warp_kernels)):
        lines.append(f"{title}: {len(findings) or 'none'}")
        for finding in findings:
            lines.append(f"  {finding.what}{f' in {finding.module}' if finding.module else ''}  at {finding.location}  "
                         f"x{finding.count}  {finding.detail}".rstrip())
            if finding.replacement:
                lines.append(f"      torch_deterministic=true: {finding.replacement}")
    lines += [f"not checked: {note}" for note in report.not_checked]
    if report.breaks:
        lines.append(f"FOUND {len(report.breaks)} thing(s) that make two runs differ:")
        lines += [f"  - {reason}" for reason in report.breaks]
    else:
        lines.append("CLEAN: nothing found that makes two runs of this config differ.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
