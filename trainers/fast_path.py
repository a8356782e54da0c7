"""``trainer.fast_path=true``: a rollout in which the library makes the host wait for the GPU at no
env step, the library's algorithm and hyperparameters unchanged.

A host sync (reading a value, an output sized by the data, a device-to-host copy) stops the CPU
from queueing the next kernels until the GPU has caught up, so every sync per env step exposes the
Python and launch time of the whole step (``bench/step_profile.py`` counts them). Each library's
per-step syncs are bookkeeping for its own console and TensorBoard scalars, or a NaN check:

- RSL-RL: its logger's episode returns (``dones.nonzero()`` and two ``.cpu()`` copies per step)
  are off, and its per-step NaN check (three ``.any()`` reads) becomes :class:`NanWatch`: the same
  check summed on the device every step and read once per iteration, with RSL-RL's message. On
  CUDA, PPO's act and each minibatch's forward and backward run as CUDA graphs
  (``trainers/rsl_rl_graphs.py``): the same kernels, launched as one.
- skrl: its per-step reward tracking (``.nonzero()``, ``.tolist()`` and three ``.item()`` per step)
  is off; its loss scalars stay. On CUDA, PPO's act and each minibatch's forward and backward run
  as CUDA graphs (``trainers/skrl_graphs.py``).
- rl_games: its rollout loop runs without the episode statistics it gathers at every step
  (``dones.nonzero()`` and the algo observer's copies); the model's inference and each minibatch's
  forward and backward run as CUDA graphs on CUDA (``trainers/rl_games_graphs.py``).

The fingerprints do not change (tested): the run's episode returns are seedlock's own, read once
per iteration. The libraries' own reward scalars in TensorBoard are what is given up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from omegaconf import DictConfig

SUPPORTED = ("rl_games", "rsl_rl", "skrl")
# Why a library's per-step syncs cannot be switched off without changing its own loop.
REFUSED = {
    "sb3": "SB3 keeps its rollout buffer in numpy, so every env step copies the actions to the host and "
           "the observations and rewards back (stable_baselines3/common/on_policy_algorithm.py, collect_rollouts); "
           "that is SB3's algorithm's storage, not bookkeeping",
}


class FastPathError(ValueError):
    """``trainer.fast_path=true`` for a library that cannot run it."""


def refuse_agent(trainer: str, reasons: list[str]) -> None:
    """Refuses, by name, what of an agent a library's CUDA-graph loop does not run (none: returns)."""
    if reasons:
        raise FastPathError(
            f"trainer.fast_path=true is not valid for this trainer={trainer} agent: its CUDA-graph loop cannot run "
            f"{'; '.join(reasons)}. Valid choices: trainer.fast_path=false, or an agent without these settings."
        )


def check_fast_path(cfg: DictConfig) -> bool:
    """Whether the run takes the fast path; refuses it by name for a library that has none."""
    if not cfg.trainer.get("fast_path", False):
        return False
    name = str(cfg.trainer.name)
    if name in REFUSED:
        raise FastPathError(
            f"trainer.fast_path=true is not valid for trainer={name}: {REFUSED[name]}. The fast path runs with "
            f"trainer={' or trainer='.join(SUPPORTED)}; for {name}, leave trainer.fast_path=false."
        )
    return True


class NanWatch:
    """RSL-RL's NaN check on the env's outputs, without a host sync per step: every step adds
    whether anything was NaN to a flag on the device; :meth:`check` reads it once."""

    MESSAGE = ("The environment returned NaN values in {what} during the iteration that just ended (seedlock's "
               "trainer.fast_path NaN check, read once per iteration). This usually indicates a bug in the "
               "environment's step() or reset() function.")

    def __init__(self, device: torch.device | str) -> None:
        self.seen = torch.zeros((), dtype=torch.bool, device=device)

    def note(self, *tensors: torch.Tensor) -> None:
        for tensor in tensors:
            if tensor.is_floating_point():
                self.seen |= torch.isnan(tensor).any()

    def check(self, what: str = "the observations or rewards") -> None:
        if bool(self.seen):
            raise ValueError(self.MESSAGE.format(what=what))

    @contextlib.contextmanager
    def explains_errors(self) -> Iterator[None]:
        """A library error raised after the env returned a NaN (before the iteration's check) is
        reported as that NaN, the cause, as the library's own per-step check would have."""
        try:
            yield
        except (RuntimeError, ValueError) as error:
            if bool(self.seen):
                raise ValueError(self.MESSAGE.format(what="the observations or rewards")) from error
            raise
