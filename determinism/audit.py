"""What could make a run irreproducible, found by running it: the probes of ``seedlock-audit``.

A short run is watched by three probes, and the process's settings are read:

- :func:`nondeterministic_ops`: PyTorch's deterministic-algorithm checks in warn-only mode; every
  op that warns (no deterministic implementation on this device, or flagged as
  non-deterministic) is counted with the first caller outside torch, which names the library's
  module and line.
- :func:`unseeded_rngs`: every RNG made or reseeded from the OS's entropy (numpy's
  ``default_rng()``, python's ``random.Random()`` and ``random.seed()``, ``torch.seed()``) while
  the run builds and trains (also at an import), with its caller: seedlock seeds the global RNGs,
  these stand outside that seeding. Whether the run then draws from one is not tracked. Not watched (classes that other code subclasses or type-checks, or C
  methods): numpy's ``RandomState()``/``SeedSequence()`` made directly, ``torch.Generator.seed()``.
- :func:`lockable_ops`: every op that is non-deterministic under torch's defaults and that
  ``torch_deterministic=true`` replaces (:data:`LOCKABLE_OPS`: ``index_add_``/``scatter_add_`` on
  CUDA, ...), seen by a dispatch mode (so the update's backward ops too, named at the
  ``.backward()`` call), and every convolution module trained on CUDA (its weight gradient is
  cuDNN's), with its input shape for ``bench/op_cost.py``. The PyTorch checks above cannot see
  these: with the checks on, torch runs their deterministic version and says nothing.
- :func:`warp_atomics`: the kernels of every warp module the run loaded that accumulate with
  atomics, and the module's deterministic mode (Isaac Lab 3.x on Newton).
- :func:`settings_facts`: the settings that change results (TF32, cuDNN benchmark and
  deterministic, threads, ``CUBLAS_WORKSPACE_CONFIG``) as the run's own config sets them.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import re
import sys
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from determinism.torch_flags import CUBLAS_WORKSPACE_ENV, conv_precision, matmul_precision, reserve_cublas_workspace

# Frames skipped when naming who called an op or made an RNG: torch itself, the probes, the
# warnings machinery. The first other frame is the library's or seedlock's code.
SKIPPED_FRAMES = (
    # torch's own package (not any ".../torch/..." path: skrl's agents live in skrl/agents/torch/)
    os.path.dirname(torch.__file__) + os.sep, f"{os.sep}determinism{os.sep}audit.py", f"{os.sep}warnings.py",
    f"{os.sep}numpy{os.sep}", f"{os.sep}random.py",
)
# Callers in the standard library whose unseeded RNGs never reach a run's numbers (temp-file names).
HARMLESS_CALLERS = (f"{os.sep}tempfile.py",)
# PyTorch's own alert (warn-only mode); other warnings that mention determinism pass through.
NONDETERMINISTIC_WARNING = re.compile(r"use_deterministic_algorithms|does not have a deterministic implementation")
OP_NAME = re.compile(r"^([\w.:]+(?: [\w.:]+)?) does not have a deterministic implementation")
ATOMICS = re.compile(r"\b(?:wp\.)?(atomic_(?:add|sub|min|max))\s*\(")


@dataclass
class Finding:
    """One thing that can make two runs differ, where it is called from, and how often."""

    what: str
    location: str
    count: int
    detail: str = ""
    replacement: str = ""  # what torch_deterministic=true runs instead
    module: str = ""  # the module that ran it, as PyTorch prints it (convolutions)
    shapes: list[list[int]] = field(default_factory=list)  # its tensor arguments' shapes, first call


@dataclass(frozen=True)
class LockableOp:
    """An op that differs between runs under torch's defaults (``when``) and that
    ``torch_deterministic=true`` replaces with ``replacement``."""

    when: str
    replacement: str
    applies: Callable[[tuple[Any, ...], dict[str, Any]], bool]


@dataclass
class Probes:
    ops: Counter = field(default_factory=Counter)  # (op, location) -> calls
    op_messages: dict[tuple[str, str], str] = field(default_factory=dict)
    rngs: Counter = field(default_factory=Counter)  # (source, location) -> calls
    lockable: Counter = field(default_factory=Counter)  # (op, location, module) -> calls
    lockable_shapes: dict[tuple[str, str, str], list[list[int]]] = field(default_factory=dict)

    def op_findings(self, iterations: int) -> list[Finding]:
        return [
            Finding(op, location, count, f"{count / max(iterations, 1):g} per iteration; {self.op_messages[(op, location)]}")
            for (op, location), count in self.ops.most_common()
        ]

    def rng_findings(self) -> list[Finding]:
        return [Finding(source, location, count) for (source, location), count in self.rngs.most_common()]

    def lockable_findings(self, iterations: int) -> list[Finding]:
        findings = []
        for (op, location, module), count in self.lockable.most_common():
            rule = LOCKABLE_OPS.get(op, CONVOLUTION)
            findings.append(Finding(op, location, count, f"{count / max(iterations, 1):g} per iteration; {rule.when}",
                                    rule.replacement, module, self.lockable_shapes[(op, location, module)]))
        return findings


def caller(skip_harmless: bool = False) -> str | None:
    """``path:line (function)`` of the first frame outside torch, numpy and the probes; None when
    that frame is a harmless standard-library caller (``skip_harmless``)."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if any(part in frame.filename for part in SKIPPED_FRAMES) or frame.filename.startswith("<"):
            continue  # generated code (skrl's model instantiators exec theirs) is named by its caller
        if skip_harmless and any(part in frame.filename for part in HARMLESS_CALLERS):
            return None
        return f"{short_path(frame.filename)}:{frame.lineno} ({frame.name})"
    return "unknown"


def short_path(filename: str) -> str:
    """A file named from its package (``rsl_rl/algorithms/ppo.py``), not the venv's full path."""
    path = Path(filename)
    for marker in ("site-packages", "dist-packages"):
        if marker in path.parts:
            return str(Path(*path.parts[path.parts.index(marker) + 1:]))
    try:
        return str(path.relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def nondeterministic_ops(probes: Probes) -> Iterator[None]:
    """PyTorch's deterministic-algorithm alerts as warnings, each counted at its caller. The
    previous setting comes back afterwards."""
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    shown = warnings.showwarning

    def record(message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
        text = str(message)
        if not NONDETERMINISTIC_WARNING.search(text):
            shown(message, category, filename, lineno, *args)
            return
        match = OP_NAME.search(text)
        op = match.group(1) if match else text.split(".")[0][:120]
        key = (op, caller() or "unknown")
        probes.ops[key] += 1
        probes.op_messages.setdefault(key, text.splitlines()[0][:300])

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
            warnings.showwarning = shown


@contextlib.contextmanager
def unseeded_rngs(probes: Probes) -> Iterator[None]:
    """Every RNG seeded from the OS's entropy while the block runs, counted at its caller."""
    originals: list[tuple[Any, str, Any]] = []

    def watch(owner: Any, name: str, source: str, unseeded: Any) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def watched(*args: Any, **kwargs: Any) -> Any:
            if unseeded(*args, **kwargs):
                location = caller(skip_harmless=True)
                if location is not None:
                    probes.rngs[(source, location)] += 1
            return original(*args, **kwargs)

        setattr(owner, name, watched)

    def no_seed(seed: Any = None, *args: Any, **kwargs: Any) -> bool:
        return seed is None

    def no_seed_method(self: Any, seed: Any = None, *args: Any, **kwargs: Any) -> bool:
        return seed is None

    watch(np.random, "default_rng", "numpy.random.default_rng() without a seed", no_seed)
    # Random.__init__ seeds through Random.seed: patching the method (not the class, which is
    # subclassed) sees every new unseeded instance; random.seed is the global instance's own.
    watch(random.Random, "seed", "random.Random() or .seed() without a seed", no_seed_method)
    watch(random, "seed", "random.seed() from the OS's entropy", no_seed)
    watch(torch, "seed", "torch.seed() (a non-deterministic seed)", lambda *a, **k: True)
    watch(torch.random, "seed", "torch.seed() (a non-deterministic seed)", lambda *a, **k: True)
    try:
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _tensors(args: tuple[Any, ...]) -> list[torch.Tensor]:
    return [a for a in args if isinstance(a, torch.Tensor)] + [
        t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]


def _on_cuda(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return bool(args) and isinstance(args[0], torch.Tensor) and args[0].is_cuda


def _repeats(index: Any) -> bool:
    """Whether an index tensor names a position twice (then which write wins, or the order of a
    sum, is up to the kernel). One host sync per call: the audit's run is short."""
    return isinstance(index, torch.Tensor) and index.numel() > 1 and int(torch.unique(index).numel()) < index.numel()


def _index_put_differs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
    accumulate = bool(args[3] if len(args) > 3 else kwargs.get("accumulate", False))
    single = [i for i in indices if i is not None]
    if accumulate:
        return not args[0].is_cuda  # the CUDA kernel sorts already; the CPU one sums in parallel
    return len(single) == 1 and _repeats(single[0])


def _scatter_reduce_differs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return _on_cuda(args, kwargs) and (args[4] if len(args) > 4 else kwargs.get("reduce")) in ("sum", "mean")


def _scatter_src_differs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return _on_cuda(args, kwargs) and len(args) > 3 and isinstance(args[3], torch.Tensor) and _repeats(args[2])


def _index_copy_differs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return len(args) > 2 and _repeats(args[2])


_ATOMIC_SUM = "CUDA sums the values that meet at one index with atomics, in the order threads arrive"
_SORTED_SUM = "torch's deterministic version: the indices sorted, then each position summed in order"
_CUDA_BACKWARD = "its CUDA backward sums with atomics"
# Ops that differ between runs under torch's defaults and have a deterministic version that
# torch_deterministic=true selects (torch.use_deterministic_algorithms' documented list, as aten
# ops: a backward decomposes into these too, e.g. index_select's into index_add).
LOCKABLE_OPS: dict[str, LockableOp] = {
    **dict.fromkeys(("aten::index_add", "aten::index_add_"), LockableOp(_ATOMIC_SUM, _SORTED_SUM, _on_cuda)),
    **dict.fromkeys(("aten::scatter_add", "aten::scatter_add_"), LockableOp(_ATOMIC_SUM, _SORTED_SUM, _on_cuda)),
    **dict.fromkeys(("aten::scatter_reduce", "aten::scatter_reduce_"),
                    LockableOp(f"reduce sum/mean: {_ATOMIC_SUM}", _SORTED_SUM, _scatter_reduce_differs)),
    **dict.fromkeys(("aten::scatter", "aten::scatter_"),
                    LockableOp("an index repeats: which write wins is up to the CUDA threads", "a serial write in index order", _scatter_src_differs)),
    **dict.fromkeys(("aten::index_put", "aten::index_put_", "aten::_index_put_impl_"),
                    LockableOp("an index repeats (write), or accumulate=True on the CPU (a parallel sum)",
                               "a sorted write or sum in index order", _index_put_differs)),
    **dict.fromkeys(("aten::index_copy", "aten::index_copy_"),
                    LockableOp("an index repeats: which copy wins is up to the kernel", "a serial copy in index order", _index_copy_differs)),
    "aten::max_pool3d_with_indices_backward": LockableOp(_CUDA_BACKWARD, "a deterministic CUDA kernel", _on_cuda),
    **dict.fromkeys((f"aten::replication_pad{n}d_backward" for n in (1, 2, 3)),
                    LockableOp(_CUDA_BACKWARD, "a deterministic CUDA kernel", _on_cuda)),
}
CONVOLUTION_OP = "aten::convolution_backward (weight gradient)"
CONVOLUTION = LockableOp(
    "cuDNN picks its weight-gradient algorithm by timing (cudnn.benchmark) and may pick one that sums with atomics",
    "seedlock's im2col-matmul weight gradient (determinism.conv_weight_grad=matmul; =cudnn: cuDNN's deterministic algorithm)",
    _on_cuda,
)


class _LockableOpWatch(TorchDispatchMode):
    """Sees every aten op below autograd (so backward ops too, on autograd's threads) and counts
    those of :data:`LOCKABLE_OPS` whose arguments make them differ."""

    def __init__(self, probes: Probes, backward_caller: list[str]) -> None:
        super().__init__()
        self.probes, self.backward_caller = probes, backward_caller

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        rule = LOCKABLE_OPS.get(func._schema.name)
        if rule is not None and rule.applies(args, kwargs):
            location = caller()
            if location == "unknown" or location is None:  # autograd's thread: no Python frames of its own
                location = f"backward of {self.backward_caller[0]}" if self.backward_caller else "unknown"
            key = (func._schema.name, location, "")
            self.probes.lockable[key] += 1
            self.probes.lockable_shapes.setdefault(key, [list(t.shape) for t in _tensors(args)])
        return func(*args, **kwargs)


@contextlib.contextmanager
def lockable_ops(probes: Probes) -> Iterator[None]:
    """Count the run's :data:`LOCKABLE_OPS` and its convolution modules trained on CUDA."""
    backward_caller: list[str] = []
    backward = torch.autograd.backward

    def named_backward(*args: Any, **kwargs: Any) -> Any:
        backward_caller[:] = [caller() or "unknown"]
        return backward(*args, **kwargs)

    def convolution(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if (isinstance(module, torch.nn.modules.conv._ConvNd) and torch.is_grad_enabled() and module.weight.requires_grad
                and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].is_cuda):
            key = (CONVOLUTION_OP, caller() or "unknown", repr(module))
            probes.lockable[key] += 1
            probes.lockable_shapes.setdefault(key, [list(inputs[0].shape)])

    hook = torch.nn.modules.module.register_module_forward_hook(convolution)
    torch.autograd.backward = named_backward
    try:
        with _LockableOpWatch(probes, backward_caller):
            yield
    finally:
        torch.autograd.backward = backward
        hook.remove()


def warp_atomics() -> tuple[list[Finding], str | None]:
    """The loaded warp modules' kernels that accumulate with atomics, with the module's
    deterministic mode; (findings, why not checked) where warp's modules cannot be read."""
    warp = sys.modules.get("warp")
    if warp is None:
        return [], None
    try:
        from warp._src import context
    except ImportError:  # older warp
        context = getattr(warp, "context", None)
    modules = getattr(getattr(context, "runtime", None), "modules", None) or getattr(context, "user_modules", None)
    if not modules:
        return [], "warp is loaded but its module registry could not be read in this warp version"
    findings = []
    for name, module in sorted(modules.items()):
        mode = getattr(module, "options", {}).get("deterministic", getattr(getattr(warp, "config", None), "deterministic", None))
        for kernel in getattr(module, "kernels", {}).values() if isinstance(getattr(module, "kernels", None), dict) else getattr(module, "kernels", []):
            function = getattr(kernel, "func", None)
            try:
                source = inspect.getsource(function) if function is not None else ""
            except (OSError, TypeError):
                continue
            atomics = sorted(set(ATOMICS.findall(source)))
            if atomics:
                findings.append(Finding(f"{name}.{kernel.key}" if hasattr(kernel, "key") else name, short_path(inspect.getsourcefile(function) or ""),
                                        1, f"{', '.join(atomics)}; module deterministic mode: {getattr(mode, 'name', mode)}"))
    return findings, None


def reserve_cublas_for_audit(config: str) -> str | None:
    """Set cuBLAS's workspace config for the watched (locked) run before anything starts CUDA;
    returns the value the process had (what the audited config itself would run with)."""
    before = os.environ.get(CUBLAS_WORKSPACE_ENV)
    if not torch.cuda.is_initialized():
        reserve_cublas_workspace(config)
    return before


def settings_facts() -> dict[str, Any]:
    """The process's settings that change what a run computes, as they are now."""
    # The GPU's name only once CUDA is up: asking starts CUDA, and the watched run must set
    # CUBLAS_WORKSPACE_CONFIG before that (the audit fills it in after the run).
    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_initialized() else "cpu",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        # torch's new per-backend precision API where it has one: reading the legacy allow_tf32
        # after the new API set it raises.
        "matmul_fp32_precision": matmul_precision(),
        "cudnn_conv_fp32_precision": conv_precision(),
        "num_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def settings_that_break(facts: dict[str, Any], device: str) -> list[str]:
    """Of the facts, what makes two runs on this device differ (not merely compute differently)."""
    if not device.startswith("cuda"):
        return []
    problems = []
    if facts["cudnn_benchmark"]:
        problems.append("cudnn.benchmark is on: cuDNN picks its algorithms by timing them, which differs between runs")
    if not facts["cudnn_deterministic"]:
        problems.append("cudnn.deterministic is off: cuDNN may pick convolution kernels that accumulate with atomics")
    if facts["deterministic_algorithms"] and facts["CUBLAS_WORKSPACE_CONFIG"] is None:
        problems.append("CUBLAS_WORKSPACE_CONFIG is unset: cuBLAS is not reproducible across streams without it")
    return problems
