"""A run's data flow, step by step, for ``seedlock-verify --explain``.

With ``fingerprints.trace=true`` a run writes ``trace.jsonl``, one line per iteration: a digest of
every env step's observations, actions and rewards, of every module's output (a global forward
hook, so each library's own networks are seen without knowing them), and of every parameter's
gradient at each optimizer step (a global optimizer hook: one per minibatch of the update), in
the order they happened. Two runs' traces compared event by event name the first thing that
differs in data-flow order (:func:`first_difference`). Digests are ObservationDigests' (exact
integer sums of the raw bits); tracing reads each back once per iteration, so it is for
diagnosis, not for timed runs. Module and parameter names come from what the adapter
fingerprints (``record_iteration``'s modules), so they read as in the fingerprints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

TRACE_FILE = "trace.jsonl"
# What a module class computes, for the report (the op that produced the differing output).
MODULE_OPS = {"Linear": "linear (addmm)", "Conv2d": "conv2d (cuDNN/oneDNN convolution)", "LayerNorm": "layer_norm",
              "BatchNorm2d": "batch_norm", "ELU": "elu", "ReLU": "relu", "Tanh": "tanh", "LSTM": "lstm", "GRU": "gru"}


def digest(tensor: torch.Tensor) -> torch.Tensor:
    """An exact integer digest of a tensor's bits, on its device, weighted by position (a swap of
    two elements shows). Heavier than ObservationDigests' row sums, which run every step of every
    run; this one runs only in a traced, diagnostic run."""
    flat = tensor.detach().reshape(-1).contiguous()
    words = flat.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()])
    weights = torch.arange(1, words.numel() + 1, device=words.device, dtype=torch.int64) % 65521 + 1
    return (words.to(torch.int64) * weights).sum()


class Tracer:
    """Records events while installed (``with tracer:``); ``flush`` writes one iteration's line."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / TRACE_FILE
        self._events: list[tuple[str, Any, torch.Tensor]] = []  # (kind, the module or parameter, digest)
        self._modules: dict[int, str] = {}  # id(module) -> name, of the fingerprinted modules
        self._parameters: dict[int, str] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "Tracer":
        self._handles = [
            torch.nn.modules.module.register_module_forward_hook(self._forward),
            register_optimizer_step_pre_hook(self._optimizer_step),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def env_step(self, obs: torch.Tensor, actions: torch.Tensor | None, reward: torch.Tensor) -> None:
        for kind, tensor in (("actions", actions), ("obs", obs), ("reward", reward)):
            if isinstance(tensor, torch.Tensor):
                self._events.append((kind, None, digest(tensor)))

    def _forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        tensors = [output] if isinstance(output, torch.Tensor) else [t for t in output if isinstance(t, torch.Tensor)] \
            if isinstance(output, (tuple, list)) else []
        for index, tensor in enumerate(tensors):
            # The module itself, not its id: it stays alive until the flush names it, so a module
            # made and dropped meanwhile cannot lend its id to another.
            self._events.append(("forward", (module, index), digest(tensor)))

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._events.append(("step", None, torch.zeros((), dtype=torch.int64)))
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    self._events.append(("grad", parameter, digest(parameter.grad)))

    def learn_names(self, modules: Mapping[str, torch.nn.Module]) -> None:
        """The fingerprinted modules' names (``role.submodule``), as they are now (ids of live objects)."""
        self._modules = {id(sub): f"{role}.{name}" if name else role
                         for role, module in modules.items() for name, sub in module.named_modules()}
        self._parameters = {id(parameter): (f"{role}.{prefix}.{name}" if prefix else f"{role}.{name}", type(sub).__name__)
                            for role, module in modules.items() for prefix, sub in module.named_modules()
                            for name, parameter in sub.named_parameters(recurse=False)}

    def flush(self, iteration: int) -> None:
        """Write the iteration's events (those of the fingerprinted modules and the env) and start anew."""
        values = torch.stack([d.to("cpu") for _, _, d in self._events]).tolist() if self._events else []
        events = []
        for (kind, key, _), value in zip(self._events, values):
            if kind == "forward":
                module, index = key
                if id(module) not in self._modules:
                    continue  # not one of the policy's or value's modules (e.g. an env's own)
                events.append([kind, f"{self._modules[id(module)]}[{index}]", f"{value & 0xFFFFFFFFFFFF:012x}", type(module).__name__])
            elif kind == "grad":
                if id(key) in self._parameters:
                    name, owner = self._parameters[id(key)]
                    events.append([kind, name, f"{value & 0xFFFFFFFFFFFF:012x}", owner])
            else:
                events.append([kind, "", f"{value & 0xFFFFFFFFFFFF:012x}" if kind != "step" else ""])
        self._events.clear()
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps({"iteration": iteration, "events": events}) + "\n")


@dataclass
class TraceDifference:
    iteration: int
    what: str  # in words: "env observations at rollout step 3", "module actor.0 output ..."
    event: list[str]


def read_trace(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / TRACE_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def first_difference(run_a: Path, run_b: Path) -> TraceDifference | None:
    """The first event, in data-flow order, at which two runs' traces differ; None if they agree."""
    for line_a, line_b in zip(read_trace(run_a), read_trace(run_b)):
        step = minibatch = 0
        # Forward calls before the last env step act in the rollout; after it, they are the update's.
        rollout_end = max((i for i, event in enumerate(line_a["events"]) if event[0] == "obs"), default=-1)
        for index, (event_a, event_b) in enumerate(zip(line_a["events"], line_b["events"])):
            if event_a != event_b:
                where = f"during rollout step {step}" if index < rollout_end else f"in the update's minibatch {minibatch}"
                return TraceDifference(line_a["iteration"], describe(event_a, event_b, step, minibatch, where), event_a)
            if event_a[0] == "obs":
                step += 1
            elif event_a[0] == "step":
                minibatch += 1
        if len(line_a["events"]) != len(line_b["events"]):
            return TraceDifference(line_a["iteration"], "the runs record a different number of steps or calls", [])
    return None


def describe(event_a: list[str], event_b: list[str], step: int, minibatch: int, where: str) -> str:
    kind = event_a[0]
    if kind != event_b[0] or event_a[1] != event_b[1]:
        return f"the runs take different paths {where}: {event_a[:2]} vs {event_b[:2]}"
    if kind == "obs":
        return f"env observations after rollout step {step}"
    if kind in ("actions", "reward"):
        return f"{'actions' if kind == 'actions' else 'rewards'} at rollout step {step}"
    if kind == "forward":
        op = MODULE_OPS.get(event_a[3], event_a[3])
        return f"module {event_a[1]}'s output ({op}) {where}"
    owner = event_a[3] if len(event_a) > 3 else ""
    op = f" ({MODULE_OPS.get(owner, owner)} backward{': the weight gradient' if event_a[1].endswith('weight') else ''})" if owner else ""
    return f"the gradient of {event_a[1]}{op} in the update's minibatch {minibatch - 1}"
