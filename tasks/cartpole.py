"""Batched CartPole in pure PyTorch: every env is one row of a tensor, on CPU or CUDA.

It mirrors Isaac Lab's ``Isaac-Cartpole-Direct-v0`` task: the same observation layout
``[pole_angle, pole_vel, cart_pos, cart_vel]``, one continuous action scaled to a force, physics
at dt = 1/120 s with decimation 2, 5 s episodes (300 steps), resets when the cart leaves
|x| > 3 m or the pole falls past 90°, the pole starting anywhere in ±0.25π rad, and the same
reward terms (alive, termination, pole angle², |cart vel|, |pole vel|).

The physics is classic cart-pole (Barto, Sutton & Anderson 1983, with Florian's corrected
equations), integrated with semi-implicit Euler, plus the viscous damping on the cart's slider
that Isaac Lab's cartpole actuator applies. Isaac Lab's own physics engine is not reproduced.

Time-outs and terminations are kept apart (``truncated`` vs ``terminated``), because PPO must
bootstrap from the value of a state at a time-out but not at a failure. Envs reset themselves;
the observation of the last step of an episode is kept in ``StepResult.final_obs``.

On CUDA the step is captured once in a CUDA graph and replayed (``cuda_graph``): the same kernels
on the same buffers, so the same results bit for bit, for one launch instead of about a hundred.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch

from determinism import make_generator
from determinism.fingerprint import ObservationDigests


# observation layout [pole_angle, pole_vel, cart_pos, cart_vel] from the state's columns
# [cart_pos, cart_vel, pole_angle, pole_vel]
OBS_COLUMNS = (2, 3, 0, 1)


@dataclass(frozen=True)
class CartpoleConfig:
    """Physical and episode parameters; defaults are Isaac Lab's CartpoleEnvCfg where it has one."""

    sim_dt: float = 1.0 / 120.0
    decimation: int = 2
    episode_length_s: float = 5.0
    action_scale: float = 100.0  # [N] per unit action
    max_cart_pos: float = 3.0  # [m]
    initial_pole_angle_range: tuple[float, float] = (-0.25, 0.25)  # [π rad]
    cart_mass: float = 1.0  # [kg]
    pole_mass: float = 0.1  # [kg]
    pole_half_length: float = 0.5  # [m]
    cart_damping: float = 10.0  # [N s/m], the damping of Isaac Lab's cart actuator
    gravity: float = 9.81  # [m/s²]
    rew_scale_alive: float = 1.0
    rew_scale_terminated: float = -2.0
    rew_scale_pole_pos: float = -1.0
    rew_scale_cart_vel: float = -0.01
    rew_scale_pole_vel: float = -0.005
    # On CUDA, capture the step once in a CUDA graph and replay it: one launch instead of about a
    # hundred small kernels, whose launches bound the step at any batch size. Same results, bit for bit.
    cuda_graph: bool = True

    @property
    def max_episode_length(self) -> int:
        return math.ceil(round(self.episode_length_s / (self.sim_dt * self.decimation), 6))


@dataclass
class StepResult:
    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor  # the observation before the auto-reset, for every row


class EpisodeStatistics:
    """Returns and lengths of the last ``window`` finished episodes, the same for every library.

    A step only notes, on the env's device, which envs finished and their running returns and
    lengths; the finished episodes are read back in one copy when asked (``mean_return``,
    ``mean_length``, ``state_dict``) or every ``flush_steps`` steps. Reading them back every
    step would make each GPU step wait for the GPU, with three device-to-host copies.
    """

    def __init__(self, num_envs: int, device: torch.device, window: int = 100, flush_steps: int = 64) -> None:
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self._running_return = torch.zeros(num_envs, device=device)
        self._flush_steps = flush_steps
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (done, return, length) per step

    def record(self, reward: torch.Tensor, done: torch.Tensor, length: torch.Tensor) -> None:
        self._running_return += reward
        self._pending.append((done.clone(), self._running_return.clone(), length.clone()))
        self._running_return.masked_fill_(done, 0.0)
        if len(self._pending) >= self._flush_steps:
            self._flush()

    def _flush(self) -> None:
        """The noted episodes into the windows, in the order they finished (by step, then env)."""
        if not self._pending:
            return
        done, returns, lengths = (torch.stack(column) for column in zip(*self._pending))
        self._pending.clear()
        steps, envs = done.nonzero(as_tuple=True)
        self.returns.extend(returns[steps, envs].tolist())
        self.lengths.extend(lengths[steps, envs].tolist())

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._flush()
        return {
            "returns": torch.tensor(list(self.returns), dtype=torch.float64),
            "lengths": torch.tensor(list(self.lengths), dtype=torch.int64),
            "running_return": self._running_return.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._pending.clear()
        self.returns.clear()
        self.returns.extend(state["returns"].tolist())
        self.lengths.clear()
        self.lengths.extend(state["lengths"].tolist())
        self._running_return = state["running_return"].to(self._running_return.device).clone()

    def mean_return(self) -> float | None:
        self._flush()
        return float(np.mean(self.returns)) if self.returns else None

    def mean_length(self) -> float | None:
        self._flush()
        return float(np.mean(self.lengths)) if self.lengths else None


class CartpoleEnv:
    """``num_envs`` cart-poles stepped together; actions in [-1, 1] (clipped)."""

    def __init__(
        self, num_envs: int, seed: int, device: str | torch.device = "cpu",
        config: CartpoleConfig | None = None,
    ) -> None:
        self.cfg = config or CartpoleConfig()
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_length = self.cfg.max_episode_length
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.generator = make_generator(seed, self.device)
        # state columns: cart_pos, cart_vel, pole_angle, pole_vel
        self.state = torch.zeros(num_envs, 4, device=self.device)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.statistics = EpisodeStatistics(num_envs, self.device)
        self.observation_digests = ObservationDigests()
        self._obs_columns = torch.tensor(OBS_COLUMNS, device=self.device)
        # the CUDA graph of the step, its static buffers and outputs (see _capture)
        self._warmed_up = False
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_actions = self._graph_state = self._graph_length = torch.empty(0)
        self._graph_outputs: tuple[StepResult, torch.Tensor, torch.Tensor] | None = None
        self._reset_rows(torch.ones(num_envs, dtype=torch.bool, device=self.device))

    @property
    def num_actions(self) -> int:
        return int(self.action_space.shape[0])

    @property
    def num_obs(self) -> int:
        return int(self.observation_space.shape[0])

    def state_dict(self) -> dict[str, object]:
        """Everything a continued run needs to step on exactly as this one would: the physics
        state, episode counters, the reset generator's state and the episode statistics."""
        return {
            "state": self.state.clone(),
            "episode_length": self.episode_length.clone(),
            "generator": self.generator.get_state(),
            "statistics": self.statistics.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["state"].shape) != tuple(self.state.shape):
            raise ValueError(
                f"the saved task state holds {state['state'].shape[0]} envs, this task has {self.num_envs}"
            )
        self.state = state["state"].to(self.device).clone()
        self.episode_length = state["episode_length"].to(self.device).clone()
        self.generator.set_state(state["generator"].cpu())
        self.statistics.load_state_dict(state["statistics"])

    def render_frame(self) -> np.ndarray:
        """Env 0 seen side-on, 160×80 RGB (the pixel task's rasterizer), for seedlock-play's GIF."""
        from tasks.rasterizer import Camera, CartpoleRasterizer, RenderSettings, to_uint8_image

        if getattr(self, "_viewer", None) is None:
            self._viewer = CartpoleRasterizer(Camera(width=160, height=80), RenderSettings(), self.device)
        cart_pos, _, pole_angle, _ = self.state[:1].unbind(dim=1)
        return to_uint8_image(self._viewer.render(cart_pos, pole_angle)[0])

    @property
    def frame_seconds(self) -> float:
        return self.cfg.sim_dt * self.cfg.decimation

    def observations(self) -> torch.Tensor:
        return self.state.index_select(1, self._obs_columns)

    def step(self, actions: torch.Tensor) -> StepResult:
        actions = actions.reshape(self.num_envs, -1)[:, 0]
        if self._graph is not None or self._graph_wanted():
            result, done, length = self._replay(actions)
        else:
            result, done, length = self._advance(self._force(actions))
        self.statistics.record(result.reward, done, length)
        self.observation_digests.note(result.obs, actions, result.reward)
        return result

    def _force(self, actions: torch.Tensor) -> torch.Tensor:
        return self.cfg.action_scale * actions.clamp(-1.0, 1.0).to(self.device, torch.float32)

    def _advance(self, force: torch.Tensor) -> tuple[StepResult, torch.Tensor, torch.Tensor]:
        """Physics, rewards and resets of one step: the step's result, which envs finished, and
        every env's episode length before the resets. Reassigns ``state`` and ``episode_length``
        (never writes them in place), so a CUDA graph can capture it between static buffers."""
        for _ in range(self.cfg.decimation):
            self._integrate(force)
        self._after_physics()
        length = self.episode_length = self.episode_length + 1
        cart_pos, cart_vel, pole_angle, pole_vel = self.state.unbind(dim=1)
        terminated = (cart_pos.abs() > self.cfg.max_cart_pos) | (pole_angle.abs() > math.pi / 2)
        truncated = (self.episode_length >= self.max_episode_length) & ~terminated
        reward = self._reward(terminated)
        final_obs = self.observations()
        done = terminated | truncated
        self._reset_rows(done)
        return StepResult(self.observations(), reward, terminated, truncated, final_obs), done, length

    def _graph_wanted(self) -> bool:
        return self.cfg.cuda_graph and self.device.type == "cuda"

    def _replay(self, actions: torch.Tensor) -> tuple[StepResult, torch.Tensor, torch.Tensor]:
        """The step as a CUDA graph: the first step runs eagerly (a warm-up, as capture needs),
        the second captures, every step replays. Outputs are copied out of the graph's buffers,
        which the next replay overwrites."""
        if self._graph is None:
            if not self._warmed_up:
                self._warmed_up = True
                return self._advance(self._force(actions))
            self._capture()
        assert self._graph is not None and self._graph_outputs is not None
        with torch.no_grad(), torch.cuda.device(self.device):
            self._graph_actions.copy_(actions)
            # load_state_dict and rsl_rl's episode_length_buf assign new tensors: copy them in
            if self.state is not self._graph_state:
                self._graph_state.copy_(self.state)
                self.state = self._graph_state
            if self.episode_length is not self._graph_length:
                self._graph_length.copy_(self.episode_length)
                self.episode_length = self._graph_length
            self._graph.replay()
            result, done, length = self._graph_outputs
            copied = StepResult(
                result.obs.clone(), result.reward.clone(), result.terminated.clone(), result.truncated.clone(),
                result.final_obs.clone(),
            )
        return copied, done, length

    def _capture(self) -> None:
        """Capture ``_advance`` from static action, state and episode-length buffers; the graph
        ends by copying the new state and lengths back into them. The reset generator is
        registered with the graph, so every replay draws fresh numbers and advances its offset
        as an eager step would (checkpoints see the same generator state)."""
        with torch.inference_mode(False), torch.no_grad(), torch.cuda.device(self.device):
            self._graph_actions = torch.zeros(self.num_envs, device=self.device)
            self._graph_state = self.state.clone()
            self._graph_length = self.episode_length.clone()
            self.state, self.episode_length = self._graph_state, self._graph_length
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self._advance(self._force(self._graph_actions))
                self._graph_state.copy_(self.state)
                self._graph_length.copy_(self.episode_length)
            self.state, self.episode_length = self._graph_state, self._graph_length
        self._graph, self._graph_outputs = graph, outputs

    def _after_physics(self) -> None:
        """Called once per step after the physics, before rewards and resets (a camera renders here)."""

    def _integrate(self, force: torch.Tensor) -> None:
        cfg = self.cfg
        cart_pos, cart_vel, angle, angle_vel = self.state.unbind(dim=1)
        total_mass = cfg.cart_mass + cfg.pole_mass
        sin, cos = torch.sin(angle), torch.cos(angle)
        push = force - cfg.cart_damping * cart_vel
        temp = (push + cfg.pole_mass * cfg.pole_half_length * angle_vel.square() * sin) / total_mass
        angle_acc = (cfg.gravity * sin - cos * temp) / (
            cfg.pole_half_length * (4.0 / 3.0 - cfg.pole_mass * cos.square() / total_mass)
        )
        cart_acc = temp - cfg.pole_mass * cfg.pole_half_length * angle_acc * cos / total_mass
        cart_vel = cart_vel + cfg.sim_dt * cart_acc
        angle_vel = angle_vel + cfg.sim_dt * angle_acc
        self.state = torch.stack(
            (cart_pos + cfg.sim_dt * cart_vel, cart_vel, angle + cfg.sim_dt * angle_vel, angle_vel), dim=1
        )

    def _reward(self, terminated: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        _, cart_vel, angle, angle_vel = self.state.unbind(dim=1)
        # alive or terminated: one of the two terms, exactly (the other is 0)
        return (
            torch.where(terminated, cfg.rew_scale_terminated, cfg.rew_scale_alive)
            + cfg.rew_scale_pole_pos * angle.square()
            + cfg.rew_scale_cart_vel * cart_vel.abs()
            + cfg.rew_scale_pole_vel * angle_vel.abs()
        )

    def _reset_rows(self, rows: torch.Tensor) -> None:
        """Reset the selected rows; draws one angle for *every* row and keeps the selected ones,
        so the generator advances by the same amount whichever envs reset."""
        low, high = (bound * math.pi for bound in self.cfg.initial_pole_angle_range)
        angles = torch.rand(self.num_envs, generator=self.generator, device=self.device) * (high - low) + low
        fresh = torch.zeros_like(self.state)
        fresh[:, 2] = angles
        self.state = torch.where(rows.unsqueeze(1), fresh, self.state)
        self.episode_length = self.episode_length.masked_fill(rows, 0)
