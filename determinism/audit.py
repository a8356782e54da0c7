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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Frames skipped when naming who called an op or made an RNG: torch itself, the probes, the
# warnings machinery. The first other frame is the library's or seedlock's code.
SKIPPED_FRAMES = (
    f"{os.sep}torch{os.sep}", f"{os.sep}determinism{os.sep}audit.py", f"{os.sep}warnings.py",
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


@dataclass
class Probes:
    ops: Counter = field(default_factory=Counter)  # (op, location) -> calls
    op_messages: dict[tuple[str, str], str] = field(default_factory=dict)
    rngs: Counter = field(default_factory=Counter)  # (source, location) -> calls

    def op_findings(self, iterations: int) -> list[Finding]:
        return [
            Finding(op, location, count, f"{count / max(iterations, 1):g} per iteration; {self.op_messages[(op, location)]}")
            for (op, location), count in self.ops.most_common()
        ]

    def rng_findings(self) -> list[Finding]:
        return [Finding(source, location, count) for (source, location), count in self.rngs.most_common()]


def caller(skip_harmless: bool = False) -> str | None:
    """``path:line (function)`` of the first frame outside torch, numpy and the probes; None when
    that frame is a harmless standard-library caller (``skip_harmless``)."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if any(part in frame.filename for part in SKIPPED_FRAMES):
            continue
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


def settings_facts() -> dict[str, Any]:
    """The process's settings that change what a run computes, as they are now."""
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
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
