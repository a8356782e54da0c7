"""A progress bar for training and play (rich), shown only on an interactive terminal.

``progress=auto`` (the default) shows it when stderr is a terminal and stays silent in logs,
CI, sweeps' workers and torchrun's ranks > 0; ``progress=true``/``false`` force it. It reads
what every adapter already reports once per iteration (``record_iteration``), so no library's
loop is touched, and it never draws from an RNG.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

CHOICES = ("auto", "true", "false")


def progress_enabled(setting: str, is_main_rank: bool = True) -> bool:
    setting = setting.lower()  # the command line's progress=true arrives as "True"
    if setting not in CHOICES:
        raise ValueError(f"progress={setting!r} is not valid: choose {', '.join(CHOICES)}.")
    if setting == "auto":
        return is_main_rank and sys.stderr.isatty()
    return setting == "true"


class ProgressBar:
    """``done / total`` with env-steps/s and the mean return; a no-op when disabled."""

    def __init__(self, description: str, total: int, enabled: bool) -> None:
        self._start = time.perf_counter()
        self._first_steps: int | None = None
        self._progress = (
            Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} env-steps/s"), TextColumn("return {task.fields[ret]}"),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), redirect_stdout=True, redirect_stderr=False,
            )
            if enabled
            else None
        )
        self._task = self._progress.add_task(description, total=total, rate="-", ret="-") if self._progress else None

    def update(self, done: int, env_steps: int, mean_return: float | None) -> None:
        if self._progress is None or self._task is None:
            return
        if self._first_steps is None:
            self._first_steps, self._start = env_steps, time.perf_counter()
            rate = "-"
        else:
            seconds = time.perf_counter() - self._start
            rate = f"{(env_steps - self._first_steps) / seconds:,.0f}" if seconds > 0 else "-"
        ret = "-" if mean_return is None else f"{mean_return:.2f}"
        self._progress.update(self._task, completed=done, rate=rate, ret=ret)

    def __enter__(self) -> "ProgressBar":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
