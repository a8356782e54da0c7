"""A deterministic 2-D convolution whose weight gradient is a cuBLAS matmul, not cuDNN's.

Under ``torch_deterministic=true`` cuDNN may only use its deterministic weight-gradient
(wgrad) kernels. For the small convolutions RL policies put on a large minibatch of small
frames, those kernels have a tiny output (the filters) to spread over the GPU and a huge
reduction (every position of every frame) that they may not split: bench/results/
profile_cuda_cartpole_rgb_rsl_rl.md shows 81% of a locked camera run's GPU time in one of them.
The same gradient written as one matmul over im2col patches is deterministic under the cuBLAS
workspace setting that ``lock_torch`` makes anyway (cuBLAS splits the reduction, and sums the
parts, in a fixed order), and uses the whole GPU.

The forward pass and the input gradient stay cuDNN's (their deterministic kernels are fast).
bench/results/conv_wgrad_cuda.md: on an H200 the CNN's forward + backward at a 16384-frame
minibatch takes 7.9 ms unlocked, 60 ms with cuDNN's deterministic wgrad, 8.5 ms with this one.

``lock_torch`` installs it for every ``torch.nn.Conv2d`` (all four libraries build their CNNs from
it) while ``torch_deterministic=true``, on CUDA tensors only (on the CPU, convolutions are
deterministic anyway and the im2col copy would only cost time), and removes it otherwise.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _ConvWithMatmulWgrad(torch.autograd.Function):
    """conv2d with cuDNN's forward and input gradient and an im2col-matmul weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.geometry = (stride, padding, dilation)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    @once_differentiable  # a second derivative through it raises instead of silently being zero
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            grad_weight = matmul_weight_grad(x, grad_out, weight.shape, stride, padding, dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None


def matmul_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, weight_shape: torch.Size,
                       stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """dL/dW of conv2d as one matmul: grad_outᵀ (O, N·L) @ patches (N·L, C·kh·kw).

    The patches are strided windows of the input in NHWC order, copied once into a matrix; one
    GEMM with the reduction over all N·L output positions is what cuBLAS splits, deterministically,
    across the GPU (L: output positions per sample)."""
    out_channels, in_channels, kernel_h, kernel_w = weight_shape
    x = F.pad(x, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else x
    span_h, span_w = dilation[0] * (kernel_h - 1) + 1, dilation[1] * (kernel_w - 1) + 1
    windows = x.permute(0, 2, 3, 1).unfold(1, span_h, stride[0]).unfold(2, span_w, stride[1])
    windows = windows[..., :: dilation[0], :: dilation[1]]  # (N, H_out, W_out, C, kh, kw)
    patches = windows.reshape(-1, in_channels * kernel_h * kernel_w)
    grads = grad_out.permute(0, 2, 3, 1).reshape(-1, out_channels)  # (N·L, O)
    return (grads.t() @ patches).reshape(weight_shape)


def conv2d_matmul_wgrad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                        stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                        dilation: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """``F.conv2d`` (groups=1, numeric padding) with the matmul weight gradient."""
    return _ConvWithMatmulWgrad.apply(x, weight, bias, stride, padding, dilation)


CONV_WEIGHT_GRADS = ("matmul", "cudnn")  # determinism.conv_weight_grad's choices
_CUDNN_CONV_FORWARD: Callable[..., torch.Tensor] = torch.nn.Conv2d._conv_forward


def use_conv_weight_grad(kind: str) -> None:
    """``matmul``: every Conv2d's weight gradient on CUDA from :func:`matmul_weight_grad`;
    ``cudnn``: torch's own convolution, unchanged."""
    if kind not in CONV_WEIGHT_GRADS:
        raise ValueError(f"conv weight gradient {kind!r}: choose one of {', '.join(CONV_WEIGHT_GRADS)}")
    torch.nn.Conv2d._conv_forward = _matmul_wgrad_conv_forward if kind == "matmul" else _CUDNN_CONV_FORWARD  # type: ignore[method-assign]


def conv_weight_grad_in_use() -> str:
    return "matmul" if torch.nn.Conv2d._conv_forward is _matmul_wgrad_conv_forward else "cudnn"


def _matmul_wgrad_conv_forward(self: torch.nn.Conv2d, input: torch.Tensor, weight: torch.Tensor,
                               bias: torch.Tensor | None) -> torch.Tensor:
    """Conv2d._conv_forward, diverted to the matmul weight gradient where it applies: a CUDA
    input, a weight that trains, one group, zero padding given as numbers."""
    if (input.is_cuda and weight.requires_grad and torch.is_grad_enabled() and self.groups == 1
            and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
        return conv2d_matmul_wgrad(input, weight, bias, self.stride, self.padding, self.dilation)  # type: ignore[arg-type]
    return _CUDNN_CONV_FORWARD(self, input, weight, bias)
