"""PyTorch determinism switches, and the environment they need before CUDA starts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from determinism.conv import conv_weight_grad_in_use, use_conv_weight_grad

CUBLAS_WORKSPACE_ENV = "CUBLAS_WORKSPACE_CONFIG"
# The two values cuBLAS documents for reproducible results under multiple streams.
VALID_CUBLAS_WORKSPACE_CONFIGS = (":4096:8", ":16:8")
DEFAULT_CUBLAS_WORKSPACE_CONFIG = VALID_CUBLAS_WORKSPACE_CONFIGS[0]


class DeterminismError(RuntimeError):
    """Determinism was asked for but cannot be guaranteed."""


@dataclass
class AppliedFlags:
    """What the process's PyTorch settings are once ``lock_torch`` has run."""

    deterministic_algorithms: bool
    deterministic_warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    matmul_fp32_precision: str
    cudnn_conv_fp32_precision: str
    conv_weight_grad: str
    fill_uninitialized_memory: bool
    env_vars_set: dict[str, str] = field(default_factory=dict)
    num_threads: int = 0
    num_interop_threads: int = 0


@dataclass(frozen=True)
class _TorchDefaults:
    """torch's own settings as this process started, restored for runs that do not ask for
    determinism: in a multirun, jobs share a process, and one job's flags must not leak into
    the next."""

    cudnn_benchmark: bool
    matmul_fp32_precision: str
    cudnn_conv_fp32_precision: str
    cudnn_rnn_fp32_precision: str
    float32_matmul_precision: str


def _snapshot_defaults() -> _TorchDefaults:
    return _TorchDefaults(
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        matmul_fp32_precision=matmul_precision(),
        cudnn_conv_fp32_precision=conv_precision(),
        cudnn_rnn_fp32_precision=str(getattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision", "")),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
    )


def lock_torch(
    torch_deterministic: bool,
    cublas_workspace_config: str = DEFAULT_CUBLAS_WORKSPACE_CONFIG,
    warn_only: bool = False,
    num_threads: int | None = None,
    conv_weight_grad: str = "matmul",
    fill_uninitialized_memory: bool = True,
) -> AppliedFlags:
    """Apply the determinism switches; with ``torch_deterministic`` false, torch's defaults.

    ``conv_weight_grad`` picks the deterministic weight gradient of Conv2d on CUDA
    (:mod:`determinism.conv`); ``fill_uninitialized_memory`` is torch's own switch that fills
    every new uninitialised tensor with NaN (floats) or the largest integer, so that a read
    of memory nothing wrote is deterministic too, at the cost of one fill per allocation."""
    env_vars_set: dict[str, str] = {}
    if not torch_deterministic:
        _restore_defaults()
    else:
        if cublas_workspace_config not in VALID_CUBLAS_WORKSPACE_CONFIGS:
            raise DeterminismError(
                f"determinism.cublas_workspace_config={cublas_workspace_config!r} is not valid: "
                f"choose one of {', '.join(VALID_CUBLAS_WORKSPACE_CONFIGS)}."
            )
        # cuBLAS reads this once, when its handle is created: it must be set before CUDA
        # initialises, or deterministic matmuls raise (or silently differ with warn_only).
        # An earlier job of the same process may have set it before CUDA started; then it holds.
        if torch.cuda.is_initialized() and os.environ.get(CUBLAS_WORKSPACE_ENV) != cublas_workspace_config:
            raise DeterminismError(
                "torch_deterministic=true was applied after CUDA had been initialised, so "
                f"{CUBLAS_WORKSPACE_ENV} cannot take effect; apply determinism first."
            )
        env_vars_set[CUBLAS_WORKSPACE_ENV] = reserve_cublas_workspace(cublas_workspace_config)
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.cudnn.deterministic = True
        # Benchmark mode times candidate kernels at run time and keeps the fastest, which can
        # differ between two processes.
        torch.backends.cudnn.benchmark = False
        _disable_tf32()
        use_conv_weight_grad(conv_weight_grad)
        torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized_memory  # type: ignore[attr-defined]
    if num_threads is not None:
        # Reductions split across threads sum in a different order on another thread count.
        torch.set_num_threads(num_threads)
    return AppliedFlags(
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        matmul_fp32_precision=matmul_precision(),
        cudnn_conv_fp32_precision=conv_precision(),
        conv_weight_grad=conv_weight_grad_in_use(),
        fill_uninitialized_memory=bool(torch.utils.deterministic.fill_uninitialized_memory),  # type: ignore[attr-defined]
        env_vars_set=env_vars_set,
        num_threads=torch.get_num_threads(),
        num_interop_threads=torch.get_num_interop_threads(),
    )


def reserve_cublas_workspace(config: str = DEFAULT_CUBLAS_WORKSPACE_CONFIG) -> str:
    """Set cuBLAS's workspace config for deterministic matmuls; it takes effect only if CUDA has
    not started. A process that will run deterministic and non-deterministic jobs calls this
    first (the benchmarks do): once CUDA runs it can no longer be set, and it costs the other
    jobs nothing but a fixed workspace size."""
    os.environ[CUBLAS_WORKSPACE_ENV] = config
    return config


def _restore_defaults() -> None:
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = _DEFAULTS.cudnn_benchmark
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = _DEFAULTS.matmul_fp32_precision
        torch.backends.cudnn.conv.fp32_precision = _DEFAULTS.cudnn_conv_fp32_precision
        torch.backends.cudnn.rnn.fp32_precision = _DEFAULTS.cudnn_rnn_fp32_precision
    torch.set_float32_matmul_precision(_DEFAULTS.float32_matmul_precision)
    use_conv_weight_grad("cudnn")
    torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]


def _disable_tf32() -> None:
    """TF32 rounds float32 inputs to 10 mantissa bits, and whether a kernel uses it depends on
    the kernel cuBLAS/cuDNN picks: keep IEEE float32 everywhere."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cudnn.rnn.fp32_precision = "ieee"
    else:  # torch < 2.9
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def matmul_precision() -> str:
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return str(torch.backends.cuda.matmul.fp32_precision)
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def conv_precision() -> str:
    if hasattr(torch.backends.cudnn, "conv"):
        return str(torch.backends.cudnn.conv.fp32_precision)
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


_DEFAULTS = _snapshot_defaults()


@contextlib.contextmanager
def torch_flags_kept() -> Iterator[None]:
    """Keep the PyTorch flags ``determinism.apply`` set across a call into a library that seeds:
    e.g. Isaac Sim's ``set_seed`` turns cuDNN benchmark on and deterministic mode off."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
