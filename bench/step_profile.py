"""Where a training iteration's GPU launches and host syncs come from, per library: the rollout
against the update, and seedlock's share against the library's.

One ``seedlock-train`` run in this process, watched by a dispatch mode that sees every aten op
(below autograd, so the backward's too) and names who called it: the first frame outside torch,
as seedlock (``trainers/``, ``tasks/``, ``determinism/``), the library (``rsl_rl``, ``rl_games``,
``skrl``, ``stable_baselines3``, ``isaaclab``...) or other code. Env steps and iteration ends are
seen where every task and adapter pass (``ObservationDigests.note`` each step, ``.drain`` at each
iteration's fingerprint), so an iteration splits into its rollout (up to its last env step) and
its update (after it). Counted per op:

- **kernel ops**: ops that run a kernel on the device (views and metadata ops excluded); on CUDA
  about one launch each (an op may launch more; a CUDA-graph replay counts once);
- **host syncs**: ops that make the host wait for the device on CUDA: reading a value
  (``.item()``, ``float(t)``, ``bool(t)``: ``_local_scalar_dense``/``is_nonzero``), ops whose
  output size depends on the data (``nonzero``, ``masked_select``, ``unique``), and device-to-host
  copies (``.cpu()``, ``.numpy()``, ``.tolist()``; only on CUDA, where they exist). On CUDA a
  value read counts only when a CUDA tensor is read (Adam's step counters live on the host).

A sync before an iteration's first env step is counted as "between" (the update and the next
rollout), not as rollout: it is a library's once-per-iteration logging (rl_games' ``write_stats``
reads its loss means there), never a per-step one: no library's policy inference reads a value.

seedlock's checkpoint (iteration 0, every ``trainer.checkpoint_interval`` and the last) copies the
models to the host: its ops are counted apart, not as rollout or update.

The first iteration (warm-up: allocations, CUDA-graph capture, lazy init) is left out of the
per-iteration figures. A CUDA-graph replay (seedlock's env step on CUDA) is one kernel op.

    python -m bench.step_profile --trainer rsl_rl --device cuda --num-envs 4096 --iterations 3
    python -m bench.step_profile --all --device cuda --out bench/results/step_profile_cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import initialize_config_module
from torch.utils._python_dispatch import TorchDispatchMode

import determinism
from bench.machine import describe, machine
from bench.train_throughput import run_config
from determinism.fingerprint import ObservationDigests
from trainers.run_config import register

ROOT = Path(__file__).resolve().parent.parent
TRAINERS = ("rl_games", "rsl_rl", "sb3", "skrl")
SEEDLOCK_DIRS = tuple(str(ROOT / name) + os.sep for name in ("trainers", "tasks", "determinism"))
SKIPPED = (os.path.dirname(torch.__file__) + os.sep, f"{os.sep}bench{os.sep}step_profile.py", f"{os.sep}contextlib.py")
# Ops that only describe memory (no kernel runs).
NO_KERNEL = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "expand", "slice", "select", "t", "transpose", "unsqueeze",
    "squeeze", "permute", "as_strided", "detach", "alias", "split", "split_with_sizes", "unbind", "chunk", "lift_fresh",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "unfold", "narrow", "diagonal", "view_as",
    "expand_as", "resize_", "set_", "_to_copy_meta", "lift_fresh_copy", "numpy_T", "sym_size", "sym_stride", "sym_numel",
    "is_same_size", "_has_compatible_shallow_copy_type",
}
# Ops that make the host wait for the device on CUDA (a value read, or an output sized by the data).
SYNCING = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
           "unique_consecutive", "equal", "allclose", "repeat_interleave"}


CHECKPOINT = "seedlock:checkpoint"  # the owner of ops inside seedlock's save_checkpoint


def owner() -> tuple[str, str]:
    """Who called the op (``seedlock:<file>``, the library's package, or ``other``) and where
    (``path:line``, the path from the package)."""
    frame = sys._getframe(2)  # frames, not traceback.extract_stack: no source lines read per op
    while frame is not None:
        filename = frame.f_code.co_filename
        if any(part in filename for part in SKIPPED) or filename.startswith("<"):
            frame = frame.f_back  # torch, this bench, and generated code (skrl's model instantiators exec theirs)
            continue
        if filename.startswith(SEEDLOCK_DIRS):
            path = os.path.relpath(filename, ROOT)
            if frame.f_code.co_name == "save_checkpoint":  # once per checkpoint, not per step
                return CHECKPOINT, f"{path}:{frame.f_lineno}"
            return f"seedlock:{path}", f"{path}:{frame.f_lineno}"
        for marker in ("site-packages", "dist-packages", f"{os.sep}site{os.sep}"):
            if marker in filename:
                path = filename.split(marker, 1)[1].strip(os.sep)
                return path.split(os.sep)[0], f"{path}:{frame.f_lineno}"
        return "other", f"{filename}:{frame.f_lineno}"
    return "other", "unknown"


@dataclass
class Iteration:
    env_steps: int = 0
    ops: list[tuple[str, tuple[str, str], bool, int]] = field(default_factory=list)  # (op, (owner, where), syncing, env steps so far)


class OpCounter(TorchDispatchMode):
    """Every kernel op and host sync of the run, with its owner and the env step it came after."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.iterations: list[Iteration] = [Iteration()]
        # On CUDA a value read syncs only when the value is on the device: Adam's step counts live
        # on the host. On the CPU every read is counted, as the sync it would be on CUDA.
        self.on_cuda = device.startswith("cuda")

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        name = func._schema.name.split("::")[-1]
        out = func(*args, **(kwargs or {}))
        to_host = name in ("_to_copy", "copy_") and _device_to_host(func, args, kwargs or {}, out)
        if name not in NO_KERNEL:
            current = self.iterations[-1]
            syncing = name in SYNCING and (not self.on_cuda or any(
                isinstance(arg, torch.Tensor) and arg.device.type == "cuda" for arg in args))
            current.ops.append((name, owner(), syncing or to_host, current.env_steps))
        return out


def _device_to_host(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> bool:
    source = args[1] if func._schema.name.endswith("copy_") and len(args) > 1 else args[0] if args else None
    target = args[0] if func._schema.name.endswith("copy_") else out
    return (isinstance(source, torch.Tensor) and isinstance(target, torch.Tensor)
            and source.device.type == "cuda" and target.device.type == "cpu")


def profile_run(trainer: str, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """One run of ``args.iterations`` iterations, counted; the per-iteration means after the first."""
    from trainers.train import run_training

    cfg = run_config(args.task, trainer, args.device, args.num_envs, args.iterations, args.torch_deterministic,
                     work_dir / trainer, args.overrides)
    counter = OpCounter(args.device)
    note, drain = ObservationDigests.note, ObservationDigests.drain

    def counted_note(self: ObservationDigests, *a: Any, **k: Any) -> Any:
        counter.iterations[-1].env_steps += 1
        return note(self, *a, **k)

    def counted_drain(self: ObservationDigests, *a: Any, **k: Any) -> Any:
        result = drain(self, *a, **k)
        counter.iterations.append(Iteration())
        return result

    replay = torch.cuda.CUDAGraph.replay

    def counted_replay(self: torch.cuda.CUDAGraph) -> None:
        current = counter.iterations[-1]
        current.ops.append(("cuda_graph_replay", owner(), False, current.env_steps))
        replay(self)

    ObservationDigests.note, ObservationDigests.drain = counted_note, counted_drain  # type: ignore[method-assign]
    torch.cuda.CUDAGraph.replay = counted_replay  # type: ignore[method-assign]
    try:
        with counter:
            run_training(cfg)
    finally:
        ObservationDigests.note, ObservationDigests.drain = note, drain  # type: ignore[method-assign]
        torch.cuda.CUDAGraph.replay = replay  # type: ignore[method-assign]
    return summarize(trainer, [it for it in counter.iterations if it.env_steps][1:])


def summarize(trainer: str, iterations: list[Iteration]) -> dict[str, Any]:
    """Per iteration (mean over the counted ones): rollout and update, kernel ops and syncs by owner."""
    if not iterations:
        raise SystemExit(f"bench.step_profile: {trainer}: no iteration after the first was seen; use --iterations 2 or more")
    counts: Counter = Counter()
    for iteration in iterations:
        for op, (who, where), syncing, steps in iteration.ops:
            phase = ("checkpoint" if who == CHECKPOINT else "between" if syncing and steps == 0
                     else "rollout" if steps < iteration.env_steps else "update")
            counts[(phase, "syncs" if syncing else "kernel_ops", "seedlock" if who.startswith("seedlock") else who)] += 1
            if syncing:
                counts[("sync_ops", f"{phase}: {op}", where)] += 1
    n = len(iterations)
    env_steps = iterations[0].env_steps
    table: dict[str, Any] = {"trainer": trainer, "iterations_counted": n, "env_steps_per_iteration": env_steps}
    for phase in ("rollout", "update", "between", "checkpoint"):
        for kind in ("kernel_ops", "syncs"):
            by_owner = {who: count / n for (p, k, who), count in counts.items() if p == phase and k == kind}
            table[f"{phase}_{kind}"] = dict(sorted(by_owner.items(), key=lambda item: -item[1]))
    table["rollout_per_env_step"] = {kind: sum(table[f"rollout_{kind}"].values()) / max(env_steps, 1) for kind in ("kernel_ops", "syncs")}
    table["seedlock_per_env_step"] = {kind: table[f"rollout_{kind}"].get("seedlock", 0.0) / max(env_steps, 1)
                                      for kind in ("kernel_ops", "syncs")}
    table["sync_ops"] = [{"op": op, "where": where, "per_iteration": count / n}
                         for (tag, op, where), count in counts.most_common() if tag == "sync_ops"]
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Launches and host syncs per training iteration ({result['device']})",
        "",
        describe(result["machine"]),
        "",
        f"`python -m bench.step_profile {' '.join(result['argv'])}`: {result['task']}, {result['num_envs']} envs, "
        f"torch_deterministic={str(result['torch_deterministic']).lower()}; per iteration, the mean of the iterations after the first.",
        "Kernel ops: aten ops that run a device kernel (about one CUDA launch each); syncs: ops that make the host wait for the device on CUDA.",
        *(["On the CPU there are no device-to-host copies to count (SB3's per-step numpy copies, RSL-RL's logger's `.cpu()`), and "
           "seedlock's env step runs eagerly (on CUDA it is one CUDA-graph replay)."] if result["device"] == "cpu" else []),
        "",
        "| library | env steps / iteration | rollout kernel ops / env step | rollout syncs / env step | of which seedlock's (kernel ops, syncs) / env step | update kernel ops | update syncs |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['trainer']} | {row['env_steps_per_iteration']} | {row['rollout_per_env_step']['kernel_ops']:.1f} | "
            f"{row['rollout_per_env_step']['syncs']:.2f} | {row['seedlock_per_env_step']['kernel_ops']:.1f}, "
            f"{row['seedlock_per_env_step']['syncs']:.2f} | {sum(row['update_kernel_ops'].values()):,.0f} | {sum(row['update_syncs'].values()):,.0f} |"
        )
    lines += ["", "Who makes them (per iteration):", ""]
    for row in result["rows"]:
        owners = lambda key: ", ".join(f"{who} {count:,.0f}" for who, count in row[key].items()) or "none"  # noqa: E731
        lines.append(f"- **{row['trainer']}**: rollout kernel ops: {owners('rollout_kernel_ops')}; rollout syncs: "
                     f"{owners('rollout_syncs')}; update syncs: {owners('update_syncs')}; syncs between the update "
                     f"and the next rollout: {owners('between_syncs')}.")
        top = ", ".join(f"{s['op']} at `{s['where']}` {s['per_iteration']:,.0f}" for s in row["sync_ops"][:8])
        lines.append(f"  Syncing ops: {top or 'none'}.")
        if row["checkpoint_kernel_ops"] or row["checkpoint_syncs"]:
            lines.append(f"  Not in the table: seedlock's checkpoint (iteration 0, every `trainer.checkpoint_interval` and the last), "
                         f"{sum(row['checkpoint_kernel_ops'].values()):,.0f} kernel ops and "
                         f"{sum(row['checkpoint_syncs'].values()):,.0f} syncs per iteration averaged here.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.step_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", choices=TRAINERS, action="append", help="a library (repeatable; default all four)")
    parser.add_argument("--task", default="cartpole")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--torch-deterministic", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        determinism.reserve_cublas_workspace()
    register()
    rows = []
    with initialize_config_module(config_module="conf", version_base="1.3"), \
            tempfile.TemporaryDirectory(prefix="seedlock-step-profile-") as work_dir:
        for trainer in args.trainer or TRAINERS:
            rows.append(profile_run(trainer, args, Path(work_dir)))
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(args.device), "device": args.device, "task": args.task, "num_envs": args.num_envs,
              "torch_deterministic": args.torch_deterministic, "argv": argv if argv is not None else sys.argv[1:], "rows": rows}
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
