"""What seedlock's run code and the trainer adapters use of a task, whatever its backend.

``Task`` is what every task is: the embedded tasks, gymnasium ids and Isaac Lab's envs. A run's
bookkeeping needs no more (counts, device, episode statistics for the fingerprints, state for
checkpoints). ``BatchedTask`` adds the batched step the adapters' own vec-env wrappers drive; an
Isaac Lab task is stepped through Isaac Lab's own wrappers instead.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium
import torch

from determinism.fingerprint import ObservationDigests
from tasks.cartpole import EpisodeStatistics, StepResult


@runtime_checkable
class Task(Protocol):
    @property
    def num_envs(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def max_episode_length(self) -> int: ...

    @property
    def statistics(self) -> EpisodeStatistics: ...

    @property
    def observation_digests(self) -> ObservationDigests:
        """Each step's observations, digested for the fingerprints (off unless a run turns it on)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the task, for a continued run to be the same run."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put the task back; raises ValueError where the backend cannot (named in the message)."""
        ...


@runtime_checkable
class BatchedTask(Task, Protocol):
    """A task seedlock steps itself: all envs in one call, torch tensors in and out."""

    observation_space: gymnasium.spaces.Box
    action_space: gymnasium.spaces.Box

    @property
    def num_obs(self) -> int: ...

    @property
    def num_actions(self) -> int: ...

    def observations(self) -> torch.Tensor: ...

    def step(self, actions: torch.Tensor) -> StepResult: ...
