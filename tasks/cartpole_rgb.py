"""CartPole observed through a camera: the embedded counterpart of Isaac Lab's
``Isaac-Cartpole-RGB-Camera-Direct-v0``.

The physics, rewards, resets and episode statistics are :mod:`tasks.cartpole`'s; only the
observation changes: ``frame_stack`` RGB frames of a side-on camera, ``frame_interval`` steps
apart, stacked on the channel axis: ``(N, 3·frame_stack, height, width)`` (64×32 by default)
float32, each frame less its mean per channel as Isaac Lab's camera task does. Isaac Lab observes
one frame; one frame holds no velocity, so the default stacks two (as Atari agents stack frames);
``+task.env.frame_stack=1`` gives Isaac Lab's observation.

A new frame is drawn after every physics step; an env that resets has its whole stack filled
with its first frame, so nothing of an episode leaks into the next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import torch

from tasks.cartpole import CartpoleConfig, CartpoleEnv
from tasks.rasterizer import Camera, CartpoleRasterizer, RenderSettings, to_uint8_image

GIF_NAME = "policy_view.gif"
GIF_SCALE = 4  # each pixel drawn as a 4×4 block, so a 64×64 view is visible


@dataclass(frozen=True)
class CartpoleRgbConfig(CartpoleConfig):
    """CartPole's parameters plus the camera's."""

    # [px]. Isaac Lab's camera task renders 100×100; the rail is wide and the pole short, so a 2:1
    # view of the whole rail wastes no pixels on sky and halves the CNN's work on a CPU.
    width: int = 64
    height: int = 32
    initial_pole_angle_range: tuple[float, float] = (-0.125, 0.125)  # [π rad], Isaac Lab's camera task's
    frame_stack: int = 2
    # Steps between the stacked frames. One step (1/60 s) moves a swinging pole's tip a fifth of a
    # pixel, too little to see a velocity in; four steps apart it moves about a pixel.
    frame_interval: int = 4
    # Isaac Lab's normalization: subtract each frame's mean per colour channel, so the policy sees
    # the cart and pole against a background near zero (values in [-1, 1]).
    subtract_mean: bool = True
    # Keep env 0's last N frames and write them to <run_dir>/policy_view.gif at the end (0: off).
    record_frames: int = 0
    # The camera step keeps host-side state (the ring's head) and resets by index, so it is not captured.
    cuda_graph: bool = False


class CartpoleRgbEnv(CartpoleEnv):
    """``num_envs`` cart-poles, observed as stacked camera frames."""

    def __init__(
        self, num_envs: int, seed: int, device: str | torch.device = "cpu",
        config: CartpoleRgbConfig | None = None, render: RenderSettings | None = None,
    ) -> None:
        config = config or CartpoleRgbConfig()
        if config.frame_stack < 1 or config.frame_interval < 1 or config.width < 8 or config.height < 8:
            raise ValueError(
                f"task.env frame_stack={config.frame_stack}, frame_interval={config.frame_interval}, "
                f"width={config.width}, height={config.height} are not valid: frame_stack and frame_interval "
                "must be >= 1 and the image at least 8×8 pixels."
            )
        if config.cuda_graph:
            raise ValueError(
                "task.env cuda_graph=true is not valid for cartpole_rgb: its camera step cannot be captured "
                "in a CUDA graph (the frame ring's head lives on the host). Valid choice: cuda_graph=false."
            )
        self.render_settings = render or RenderSettings()
        self.rasterizer = CartpoleRasterizer(
            Camera(width=config.width, height=config.height), self.render_settings, torch.device(device)
        )
        # every frame since the oldest one observed; observations() picks every frame_interval-th
        self.history_length = (config.frame_stack - 1) * config.frame_interval + 1
        # A ring of history_length slots of 3 channels, written in place one slot per step: shifting
        # the whole history every step copied all of it, which made 4096 envs slower than 256.
        # Slot ``self.head`` holds the oldest frame, the slot before it the newest.
        self.head = 0
        self.ring = torch.zeros(
            num_envs, 3 * self.history_length, config.height, config.width, dtype=self.render_settings.dtype,
            device=device,
        ).contiguous(memory_format=self.render_settings.memory_format)
        # Row h: the ring's channels in age order (oldest first) while the head is at slot h, built once
        # on the env's device, so no step creates an index on the host.
        ages = torch.arange(self.history_length)
        slots_by_age = (ages.unsqueeze(1) + ages) % self.history_length  # [head, age] -> slot
        self.channels_by_age = (3 * slots_by_age.unsqueeze(2) + torch.arange(3)).flatten(1).to(device)
        observed = torch.arange(0, self.history_length, config.frame_interval)
        self.observed_channels = (3 * slots_by_age[:, observed].unsqueeze(2) + torch.arange(3)).flatten(1).to(device)
        channels = 3 * config.frame_stack
        self.recording: deque[np.ndarray] = deque(maxlen=config.record_frames)
        super().__init__(num_envs, seed, device, config)
        low = -1.0 if config.subtract_mean else 0.0
        self.observation_space = gymnasium.spaces.Box(
            low, 1.0, shape=(channels, config.height, config.width), dtype=np.float32
        )

    @property
    def num_obs(self) -> int:
        """The number of values in one observation (the image's C·H·W)."""
        return int(np.prod(self.observation_space.shape))

    def observations(self) -> torch.Tensor:
        """The stacked frames, oldest first, as float32 in the renderer's memory layout.

        index_select copies the observed slots into a new tensor, so the ring's in-place writes
        never change an observation handed out before."""
        frames = self.ring.index_select(1, self.observed_channels[self.head]).to(torch.float32)
        if self.cfg.subtract_mean:
            frames = frames - frames.mean(dim=(2, 3), keepdim=True)
        return frames.contiguous(memory_format=self.render_settings.memory_format)

    def history(self) -> torch.Tensor:
        """A copy of every env's frame history in age order (oldest first), ``(N, 3·history_length, H, W)``."""
        return self.ring.index_select(1, self.channels_by_age[self.head]).contiguous(
            memory_format=self.render_settings.memory_format
        )

    def state_dict(self) -> dict[str, object]:
        # the ordered history, not the ring, so checkpoints do not depend on where the head stands
        return {**super().state_dict(), "frames": self.history()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ring = state["frames"].to(self.device).clone().contiguous(memory_format=self.render_settings.memory_format)
        self.head = 0  # the saved history is in age order: slot 0 holds the oldest frame

    def _after_physics(self) -> None:
        """Write the frame of the new state over every env's oldest frame."""
        frame = self._render(slice(None))
        # In place is safe: observations() hands out copies (index_select), never views of the ring.
        self.ring[:, 3 * self.head : 3 * self.head + 3] = frame
        self.head = (self.head + 1) % self.history_length
        if self.recording.maxlen:
            self.recording.append(to_uint8_image(frame[0]))

    def _reset_rows(self, rows: torch.Tensor) -> None:
        """Reset the physics, then fill the reset envs' stacks with their first frame."""
        super()._reset_rows(rows)
        ids = rows.nonzero().flatten()
        if ids.numel():
            first = self._render(ids).repeat(1, self.history_length, 1, 1)
            # in place is safe: an observation handed out before the reset is a copy, so it keeps its frames
            self.ring.index_copy_(0, ids, first)

    def _render(self, rows: slice | torch.Tensor) -> torch.Tensor:
        cart_pos, _, pole_angle, _ = self.state[rows].unbind(dim=1)
        return self.rasterizer.render(cart_pos, pole_angle)

    def render_frame(self) -> np.ndarray:
        """Env 0's camera: the latest frame its policy sees, each pixel a GIF_SCALE square (seedlock-play's GIF)."""
        newest = 3 * ((self.head - 1) % self.history_length)
        frame = to_uint8_image(self.ring[0, newest : newest + 3])
        return np.repeat(np.repeat(frame, GIF_SCALE, axis=0), GIF_SCALE, axis=1)

    def save_recording(self, run_dir: Path) -> Path | None:
        """Write the recorded frames of env 0 (what its policy saw last) as an animated GIF."""
        if not self.recording:
            return None
        return write_gif(list(self.recording), run_dir / GIF_NAME, frame_ms=round(1000 * self.cfg.sim_dt * self.cfg.decimation))


def write_gif(frames: list[np.ndarray], path: Path, frame_ms: int) -> Path:
    """An animated GIF of (H, W, 3) uint8 frames, each pixel scaled up ``GIF_SCALE`` times."""
    from PIL import Image  # only the recording needs Pillow

    images = [Image.fromarray(frame).resize((frame.shape[1] * GIF_SCALE, frame.shape[0] * GIF_SCALE), Image.NEAREST) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path

