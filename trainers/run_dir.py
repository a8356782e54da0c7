"""Claiming a run dir: created and locked by one run, never written into twice, and left as it
was found when the run fails before its first iteration.

The lock is ``fcntl.flock`` on ``<run_dir>/.seedlock.lock``: two runs started at once with the
same ``run_dir`` both create the file, exactly one gets the lock, and the kernel drops it when the
process ends however it ends (kill -9 included), so a stale lock never blocks a later run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from trainers.run_config import ConfigError

LOCK_FILE = ".seedlock.lock"
RUN_ARTIFACTS = ("manifest.json", "fingerprints.jsonl", "config.yaml", "checkpoints")
# errno values that mean "this disk will not take the run's files", not a bug.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR, errno.EEXIST}


class RunDirError(ConfigError):
    """The run dir cannot be used: it holds a run, another run holds it, or its disk refuses."""


@dataclass
class RunDirClaim:
    path: Path
    created: bool  # this run made the directory (so it may remove it again)
    lock: IO[str] | None = field(default=None, repr=False)
    entries_before: frozenset[str] = frozenset()

    def release(self, keep: bool) -> None:
        """Drop the lock (and its file); unless ``keep``, remove what this run wrote, the whole dir
        if this run made it."""
        if not keep and self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.path.is_dir():
            written = set(os.listdir(self.path)) - self.entries_before
            for entry in written if not keep else written & {LOCK_FILE}:
                target = self.path / entry
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def claim(run_dir: Path) -> RunDirClaim:
    """Create ``run_dir`` if needed, lock it for this run, and refuse one that holds a run."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        before = frozenset(os.listdir(run_dir))
        lock = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the whole run
    except OSError as error:
        raise disk_error(run_dir, error, "cannot be created") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunDirError(
            f"run_dir={str(run_dir)!r} is in use: another seedlock run holds it right now. Two runs never share a "
            "run dir; leave run_dir unset for a fresh one, or choose another run_dir."
        ) from None
    result = RunDirClaim(run_dir, created, lock, before - {LOCK_FILE})
    existing = [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]
    if existing:
        result.release(keep=True)
        raise RunDirError(
            f"run_dir={str(run_dir)!r} already holds a run ({', '.join(existing)}); seedlock never "
            "overwrites a run. Choose another run_dir, leave run_dir unset for a fresh one, or "
            "continue that run with checkpoint=<run_dir> and a new run_dir."
        )
    return result


def disk_error(run_dir: Path, error: OSError, what: str = "cannot be written", note: str = "") -> RunDirError:
    """An OSError of the run dir's disk as one paragraph naming run_dir."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    return RunDirError(
        f"run_dir={str(run_dir)!r} {what}: {reason}{where}. Choose a run_dir on a writable disk with free "
        f"space. {note}".strip()
    )


def is_disk_error(error: OSError) -> bool:
    return error.errno in DISK_ERRORS
