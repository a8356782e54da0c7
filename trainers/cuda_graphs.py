"""CUDA graphs for the fast paths (``trainer.fast_path=true``): a library's own device work,
captured once and replayed, so the same kernels run and only the host's launches go.

A 4096-env CartPole iteration is launch-bound: thousands of small kernels, each costing more on
the host (Python, dispatch, launch) than on the H200 (``bench/step_profile.py``). A CUDA graph
launches a captured sequence of kernels as one. RNG draws inside a graph advance the CUDA
generator exactly as the eager call would, so the run stays the same bit for bit (tested against
the eager path on the GPU, ``tests/test_gpu.py``). The library-specific loops that use this are
``trainers/rl_games_graphs.py``, ``trainers/rsl_rl_graphs.py`` and ``trainers/skrl_graphs.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal


def capturable_normal_sample(self: Normal, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
    """``Normal.sample`` without its host sync: ``torch.normal(mean, std)`` first checks
    ``std.min() >= 0`` on the host (no capture allows that), then fills the output with
    ``normal_(0, 1)`` and computes ``output * std + mean`` in place (ATen's ``normal_out_impl``).
    This is that computation without the check: the same kernels, the same generator offsets, the
    same bits (tested against the eager run on the CPU and the GPU)."""
    shape = self._extended_shape(sample_shape)
    with torch.no_grad():
        loc, scale = self.loc.expand(shape), self.scale.expand(shape)
        output = torch.empty(shape, dtype=loc.dtype, device=loc.device)
        output.normal_(0.0, 1.0)
        return output.mul_(scale).add_(loc)


@contextlib.contextmanager
def capturable_sampling() -> Iterator[None]:
    """Normal.sample as :func:`capturable_normal_sample` while a captured sequence runs."""
    sample = Normal.sample
    Normal.sample = capturable_normal_sample  # type: ignore[method-assign]
    try:
        yield
    finally:
        Normal.sample = sample  # type: ignore[method-assign]


class CapturedCall:
    """``fn()`` reading static buffers, as a CUDA graph on CUDA and eagerly elsewhere. Its outputs
    are the graph's buffers: read them before the next call."""

    def __init__(self, fn: Callable[[], Any], device: torch.device | str) -> None:
        self.fn = fn
        self.device = torch.device(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Any = None
        self.warmed_up = False

    def __call__(self) -> Any:
        with capturable_sampling():
            return self._call()

    def _call(self) -> Any:
        if self.device.type != "cuda":
            return self.fn()
        if not self.warmed_up:
            # The warm-up is a real call, on a side stream as PyTorch's capture recipe asks.
            self.warmed_up = True
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                outputs = self.fn()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            return outputs
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.device(self.device), torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.outputs = self.fn()
            self.graph = graph
        self.graph.replay()
        return self.outputs


def into_static(static: SimpleNamespace | None, **values: Any) -> SimpleNamespace:
    """The inputs a :class:`CapturedCall` reads, at the addresses it was captured with: copies of
    ``values`` (tensors, TensorDicts, tuples of tensors, or None) the first time, then ``values``
    copied into those copies."""
    if static is None:
        return SimpleNamespace(**{name: _cloned(value) for name, value in values.items()})
    for name, value in values.items():
        target = getattr(static, name)
        for into, source in zip(_as_tuple(target), _as_tuple(value), strict=True):
            into.copy_(source)
    return static


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return () if value is None else value if isinstance(value, tuple) else (value,)


def _cloned(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(item.clone() for item in value)
    return None if value is None else value.clone()


@contextlib.contextmanager
def buffers_kept_in_place(*models: nn.Module) -> Iterator[None]:
    """The models' buffers stay the tensors they were: a buffer the block replaced (a running
    normalizer assigning new statistics, as RSL-RL's, rl_games' TorchScript ``RunningMeanStd`` and
    skrl's ``RunningStandardScaler`` do) gets the new values copied into the old tensor, which becomes the buffer
    again. A graph reads the tensors it was captured with; the values are the same bits. Inside a
    capture the copy is captured too, so each replay leaves the new statistics where the graphs read."""
    before = [(model, name, tensor) for model in models for name, tensor in model.named_buffers()]
    yield
    for model, name, tensor in before:
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        new = getattr(owner, leaf)
        if new is not tensor:
            tensor.copy_(new)
            setattr(owner, leaf, tensor)
