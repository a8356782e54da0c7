"""A small batched rasterizer for cart-poles: one RGB image per env, in one set of tensor ops.

Every pixel is computed by *gathering*: each (super)sample point asks "am I inside the cart, on
the pole, on the rail?" from the state of its own env. Nothing is scattered or accumulated with
atomics, so the image is a pure function of the state on every device; the settings in
:class:`RenderSettings` decide only what is left free around that (see their comments).

The camera looks at the cart side-on, as Isaac Lab's Cartpole camera task does: a fixed
orthographic view of the rail, the cart and the pole, with the world's x to the right and up up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BACKGROUND = (0.92, 0.93, 0.96)
RAIL = (0.45, 0.45, 0.45)
CART = (0.18, 0.36, 0.72)
POLE = (0.90, 0.50, 0.12)
PRECISIONS = {"float32": torch.float32, "float16": torch.float16}
# On the CPU, envs drawn per batch: the pole test's temporaries, (envs, rows·s, cols·s) floats,
# stay a few MB and in cache; drawn all at once at 4096 envs they were 100 MB each and the
# per-env cost grew fivefold (bench/results/env_throughput_cpu.md). A GPU draws every env at once.
CPU_CHUNK_ENVS = 128


@dataclass(frozen=True)
class RenderSettings:
    """What the ``renderer`` group decides for the embedded renderer.

    - ``supersampling``: anti-aliasing samples per pixel and axis (2 = 4 samples, averaged). The
      average is a fixed-order mean over a fixed sample grid, so it never changes reproducibility,
      only how smooth the edges are; both renderer configs keep the same value.
    - ``precision``: the dtype frames are stored in (the frame history, the observations' values).
      ``float16`` halves the memory of the frames; rounding to it is exactly defined by IEEE 754,
      so it does not add run-to-run noise, but it changes the pixels, so runs with different
      precisions are different runs.
    - ``channels_last``: the memory layout of the observation tensor. On CUDA, channels-last
      input makes cuDNN choose NHWC convolution kernels, a different family from the NCHW ones,
      with their own (non-)determinism; ``renderer=deterministic`` keeps the plain NCHW layout
      that ``torch_deterministic=true`` was validated on.
    """

    supersampling: int = 2
    precision: str = "float32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.supersampling < 1:
            raise ValueError(f"renderer.embedded.supersampling={self.supersampling} is not valid: it must be >= 1.")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"renderer.embedded.precision={self.precision!r} is not valid; choose one of {', '.join(PRECISIONS)}."
            )

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass(frozen=True)
class Camera:
    """An orthographic side view: ``width_m`` metres of the rail across the image, centred on
    x = 0, with the rail ``rail_height`` of the way up from the bottom."""

    width: int = 64
    height: int = 32
    width_m: float = 6.8
    rail_height: float = 0.25

    @property
    def pixels_per_m(self) -> float:
        return self.width / self.width_m


@dataclass(frozen=True)
class CartpoleShape:
    """Sizes as drawn [m]; the pole is drawn thicker than a real one so it covers whole pixels."""

    cart_width: float = 0.5
    cart_height: float = 0.25
    pole_length: float = 1.0
    pole_width: float = 0.14
    rail_width: float = 0.05


class CartpoleRasterizer:
    """Draws ``(N, 3, H, W)`` images of cart-poles from their cart positions and pole angles.

    Each shape's coverage of a pixel is the fraction of its supersamples inside the shape; the
    shapes are then blended over the background back to front (rail, cart, pole). The cart and
    rail are axis-aligned, so their coverage is a product of a row and a column profile; only
    the pole needs a per-sample test, and only on the band of rows it can reach.
    """

    def __init__(
        self, camera: Camera, settings: RenderSettings, device: torch.device, shape: CartpoleShape | None = None
    ) -> None:
        self.camera = camera
        self.settings = settings
        self.shape = shape or CartpoleShape()
        self.device = device
        samples = settings.supersampling
        scale = 1.0 / camera.pixels_per_m
        # world coordinates of every sample point: columns (x) and rows (y, top row first)
        cols = (torch.arange(camera.width * samples, device=device) + 0.5) / samples
        rows = (torch.arange(camera.height * samples, device=device) + 0.5) / samples
        self.sample_x = (cols - camera.width / 2) * scale
        rail_row = camera.height * (1.0 - camera.rail_height)
        self.sample_y = (rail_row - rows) * scale
        pixel_y = (rail_row - torch.arange(camera.height, device=device) - 0.5) * scale
        # the pixel rows the pole can reach (with a pixel's margin): the band it is tested on
        pivot, reach = self.shape.cart_height / 2, self.shape.pole_length + self.shape.pole_width
        margin = 1.5 * scale
        band = ((pixel_y > pivot - reach - margin) & (pixel_y < pivot + reach + margin)).nonzero().flatten()
        self.band = slice(int(band[0]), int(band[-1]) + 1)
        self.band_y = self.sample_y[self.band.start * samples : self.band.stop * samples]
        self.rail_coverage = self._pool_rows((self.sample_y.abs() < self.shape.rail_width / 2).float())
        self.cart_rows = self._pool_rows((self.sample_y.abs() < self.shape.cart_height / 2).float())
        self.colors = {name: torch.tensor(color, device=device).view(1, 3, 1, 1) for name, color in
                       (("background", BACKGROUND), ("rail", RAIL), ("cart", CART), ("pole", POLE))}

    def render(self, cart_pos: torch.Tensor, pole_angle: torch.Tensor) -> torch.Tensor:
        """Images of ``cart_pos`` [m] and ``pole_angle`` [rad, 0 = upright], in the settings'
        dtype and memory layout, values in [0, 1]."""
        if self.device.type != "cpu" or cart_pos.shape[0] <= CPU_CHUNK_ENVS:
            return self._render(cart_pos, pole_angle)
        images = [self._render(*chunk) for chunk in zip(cart_pos.split(CPU_CHUNK_ENVS), pole_angle.split(CPU_CHUNK_ENVS))]
        return torch.cat(images).contiguous(memory_format=self.settings.memory_format)

    def _render(self, cart_pos: torch.Tensor, pole_angle: torch.Tensor) -> torch.Tensor:
        num, camera = cart_pos.shape[0], self.camera
        x = self.sample_x.unsqueeze(0) - cart_pos.unsqueeze(1)  # (N, W·s), relative to each cart
        cart_cols = self._pool_cols((x.abs() < self.shape.cart_width / 2).float())  # (N, W)
        cart_coverage = self.cart_rows.view(1, 1, -1, 1) * cart_cols.view(num, 1, 1, -1)
        image = self.colors["background"].expand(num, 3, camera.height, camera.width)
        image = blend(image, self.colors["rail"], self.rail_coverage.view(1, 1, -1, 1))
        image = blend(image, self.colors["cart"], cart_coverage)
        pole = self._pole_coverage(x, pole_angle)  # (N, 1, band rows, W)
        band = blend(image[:, :, self.band], self.colors["pole"], pole)
        image = torch.cat((image[:, :, : self.band.start], band, image[:, :, self.band.stop :]), dim=2)
        return image.to(self.settings.dtype).contiguous(memory_format=self.settings.memory_format)

    def _pole_coverage(self, x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Coverage of the pole, a segment from the pivot (the cart's top) to the tip drawn
        ``pole_width`` thick, over the band's pixels; ``x`` is (N, W·s) relative to each cart."""
        shape = self.shape
        direction_x = torch.sin(angle).view(-1, 1, 1)
        direction_y = torch.cos(angle).view(-1, 1, 1)
        px = x.unsqueeze(1)  # (N, 1, W·s)
        py = (self.band_y - shape.cart_height / 2).view(1, -1, 1)  # (1, R·s, 1), relative to the pivot
        along = (px * direction_x + py * direction_y).clamp(0.0, shape.pole_length)
        inside = (px - along * direction_x).square() + (py - along * direction_y).square() < (shape.pole_width / 2) ** 2
        return self._pool(inside.float().unsqueeze(1))

    def _pool(self, samples: torch.Tensor) -> torch.Tensor:
        """Average each pixel's s×s samples of an (N, 1, H·s, W·s) tensor (a fixed-order mean)."""
        s = self.settings.supersampling
        return samples if s == 1 else torch.nn.functional.avg_pool2d(samples, s)

    def _pool_rows(self, rows: torch.Tensor) -> torch.Tensor:
        s = self.settings.supersampling
        return rows.view(-1, s).mean(dim=1)

    def _pool_cols(self, cols: torch.Tensor) -> torch.Tensor:
        s = self.settings.supersampling
        return cols.view(cols.shape[0], -1, s).mean(dim=2)


def blend(image: torch.Tensor, color: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """``color`` over ``image`` where ``coverage`` (0..1) of the pixel is covered."""
    return image + (color - image) * coverage


def to_uint8_image(frame: torch.Tensor) -> np.ndarray:
    """A (3, H, W) frame in [0, 1] as an (H, W, 3) uint8 array."""
    return (frame.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
