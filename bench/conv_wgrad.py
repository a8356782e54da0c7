"""The camera task's CNN alone: forward + backward time per minibatch, locked and unlocked.

Why it exists: under ``torch_deterministic=true`` the camera task trains 4–5× slower on a GPU,
and the profile puts the time in cuDNN's deterministic weight-gradient kernel. This times the
CNN every adapter builds for ``cartpole_rgb`` (two convolutions and a linear layer on
(N, 6, 32, 64) frames) four ways, and checks that each locked way gives bit-identical
gradients twice in a row:

- ``cudnn unlocked``: torch's defaults (non-deterministic wgrad, TF32 convolutions);
- ``cudnn locked``: ``lock_torch(True)`` with cuDNN's deterministic wgrad, NCHW
  (``determinism.conv_weight_grad=cudnn``; the only choice before determinism/conv.py);
- ``cudnn locked, channels-last``: the model and the frames in NHWC (cuDNN's other kernel family);
- ``matmul wgrad locked``: ``determinism.conv``'s im2col-matmul weight gradient, NCHW and NHWC
  (``determinism.conv_weight_grad=matmul``, the default).

The model calls its convolution function directly, so ``lock_torch``'s Conv2d patch does not
decide the variant; the table names the function each one uses.

    python -m bench.conv_wgrad --device cuda --out bench/results/conv_wgrad_cuda
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bench.machine import describe, machine
from bench.op_cost import time_step
from determinism.conv import conv2d_matmul_wgrad
from determinism.torch_flags import lock_torch
from tasks.cartpole_rgb import CartpoleRgbConfig

ROOT = Path(__file__).resolve().parent.parent
# cartpole_rgb's frames (3 colours × frame_stack, height, width) and the CNN its agent configs
# build, read from where they are defined so the bench follows them.
_FRAMES = CartpoleRgbConfig()
FRAME_SHAPE = (3 * _FRAMES.frame_stack, _FRAMES.height, _FRAMES.width)
_CNN = OmegaConf.load(ROOT / "conf" / "agent" / "cartpole_rgb" / "rsl_rl.yaml").actor.cnn_cfg
CONVS = tuple(zip(_CNN.output_channels, _CNN.kernel_size, _CNN.stride))  # (out channels, kernel, stride)


class PixelCnn(torch.nn.Module):
    """The adapters' cartpole_rgb CNN: conv-ReLU, conv-ReLU, flatten, linear-ELU, one output."""

    def __init__(self, conv: Callable[..., torch.Tensor] = F.conv2d) -> None:
        super().__init__()
        self.conv = conv
        channels = FRAME_SHAPE[0]
        self.convs = torch.nn.ModuleList()
        for out_channels, kernel, stride in CONVS:
            self.convs.append(torch.nn.Conv2d(channels, out_channels, kernel, stride))
            channels = out_channels
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *FRAME_SHAPE)).shape[1]
        self.head = torch.nn.Sequential(torch.nn.Linear(flat, 128), torch.nn.ELU(), torch.nn.Linear(128, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.convs:
            x = torch.relu(self.conv(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


VARIANTS: dict[str, tuple[bool, bool, Callable[..., torch.Tensor]]] = {
    # name: (locked, channels_last, conv)
    "cudnn unlocked": (False, False, F.conv2d),
    "cudnn locked": (True, False, F.conv2d),
    "cudnn locked, channels-last": (True, True, F.conv2d),
    "matmul wgrad locked": (True, False, conv2d_matmul_wgrad),
    "matmul wgrad locked, channels-last": (True, True, conv2d_matmul_wgrad),
}


def gradients(model: PixelCnn, frames: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(frames).square().mean().backward()
    return [p.grad.clone() for p in model.parameters()]


def time_variant(name: str, batch: int, device: str, steps: int) -> dict[str, Any]:
    locked, channels_last, conv = VARIANTS[name]
    lock_torch(locked)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = PixelCnn(conv).to(device).to(memory_format=layout)
    frames = torch.rand(batch, *FRAME_SHAPE, device=device).contiguous(memory_format=layout)
    return {"variant": name, "batch": batch, **time_step(lambda: gradients(model, frames), device, steps)}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# cartpole_rgb's CNN: forward + backward per minibatch",
        "",
        describe(result["machine"]),
        "",
        "Median of the timed steps; `repeatable`: the same gradients, bit for bit, twice in a row.",
        "",
        "| minibatch | variant | ms | vs cudnn unlocked | repeatable |",
        "|---:|---|---:|---:|---|",
    ]
    for batch in result["batches"]:
        rows = [row for row in result["rows"] if row["batch"] == batch]
        unlocked = next(row["ms"] for row in rows if row["variant"] == "cudnn unlocked")
        for row in rows:
            lines.append(
                f"| {batch} | {row['variant']} | {row['ms']:.2f} | {row['ms'] / unlocked:.2f}× | {row['repeatable']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "conv_wgrad_cuda")
    args = parser.parse_args()
    lock_torch(True)  # sets CUBLAS_WORKSPACE_CONFIG before CUDA starts
    rows = [time_variant(name, batch, args.device, args.steps) for batch in args.batches for name in VARIANTS]
    result = {"machine": machine(args.device), "batches": args.batches, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
