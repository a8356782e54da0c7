"""The Isaac Sim experience files in kits/: valid TOML (.kit files are TOML), built on Isaac Lab's
headless rendering experience, and the deterministic one sets what makes rendering synchronous
and cache-free, each setting with a comment that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency tomli is the same parser
    import tomli as tomllib

from tests.support import compose_config

KITS = Path(__file__).resolve().parent.parent / "kits"
ISAACLAB_RENDERING = "isaaclab.python.headless.rendering"
DETERMINISTIC_SETTINGS = {
    "omni.replicator.asyncRendering": False,
    "app.renderer.waitIdle": True,
    "app.hydraEngine.waitIdle": True,
    "app.updateOrder.checkForHydraRenderComplete": 1000,
    "app.execution.debug.forceSerial": True,
    "rtx.raytracing.cached.enabled": False,
    "rtx.post.aa.op": 0,
    "rtx-transient.dlssg.enabled": False,
    "rtx.ecoMode.enabled": False,
    "rtx.directLighting.sampledLighting.enabled": False,
}


def _settings(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("renderer", ["default", "deterministic"])
def test_each_renderer_choice_names_a_kit_built_on_isaaclab_headless_rendering(renderer: str) -> None:
    kit = KITS / compose_config(f"renderer={renderer}").renderer.kit
    parsed = tomllib.loads(kit.read_text())
    assert parsed["dependencies"] == {ISAACLAB_RENDERING: {}}


def test_the_default_kit_adds_no_settings() -> None:
    assert "settings" not in tomllib.loads((KITS / compose_config().renderer.kit).read_text())


def test_the_deterministic_kit_sets_synchronous_cache_free_rendering_and_only_that() -> None:
    kit = KITS / compose_config("renderer=deterministic").renderer.kit
    assert _settings(tomllib.loads(kit.read_text())["settings"]) == DETERMINISTIC_SETTINGS


def test_every_deterministic_setting_says_why() -> None:
    lines = (KITS / compose_config("renderer=deterministic").renderer.kit).read_text().splitlines()
    settings_at = lines.index("[settings]")
    for number, line in enumerate(lines[settings_at + 1:], start=settings_at + 1):
        if line and not line.startswith("#"):
            assert lines[number - 1].startswith("# "), f"no comment above: {line}"
