"""Is the asked-for device on this machine? Checked before anything is built, so ``device=cuda``
on a CPU-only torch or ``device=cuda:7`` on a one-GPU host is one paragraph, not a traceback from
the first tensor the task allocates."""

from __future__ import annotations

import re

from trainers.run_config import ConfigError

DEVICE_FORMAT = re.compile(r"cpu|cuda(:\d+)?")


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` naming ``device``, what this machine has and what would work.

    Counting devices starts CUDA's driver but no context and no cuBLAS handle, so
    ``CUBLAS_WORKSPACE_CONFIG`` (set later by ``determinism.apply``) still takes effect.
    """
    if not DEVICE_FORMAT.fullmatch(device):
        raise ConfigError(f"device={device!r} is not valid: choose cpu, cuda or cuda:<index>.")
    if device == "cpu":
        return
    import torch

    if not torch.backends.cuda.is_built():
        raise ConfigError(
            f"device={device!r} is not available: the installed torch {torch.__version__} is a CPU-only build "
            "(no CUDA). Use device=cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(
            f"device={device!r} is not available: torch {torch.__version__} (CUDA {torch.version.cuda}) finds no "
            "NVIDIA GPU on this machine (check the driver with nvidia-smi, and CUDA_VISIBLE_DEVICES). Use device=cpu."
        )
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        valid = ", ".join(f"cuda:{i}" for i in range(count))
        raise ConfigError(
            f"device={device!r} is not available: this machine has {count} CUDA device(s). Choose cpu, cuda or {valid}."
        )
