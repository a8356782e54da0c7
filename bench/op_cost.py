"""The cost column of ``seedlock-audit``: each op it names, timed as torch's defaults run it and as
``torch_deterministic=true`` replaces it.

The audit records, for every op that differs under torch's defaults, the shapes of its first
call, and for every convolution the module (as PyTorch prints it) and its input shape. This
replays each one alone on the device, at those shapes, and times it:

- a convolution module: forward + backward (input and weight gradients) unlocked (cuDNN's
  defaults), locked with cuDNN's deterministic weight gradient (``conv_weight_grad=cudnn``), and
  locked with seedlock's im2col-matmul weight gradient (``conv_weight_grad=matmul``, the default);
- ``index_add_``, ``scatter_add_``, ``scatter_reduce`` (sum), ``index_put_`` (accumulate): the op
  at its recorded shapes, with random indices, unlocked and locked.

``repeatable``: the same result, bit for bit, twice in a row. Ops torch has no deterministic
version of (the audit's first list) have nothing to compare with and are listed as such.

    seedlock-audit --audit-dir runs/audit/rgb trainer=rl_games task=cartpole_rgb device=cuda
    python -m bench.op_cost runs/audit/rgb/audit.json --out bench/results/op_cost_cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.env_throughput import sync
from bench.machine import describe, machine
from determinism.torch_flags import lock_torch

ROOT = Path(__file__).resolve().parent.parent
CONVOLUTION_MODULES = {name: getattr(torch.nn, name) for name in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")}
# variant: (torch_deterministic, conv_weight_grad)
VARIANTS: dict[str, tuple[bool, str]] = {
    "unlocked (torch's defaults)": (False, "matmul"),
    "locked, cuDNN's deterministic wgrad": (True, "cudnn"),
    "locked, seedlock's matmul wgrad": (True, "matmul"),
    "locked (torch_deterministic=true)": (True, "matmul"),
}
CONVOLUTION_VARIANTS = tuple(VARIANTS)[:3]
OP_VARIANTS = ("unlocked (torch's defaults)", "locked (torch_deterministic=true)")


def convolution(module_repr: str, input_shape: list[int], device: str) -> Callable[[], list[torch.Tensor]]:
    """Forward + backward of the module PyTorch printed as ``module_repr`` (its constructor call)."""
    module = eval(module_repr, {"__builtins__": {}}, CONVOLUTION_MODULES).to(device)  # noqa: S307 - a torch.nn repr from audit.json
    frames = torch.rand(*input_shape, device=device, requires_grad=True)

    def step() -> list[torch.Tensor]:
        module.zero_grad(set_to_none=True)
        frames.grad = None
        module(frames).square().mean().backward()
        return [frames.grad.clone(), *(p.grad.clone() for p in module.parameters())]

    return step


def indexed(op: str, shapes: list[list[int]], device: str) -> Callable[[], list[torch.Tensor]] | None:
    """The op at its recorded shapes (self, index, source), indices drawn over self's first dim."""
    generator = torch.Generator(device=device).manual_seed(0)
    if op in ("aten::index_add", "aten::index_add_") and len(shapes) >= 3:
        target, index_len, source = shapes[0], shapes[1][0], shapes[2]
        index = torch.randint(0, target[0], (index_len,), device=device, generator=generator)
        values = torch.rand(*source, device=device, generator=generator)
        return lambda: [torch.zeros(*target, device=device).index_add_(0, index, values)]
    if op in ("aten::scatter_add", "aten::scatter_add_", "aten::scatter_reduce", "aten::scatter_reduce_") and len(shapes) >= 3:
        target, index_shape = shapes[0], shapes[1]
        index = torch.randint(0, target[0], index_shape, device=device, generator=generator)
        values = torch.rand(*shapes[2], device=device, generator=generator)
        return lambda: [torch.zeros(*target, device=device).scatter_add_(0, index, values)]
    if op in ("aten::index_put", "aten::index_put_", "aten::_index_put_impl_") and len(shapes) >= 3:
        target, index_len, source = shapes[0], shapes[1][0], shapes[2]
        index = torch.randint(0, target[0], (index_len,), device=device, generator=generator)
        values = torch.rand(*source, device=device, generator=generator)
        return lambda: [torch.zeros(*target, device=device).index_put_((index,), values, accumulate=True)]
    return None


def time_step(step: Callable[[], list[torch.Tensor]], device: str, steps: int) -> dict[str, Any]:
    first = step()
    repeatable = all(torch.equal(a, b) for a, b in zip(first, step()))
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(times), "repeatable": repeatable}


def cost(finding: dict[str, Any], device: str, steps: int) -> list[dict[str, Any]]:
    """One row per variant for an audit finding; an empty list where it cannot be replayed."""
    rows = []
    is_convolution = bool(finding.get("module"))
    for name in CONVOLUTION_VARIANTS if is_convolution else OP_VARIANTS:
        locked, weight_grad = VARIANTS[name]
        lock_torch(locked, conv_weight_grad=weight_grad)
        torch.manual_seed(0)
        step = convolution(finding["module"], finding["shapes"][0], device) if is_convolution \
            else indexed(finding["what"], finding["shapes"], device)
        if step is None:
            return []
        rows.append({"variant": name, **time_step(step, device, steps)})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# The cost of locking each op seedlock-audit names",
        "",
        describe(result["machine"]),
        "",
        f"Audit: `{result['audit']}` (`{' '.join(result['overrides'])}`). Each op alone at the shapes of its first call in",
        "that run; median of the timed calls (a convolution: forward + backward); `repeatable`: the same result twice in a row.",
        "",
        "| op | module / shapes | called from | per iteration | replaced under torch_deterministic=true by | variant | ms | vs unlocked | repeatable |",
        "|---|---|---|---:|---|---|---:|---:|---|",
    ]
    for entry in result["ops"]:
        finding = entry["finding"]
        where = finding["module"] or " × ".join(str(tuple(shape)) for shape in finding["shapes"])
        per_iteration = finding["detail"].split(" per iteration")[0]
        if not entry["rows"]:
            lines.append(f"| {finding['what']} | {where} | {finding['location']} | {per_iteration} | {finding['replacement']} | not replayed | | | |")
            continue
        unlocked = entry["rows"][0]["ms"]
        for row in entry["rows"]:
            lines.append(f"| {finding['what']} | {where} | {finding['location']} | {per_iteration} | {finding['replacement']} | "
                         f"{row['variant']} | {row['ms']:.3f} | {row['ms'] / unlocked:.2f}× | {row['repeatable']} |")
    for op in result["no_deterministic_version"]:
        lines.append(f"| {op['what']} | | {op['location']} | {op['detail'].split(' per iteration')[0]} | "
                     "nothing: torch has no deterministic version (torch_deterministic=true raises) | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audit", type=Path, help="an audit.json written by seedlock-audit")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "op_cost_cuda")
    args = parser.parse_args()
    report = json.loads(args.audit.read_text())
    lock_torch(True)  # sets CUBLAS_WORKSPACE_CONFIG before CUDA starts
    result = {
        "machine": machine(args.device),
        "audit": str(args.audit),
        "overrides": report["overrides"],
        "ops": [{"finding": finding, "rows": cost(finding, args.device, args.steps)} for finding in report["lockable_ops"]],
        "no_deterministic_version": report["ops"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
