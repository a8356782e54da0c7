"""``seedlock-export``: the trained policy as TorchScript and ONNX, what Isaac Lab users deploy.

    seedlock-export checkpoint=runs/cartpole_rsl_rl/<run>            # -> <run>/exported/
    seedlock-export checkpoint=<run>/checkpoints/model_49.pt out=deploy/

Each adapter's ``policy_module`` is the policy as one module, observations -> deterministic
actions, with the library's observation normalisation and action clipping inside. It is traced
to ``policy.pt`` (TorchScript) and exported to ``policy.onnx`` (dynamic batch), on the CPU; then
both are run on a batch of the task's own observations and compared with the live policy (the
library's own inference path, ``load_policy``, as seedlock-play acts), and the largest
difference is printed. ``out`` must not exist yet: nothing is replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from trainers.play import USER_ERRORS, PlayInputError, prepared_run, split_key_values, stepped

EXIT_BAD_INPUT = 2
BATCH = 64  # observations compared between the live and the exported policies


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    try:
        options, unknown = split_key_values(args, {"checkpoint": None, "out": None})
        if unknown:
            raise PlayInputError(f"{' '.join(unknown)}: seedlock-export takes checkpoint= and out= only.")
        paths, differences = export(options["checkpoint"], options["out"])
    except (PlayInputError, *USER_ERRORS) as error:
        print(f"seedlock-export: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    for path in paths:
        print(f"seedlock-export: wrote {path}")
    print(
        f"seedlock-export: on {BATCH} of the task's observations, max |exported - live| action: "
        f"TorchScript {differences['torchscript']:.3g}, ONNX {differences['onnx']:.3g}"
    )


def export(checkpoint_arg: str, out: str | None) -> tuple[list[Path], dict[str, float]]:
    """Write policy.pt and policy.onnx; returns their paths and how far each is from the live policy."""
    with prepared_run(checkpoint_arg, num_envs=BATCH, overrides=["device=cpu"]) as (run, checkpoint, adapter):
        out_dir = Path(out) if out else checkpoint.parent.parent / "exported"
        if out_dir.exists():
            raise PlayInputError(f"out={str(out_dir)!r} already exists; seedlock-export never replaces files. Choose another out=.")
        policy = adapter.policy_module(run, checkpoint)
        live = adapter.load_policy(run, checkpoint)  # the library's own inference path, as seedlock-play acts
        observations = observation_batch(stepped(run.env))
        paths = write_exports(policy, observations, out_dir)
        return paths, compare_with_live(live, observations, paths)


def observation_batch(env: Any) -> torch.Tensor:
    """Observations the policy meets: the task's, after a few random steps from its reset."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        actions = torch.rand((env.num_envs, env.num_actions), generator=generator) * 2 - 1
        env.step(actions)
    return env.observations().detach().to("cpu", torch.float32).clone()


def write_exports(policy: torch.nn.Module, observations: torch.Tensor, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True)
    with torch.inference_mode(False), torch.no_grad():
        scripted = torch.jit.trace(policy, observations, check_trace=False)
        torchscript_path = out_dir / "policy.pt"
        scripted.save(str(torchscript_path))
        onnx_path = out_dir / "policy.onnx"
        torch.onnx.export(
            policy, (observations,), str(onnx_path), input_names=["obs"], output_names=["actions"],
            dynamic_axes={"obs": {0: "batch"}, "actions": {0: "batch"}}, dynamo=False,
        )
    return [torchscript_path, onnx_path]


def compare_with_live(policy: Any, observations: torch.Tensor, paths: list[Path]) -> dict[str, float]:
    import onnxruntime

    with torch.no_grad():
        live = policy(observations).float()
        scripted = torch.jit.load(str(paths[0]))(observations)
    session = onnxruntime.InferenceSession(str(paths[1]), providers=["CPUExecutionProvider"])
    onnx_actions = torch.from_numpy(session.run(None, {"obs": observations.numpy()})[0])
    return {
        "torchscript": float((scripted - live).abs().max()),
        "onnx": float((onnx_actions - live).abs().max()),
    }


if __name__ == "__main__":
    main()
