"""Fixtures shared by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

# One torch thread in every test process and the runs they start (set before torch is imported):
# two pytest-xdist workers share two cores, and more threads only spin. Runs compared with each
# other always share this setting; tests of the thread pinning set their own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.support import TrainedRuns  # noqa: E402


@pytest.fixture
def restore_torch_state() -> Iterator[None]:
    """Undo what determinism.apply does to this process, so tests stay independent."""
    saved_env = dict(os.environ)
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.rnn.fp32_precision,
        torch.get_float32_matmul_precision(),
        torch.get_num_threads(),
        torch.nn.Conv2d._conv_forward,
        torch.utils.deterministic.fill_uninitialized_memory,  # type: ignore[attr-defined]
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
    torch.backends.cuda.matmul.fp32_precision = saved[4]
    torch.backends.cudnn.conv.fp32_precision = saved[5]
    torch.backends.cudnn.rnn.fp32_precision = saved[6]
    torch.set_float32_matmul_precision(saved[7])
    torch.set_num_threads(saved[8])
    torch.nn.Conv2d._conv_forward = saved[9]  # type: ignore[method-assign]
    torch.utils.deterministic.fill_uninitialized_memory = saved[10]  # type: ignore[attr-defined]
    os.environ.clear()
    os.environ.update(saved_env)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> TrainedRuns:
    """Training runs shared by the session's tests (tests/support.py: TrainedRuns)."""
    return TrainedRuns(tmp_path_factory.mktemp("trained_runs"))
