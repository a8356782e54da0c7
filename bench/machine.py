"""What a benchmark ran on, recorded beside its numbers: date, CPU, threads, torch, GPU and driver."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import torch

import determinism


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "cpu": cpu_name(), "cpu_cores": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["driver"] = determinism.collect_devices().get("cuda_driver")
    return info


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(info: dict[str, Any]) -> str:
    """One line for a results table's header."""
    where = f"{info['gpu']}, driver {info.get('driver')}, CUDA {info.get('cuda')}" if info.get("gpu") else (
        f"{info['cpu']}, {info['cpu_threads']} torch threads of {info.get('cpu_cores')} cores"
    )
    return f"{info['date']}, {info['device']}: {where}; torch {info['torch']}"
