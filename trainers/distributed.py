"""torchrun: one training run over several processes, for the libraries with distributed PPO.

``torchrun --nproc-per-node=N --no-python seedlock-train distributed=true ...`` starts N copies of
seedlock-train with RANK, LOCAL_RANK and WORLD_SIZE set. seedlock starts the process group itself,
gloo for ``device=cpu`` and NCCL for CUDA (each rank on ``cuda:<LOCAL_RANK>``, with gloo beside it
for the small objects the ranks agree on), because RSL-RL, rl_games and skrl would each start an
NCCL-only group of their own, which cannot run on a CPU. The adapters hand the ranks to the
library, and the library's own distributed PPO does the rest: parameters broadcast from rank 0,
gradients averaged with all_reduce after every backward pass.

Rank r seeds with seed + r (``determinism.apply``), so each rank's envs and sampling differ.
Rank 0 writes the run dir as a single-process run does; rank r > 0 writes only its manifest and
fingerprints, in ``<run_dir>/ranks/<r>/``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig

from trainers.run_config import ConfigError

SUPPORTED_TRAINERS = ("rl_games", "rsl_rl", "skrl")
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
RANKS_DIR = "ranks"
LAUNCH_HINT = "torchrun --nproc-per-node=2 --no-python seedlock-train distributed=true trainer=rsl_rl"
T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run: rank 0 of 1 for a single-process run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None  # None: no process group (a single-process run)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def files_dir(self, run_dir: Path) -> Path:
        """Where this rank writes its manifest and fingerprints."""
        return run_dir if self.is_main else run_dir / RANKS_DIR / str(self.rank)

    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "local_rank": self.local_rank, "world_size": self.world_size, "backend": self.backend}


SINGLE_PROCESS = Ranks()


def ranks_for(cfg: DictConfig) -> Ranks:
    """This process's ranks from torchrun's environment, checked against ``distributed=``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if not cfg.distributed:
        if world_size > 1:
            raise ConfigError(
                f"distributed=false, but this process was started as one of WORLD_SIZE={world_size} "
                "(by torchrun): every process would train the same run on its own. Add distributed=true, "
                "or start seedlock-train without torchrun."
            )
        return SINGLE_PROCESS
    trainer = str(cfg.trainer.name)
    if trainer not in SUPPORTED_TRAINERS:
        raise ConfigError(
            f"distributed=true is not available for trainer={trainer}: Stable-Baselines3 has no distributed "
            f"PPO (its update runs in one process). Distributed training works with trainer="
            f"{', '.join(SUPPORTED_TRAINERS)}; to use several processes with SB3, run seeds in parallel as a "
            "sweep: seedlock-train -m hydra/launcher=joblib trainer=sb3 seed=1,2,3."
        )
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f"distributed=true needs the process to be started by torchrun, which sets {', '.join(TORCHRUN_ENV)} "
            f"({', '.join(missing)} not set). Start it as: {LAUNCH_HINT}"
        )
    if cfg.checkpoint:
        raise ConfigError(
            f"checkpoint={cfg.checkpoint} with distributed=true: continuing a distributed run is not supported "
            "(its checkpoints hold rank 0's envs and RNG states only, so the other ranks could not continue "
            "as they were). Start a new distributed run, or continue it in one process with distributed=false."
        )
    device = str(cfg.device)
    return Ranks(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        world_size=world_size,
        backend="gloo" if device == "cpu" else "cpu:gloo,cuda:nccl",
    )


def start(cfg: DictConfig, ranks: Ranks) -> None:
    """Join the process group; a CUDA run's rank uses ``cuda:<LOCAL_RANK>`` (``device=`` becomes that).

    Starting the group does not start CUDA (NCCL connects at the first collective), so
    ``determinism.apply`` after it still comes before CUDA initialises.
    """
    if ranks.backend is None:
        return
    if str(cfg.device).startswith("cuda"):
        cfg.device = f"cuda:{ranks.local_rank}"
    torch.distributed.init_process_group(backend=ranks.backend, rank=ranks.rank, world_size=ranks.world_size)


FINISH_TIMEOUT = timedelta(minutes=2)  # how long a finished rank waits for the others at the end


def stop(ranks: Ranks, finished: bool = False) -> None:
    """Leave the process group. A rank that ``finished`` first waits for every rank at a barrier,
    so no rank tears gloo down while another still talks to it (which can abort that rank with
    "terminate called without an active exception" as it exits). A rank that failed skips it:
    the others may never arrive."""
    if ranks.backend is None or not torch.distributed.is_initialized():
        return
    if finished:
        if ranks.backend == "gloo":
            torch.distributed.monitored_barrier(timeout=FINISH_TIMEOUT)  # names a rank that never came
        else:
            torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def agree(ranks: Ranks, decide: Callable[[], T]) -> T:
    """Rank 0 decides (a run dir, a random seed) and every rank gets its answer, or its error: a
    rank never waits for a rank 0 that has already failed."""
    if not ranks.is_distributed:
        return decide()
    outcome: list[Any] = [None]
    if ranks.is_main:
        try:
            outcome[0] = ("value", decide())
        except Exception as error:  # noqa: BLE001 - every rank raises it, below
            outcome[0] = ("error", error)
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@contextlib.contextmanager
def torchrun_env_hidden() -> Iterator[None]:
    """Hide torchrun's variables while a library that reads them at import (skrl: it would start
    an NCCL group as it is imported) is imported; seedlock hands it the ranks afterwards."""
    saved = {name: os.environ.pop(name) for name in TORCHRUN_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)

