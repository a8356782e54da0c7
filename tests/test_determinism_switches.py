"""determinism's speed switches: the matmul weight gradient of Conv2d, and torch's uninitialised-
memory fill. Each must change speed only, never what a correct run computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from determinism.conv import conv2d_matmul_wgrad, conv_weight_grad_in_use, matmul_weight_grad, use_conv_weight_grad
from determinism.torch_flags import lock_torch
from tests.support import TRAINERS, run_train

# (stride, padding, dilation): the camera task's two layers, and padding and dilation besides.
GEOMETRIES = [((4, 4), (0, 0), (1, 1)), ((2, 2), (0, 0), (1, 1)), ((1, 3), (2, 1), (2, 1))]


@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_matmul_conv_gradients_pass_gradcheck(stride: tuple, padding: tuple, dilation: tuple) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, weight, bias: conv2d_matmul_wgrad(x, weight, bias, stride, padding, dilation), (x, weight, bias)
    )


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_matmul_weight_gradient_equals_torchs(memory_format: torch.memory_format) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, 32, 64, dtype=torch.float64, generator=generator).contiguous(memory_format=memory_format)
    weight = torch.randn(8, 6, 8, 8, dtype=torch.float64, generator=generator)
    grad_out = torch.randn(5, 8, 7, 15, dtype=torch.float64, generator=generator)
    expected = torch.nn.grad.conv2d_weight(x, weight.shape, grad_out, stride=4)
    actual = matmul_weight_grad(x, grad_out, weight.shape, (4, 4), (0, 0), (1, 1))
    torch.testing.assert_close(actual, expected)


@pytest.mark.usefixtures("restore_torch_state")
def test_lock_installs_the_matmul_weight_gradient_and_unlocking_removes_it() -> None:
    assert lock_torch(True).conv_weight_grad == "matmul"
    assert lock_torch(False).conv_weight_grad == "cudnn"
    assert lock_torch(True, conv_weight_grad="cudnn").conv_weight_grad == "cudnn"


@pytest.mark.usefixtures("restore_torch_state")
def test_the_matmul_weight_gradient_leaves_cpu_convolutions_bit_identical() -> None:
    """It is diverted to on CUDA only; a CPU run is the same run with it installed."""

    def conv_gradients() -> list[torch.Tensor]:
        torch.manual_seed(2)
        conv = torch.nn.Conv2d(6, 8, 8, stride=4)
        conv(torch.rand(16, 6, 32, 64)).square().mean().backward()
        return [conv.weight.grad, conv.bias.grad]

    use_conv_weight_grad("cudnn")
    unpatched = conv_gradients()
    use_conv_weight_grad("matmul")
    assert conv_weight_grad_in_use() == "matmul"
    assert all(torch.equal(a, b) for a, b in zip(unpatched, conv_gradients()))


def test_an_unknown_conv_weight_gradient_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of matmul, cudnn"):
        use_conv_weight_grad("fast")


@pytest.mark.slow  # two runs per library: make test-all
@pytest.mark.parametrize("trainer", TRAINERS)
def test_uninitialized_memory_fill_does_not_change_a_run(tmp_path: Path, trainer: str) -> None:
    """Nothing reads memory it did not write: fingerprints are the same with torch's fill on and off."""
    for fill in ("true", "false"):
        run_train(f"trainer={trainer}", "task=cartpole_rgb", "num_envs=8", "max_iterations=2", "torch_deterministic=true",
                  f"determinism.fill_uninitialized_memory={fill}", f"run_dir={tmp_path / fill}")
    files = [tmp_path / fill / "fingerprints.jsonl" for fill in ("true", "false")]
    assert files[0].read_bytes() == files[1].read_bytes()
