"""Fake ``isaaclab_tasks`` (tests only): registers the fake task ids with gymnasium on import, and,
like the real package, cannot be imported before Isaac Sim has been started."""

import gymnasium

from isaaclab.app.app_launcher import LAUNCHED

if not LAUNCHED:
    raise ImportError("isaaclab_tasks imported before AppLauncher started Isaac Sim")

FAKE_CARTPOLE = "Isaac-Fake-Cartpole-Direct-v0"
if FAKE_CARTPOLE not in gymnasium.registry:
    gymnasium.register(
        id=FAKE_CARTPOLE,
        entry_point="isaaclab_tasks.fake_cartpole:FakeCartpoleEnv",
        disable_env_checker=True,
        kwargs={"env_cfg_entry_point": "isaaclab_tasks.fake_cartpole:FakeCartpoleEnvCfg"},
    )
