"""The pixel CartPole and its rasterizer: what is drawn where, the frame stack across resets,
the renderer settings, state for resuming, and the GIF of what the policy sees."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from tasks.cartpole_rgb import GIF_NAME, GIF_SCALE, CartpoleRgbConfig, CartpoleRgbEnv
from tasks.rasterizer import BACKGROUND, CART, POLE, Camera, CartpoleRasterizer, RenderSettings

CAMERA = Camera(width=64, height=32)


def column_of(x_m: float) -> int:
    return int(CAMERA.width / 2 + x_m * CAMERA.pixels_per_m)


def cart_row() -> int:
    """A row through the cart's body, below the rail and the pole's pivot."""
    return int(CAMERA.height * (1.0 - CAMERA.rail_height) + 0.07 * CAMERA.pixels_per_m)  # 7 cm below the rail


def pole_likeness(pixels: torch.Tensor) -> torch.Tensor:
    """How close each (3, ...) pixel is to the pole's colour: 1 exactly, 0 far."""
    return 1.0 - (pixels - torch.tensor(POLE).view(3, *([1] * (pixels.dim() - 1)))).abs().amax(dim=0)


def rasterizer(**settings: object) -> CartpoleRasterizer:
    return CartpoleRasterizer(CAMERA, RenderSettings(**settings), torch.device("cpu"))


def test_the_cart_is_drawn_where_it_is_and_the_sky_is_background() -> None:
    image = rasterizer().render(torch.tensor([-2.0, 1.5]), torch.zeros(2))
    assert image.shape == (2, 3, 32, 64) and image.dtype == torch.float32
    for env, x in enumerate((-2.0, 1.5)):
        assert torch.allclose(image[env, :, cart_row(), column_of(x + 0.15)], torch.tensor(CART), atol=1e-6)
        assert torch.allclose(image[env, :, 2, 2], torch.tensor(BACKGROUND))
    # the other env's cart is not in this one's image
    assert torch.allclose(image[0, :, cart_row(), column_of(1.65)], torch.tensor(BACKGROUND), atol=1e-6)


def test_the_pole_leans_the_way_its_angle_says() -> None:
    upright, right = rasterizer().render(torch.zeros(2), torch.tensor([0.0, math.pi / 2 - 0.05]))
    high_up = cart_row() - int(0.8 * CAMERA.pixels_per_m)  # a row only an upright pole reaches
    assert pole_likeness(upright[:, high_up, column_of(-0.1) : column_of(0.1) + 1]).max() > 0.5  # pole straddles 2 columns
    assert pole_likeness(right[:, high_up]).max() < 0.3
    lying = slice(cart_row() - 4, cart_row() - 1)  # just above the cart: a pole lying right covers x in (0.2, 1)
    assert pole_likeness(right[:, lying, column_of(0.4) : column_of(0.8)]).amax(dim=0).min() > 0.5
    assert pole_likeness(right[:, lying, : column_of(-0.2)]).max() < 0.3


def test_supersampling_smooths_edges_and_one_sample_does_not() -> None:
    hard = rasterizer(supersampling=1).render(torch.tensor([0.03]), torch.tensor([0.3]))
    smooth = rasterizer(supersampling=4).render(torch.tensor([0.03]), torch.tensor([0.3]))
    palette = torch.tensor((BACKGROUND, CART, POLE, (0.45, 0.45, 0.45)))
    hard_colors = hard[0].permute(1, 2, 0).reshape(-1, 1, 3)
    assert ((hard_colors - palette).abs().amax(dim=2).amin(dim=1) < 1e-6).all()  # every pixel one colour
    smooth_colors = smooth[0].permute(1, 2, 0).reshape(-1, 1, 3)
    assert ((smooth_colors - palette).abs().amax(dim=2).amin(dim=1) > 1e-3).any()  # blended edges


def test_precision_and_layout_follow_the_settings() -> None:
    fast = rasterizer(precision="float16", channels_last=True).render(torch.zeros(3), torch.zeros(3))
    exact = rasterizer().render(torch.zeros(3), torch.zeros(3))
    assert fast.dtype == torch.float16 and fast.is_contiguous(memory_format=torch.channels_last)
    assert exact.dtype == torch.float32 and exact.is_contiguous()
    assert torch.allclose(fast.float(), exact, atol=1e-3)


@pytest.mark.parametrize("settings", [{"supersampling": 0}, {"precision": "bfloat8"}])
def test_bad_settings_name_the_key(settings: dict) -> None:
    with pytest.raises(ValueError, match=f"renderer.embedded.{next(iter(settings))}"):
        RenderSettings(**settings)


def test_rendering_is_a_pure_function_of_the_state() -> None:
    positions, angles = torch.linspace(-2.5, 2.5, 32), torch.linspace(-1.2, 1.2, 32)
    first = rasterizer().render(positions, angles)
    again = rasterizer().render(positions.clone(), angles.clone())
    assert torch.equal(first, again)
    one_by_one = torch.cat([rasterizer().render(positions[i : i + 1], angles[i : i + 1]) for i in range(32)])
    assert torch.equal(first, one_by_one)  # no env's image depends on the batch it is drawn in


def make_env(num_envs: int = 8, **config: object) -> CartpoleRgbEnv:
    return CartpoleRgbEnv(num_envs, seed=3, config=CartpoleRgbConfig(**config))


def test_observations_stack_frames_oldest_first() -> None:
    env = make_env(frame_stack=3, frame_interval=1, subtract_mean=False)
    assert env.observations().shape == (8, 9, 32, 64) and env.num_obs == 9 * 32 * 64
    before = env.observations()
    result = env.step(torch.ones(8, 1))
    assert torch.equal(result.obs[:, :6], before[:, 3:])  # the stack shifted by one frame
    cart_pos, _, pole_angle, _ = env.state.unbind(dim=1)
    assert torch.equal(result.obs[:, 6:], env.rasterizer.render(cart_pos, pole_angle))


def test_stacked_frames_are_frame_interval_steps_apart() -> None:
    env = make_env(frame_stack=2, frame_interval=3, subtract_mean=False)
    drawn = []
    for _ in range(4):
        env.step(torch.full((8, 1), 0.5))
        cart_pos, _, pole_angle, _ = env.state.unbind(dim=1)
        drawn.append(env.rasterizer.render(cart_pos, pole_angle))
    obs = env.observations()
    assert obs.shape == (8, 6, 32, 64)
    assert torch.equal(obs[:, :3], drawn[0]) and torch.equal(obs[:, 3:], drawn[3])


def test_frames_are_centred_per_channel_as_isaac_lab_does() -> None:
    env = make_env()
    obs = env.step(torch.zeros(8, 1)).obs
    assert obs.mean(dim=(2, 3)).abs().max() < 1e-5
    assert env.observation_space.low.min() == -1.0 and obs.min() >= -1.0 and obs.max() <= 1.0


def test_a_reset_env_starts_its_stack_from_its_first_frame() -> None:
    env = make_env(frame_stack=2)
    for _ in range(40):
        result = env.step(torch.ones(8, 1))  # full push: carts leave the rail and reset
        done = result.terminated | result.truncated
        if done.any():
            break
    assert done.any()
    rows = done.nonzero().flatten()
    assert torch.equal(result.obs[rows, :3], result.obs[rows, 3:])
    assert not torch.equal(result.final_obs[rows], result.obs[rows])  # the last frame of the episode


def test_state_dict_restores_the_frames() -> None:
    env, twin = make_env(), make_env()
    for _ in range(5):
        env.step(torch.rand(8, 1, generator=torch.Generator().manual_seed(1)))
    twin.load_state_dict(env.state_dict())
    assert torch.equal(twin.observations(), env.observations())
    action = torch.full((8, 1), 0.3)
    assert torch.equal(twin.step(action).obs, env.step(action).obs)


def test_recording_writes_a_gif_of_env_0(tmp_path) -> None:
    env = make_env(record_frames=6, width=32, height=32)
    for _ in range(10):
        env.step(torch.ones(8, 1))  # the cart moves every frame (Pillow merges repeated frames)
    gif = env.save_recording(tmp_path)
    assert gif == tmp_path / GIF_NAME
    with Image.open(gif) as image:
        assert image.n_frames == 6 and image.size == (32 * GIF_SCALE, 32 * GIF_SCALE)


def test_no_recording_without_record_frames(tmp_path) -> None:
    env = make_env()
    env.step(torch.zeros(8, 1))
    assert env.save_recording(tmp_path) is None and not (tmp_path / GIF_NAME).exists()
