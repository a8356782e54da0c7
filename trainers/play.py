"""``seedlock-play``: evaluate a trained policy, deterministically, and optionally film it.

    seedlock-play checkpoint=runs/cartpole_rsl_rl/<run>              # its latest checkpoint
    seedlock-play checkpoint=<run>/checkpoints/model_49.pt episodes=20 gif=cartpole.gif

The run's own ``config.yaml`` rebuilds the task and the policy; ``determinism.apply`` runs first,
as for training. Each of ``episodes`` envs plays its first episode with the policy's
deterministic action (the mean), and the mean ± std of those returns is printed (and written
as JSON with ``out=``). The same checkpoint and seed give the same numbers, every time. Nothing in
the run dir is written or changed; ``gif=``/``out=`` refuse to replace an existing file.
Other ``key=value`` arguments override the run's config (``device=cuda``, ``seed=7``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import determinism
import tasks
import trainers
from tasks.isaaclab import GIF_REFUSED, is_isaaclab
from tasks.task import BatchedTask
from trainers.interface import CheckpointError, TrainingRun, read_checkpoint_header, resolve_checkpoint
from trainers.device_check import check_device
from trainers.progress import ProgressBar, progress_enabled
from trainers.run_config import ConfigError

PLAY_KEYS = {"checkpoint": None, "episodes": 10, "gif": None, "out": None, "gif_frames": 300, "progress": "auto"}
EXIT_BAD_INPUT = 2
USER_ERRORS = (CheckpointError, ConfigError, determinism.SeedError, determinism.DeterminismError, tasks.TaskConfigError)


class PlayInputError(ValueError):
    """Bad seedlock-play input, said in one paragraph."""


@dataclass
class Evaluation:
    checkpoint: str
    episodes: int
    mean_return: float
    std_return: float
    returns: list[float]
    lengths: list[int]
    seed: int


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    try:
        options, overrides = parse_arguments(args)
        evaluation = play(options, overrides)
    except (PlayInputError, *USER_ERRORS) as error:
        print(f"seedlock-play: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(
        f"seedlock-play: {evaluation.episodes} episodes of {evaluation.checkpoint}: return "
        f"{evaluation.mean_return:.2f} ± {evaluation.std_return:.2f} (mean ± std; deterministic actions, seed {evaluation.seed})"
    )


def split_key_values(args: list[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The command's own ``key=value`` arguments (``defaults``' keys) apart from the rest; a
    checkpoint is required (seedlock-play's and seedlock-export's shared command line)."""
    options = dict(defaults)
    others = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise PlayInputError(f"{arg!r} is not key=value; e.g. checkpoint=<run dir>.")
        if key in defaults:
            options[key] = value
        else:
            others.append(arg)
    if not options["checkpoint"]:
        raise PlayInputError("checkpoint= is required: a run dir (its latest checkpoint) or a checkpoints/model_<N>.pt file.")
    return options, others


def parse_arguments(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """play's own keys apart from the run-config overrides."""
    options, overrides = split_key_values(args, PLAY_KEYS)
    try:
        progress_enabled(str(options["progress"]))
    except ValueError as error:
        raise PlayInputError(str(error)) from None
    for key in ("episodes", "gif_frames"):
        try:
            options[key] = int(options[key])
        except ValueError:
            raise PlayInputError(f"{key}={options[key]!r} is not valid: {key} must be an integer >= 1.") from None
        if options[key] < 1:
            raise PlayInputError(f"{key}={options[key]} is not valid: {key} must be an integer >= 1.")
    for key in ("gif", "out"):
        if options[key] and Path(options[key]).exists():
            raise PlayInputError(f"{key}={options[key]!r} already exists; seedlock-play never replaces a file. Choose another path.")
    return options, overrides


def run_config(checkpoint: Path, num_envs: int, overrides: list[str], filming: bool) -> DictConfig:
    """The run's config.yaml, for ``num_envs`` envs, with the overrides; a run dir is never resumed."""
    run_dir = checkpoint.parent.parent
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise PlayInputError(f"checkpoint={str(checkpoint)!r} has no {config_file} beside it: is it a seedlock run's checkpoint?")
    cfg = OmegaConf.load(config_file)
    cfg.num_envs = num_envs
    cfg.checkpoint = None
    cfg.distributed = False
    if filming and cfg.task.backend == "isaaclab":
        raise PlayInputError(GIF_REFUSED)
    if filming and cfg.task.backend == "gym":
        cfg.task.env_kwargs = {**cfg.task.get("env_kwargs", {}), "render_mode": "rgb_array"}
    try:
        cfg.merge_with_dotlist(overrides)
    except OmegaConfBaseException as error:
        raise PlayInputError(f"overrides {overrides} are not valid for this run's config: {error}") from None
    return cfg


@contextlib.contextmanager
def prepared_run(
    checkpoint_arg: str, num_envs: int, overrides: list[str], filming: bool = False
) -> Iterator[tuple[TrainingRun, Path, ModuleType]]:
    """The checkpoint's run rebuilt for evaluation: its config, determinism applied first, the
    task built with ``num_envs`` envs, and the adapter; the run dir of the TrainingRun is a
    scratch dir (the libraries' loggers write as a policy is built; never into the run's own)."""
    checkpoint = resolve_checkpoint(checkpoint_arg)
    cfg = run_config(checkpoint, num_envs, overrides, filming)
    read_checkpoint_header(checkpoint, str(cfg.task.name), str(cfg.trainer.name))
    check_device(str(cfg.device))
    manifest = determinism.apply(cfg)  # first, as for training
    env = tasks.make_for_run(cfg, manifest.seed)
    try:
        with tempfile.TemporaryDirectory(prefix="seedlock-play-") as scratch:
            run = TrainingRun(env, cfg, Path(scratch), manifest.seed, fingerprints=None)  # type: ignore[arg-type]
            yield run, checkpoint, trainers.adapter(str(cfg.trainer.name))
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()


def play(options: dict[str, Any], overrides: list[str]) -> Evaluation:
    episodes = int(options["episodes"])
    with prepared_run(options["checkpoint"], episodes, overrides, filming=bool(options["gif"])) as (run, checkpoint, adapter):
        policy = adapter.load_policy(run, checkpoint)
        frames: list[np.ndarray] = []
        with ProgressBar("episodes", episodes, progress_enabled(str(options["progress"]))) as bar:
            returns, lengths = play_episodes(stepped(run.env), policy, frames if options["gif"] else None, int(options["gif_frames"]), bar)
        if options["gif"]:
            write_gif(frames, Path(options["gif"]), getattr(run.env, "frame_seconds", 1 / 30))
            print(f"seedlock-play: episode 1 filmed: {options['gif']}")
    evaluation = Evaluation(
        checkpoint=str(checkpoint), episodes=episodes, mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)), returns=returns, lengths=lengths, seed=run.seed,
    )
    if options["out"]:
        Path(options["out"]).write_text(json.dumps(asdict(evaluation), indent=2) + "\n")
    return evaluation


def stepped(env: Any) -> BatchedTask:
    """The run's task as seedlock steps it: itself, or an Isaac Lab task's batched view."""
    return env.stepped() if is_isaaclab(env) else env


def play_episodes(
    env: Any, policy: Any, frames: list[np.ndarray] | None, max_frames: int, bar: ProgressBar | None = None
) -> tuple[list[float], list[int]]:
    """Every env plays until its first episode ends; env 0 is filmed into ``frames``."""
    running = torch.zeros(env.num_envs, dtype=torch.float64)
    returns: list[float | None] = [None] * env.num_envs
    lengths: list[int] = [0] * env.num_envs
    obs = env.observations()
    filming = frames is not None
    step = 0
    while any(value is None for value in returns):
        if filming and len(frames) < max_frames:
            frames.append(env.render_frame())
        result = env.step(policy(obs))
        obs = result.obs
        running += result.reward.detach().to("cpu", torch.float64)
        step += 1
        for index in (result.terminated | result.truncated).nonzero().flatten().tolist():
            if returns[index] is None:
                returns[index], lengths[index] = float(running[index]), step
                filming = filming and index != 0
        running[(result.terminated | result.truncated).cpu()] = 0.0
        if bar is not None:
            finished = [value for value in returns if value is not None]
            bar.update(len(finished), step * env.num_envs, float(np.mean(finished)) if finished else None)
    return [float(value) for value in returns], lengths  # type: ignore[arg-type]


def write_gif(frames: list[np.ndarray], path: Path, frame_seconds: float) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    width = images[0].width
    if width > 320:  # keep GIFs small enough to commit and to look at
        images = [image.resize((320, round(image.height * 320 / width)), Image.BILINEAR) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, round(1000 * frame_seconds)), loop=0)


if __name__ == "__main__":
    main()
