"""Fingerprint hashing: sensitive to any bit, independent of process, order fixed."""

from __future__ import annotations

import torch

from determinism import fingerprint_optimizer, fingerprint_parameters
from determinism.fingerprint import fingerprint_named


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ELU(), torch.nn.Linear(8, 1))


def test_equal_parameters_hash_equal() -> None:
    assert fingerprint_parameters({"actor": _model(0)}) == fingerprint_parameters({"actor": _model(0)})


def test_one_ulp_change_changes_the_hash_and_names_the_tensor() -> None:
    a, b = _model(0), _model(0)
    with torch.no_grad():
        weight = b[2].weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1.0))
    (hash_a, per_a), (hash_b, per_b) = fingerprint_parameters({"actor": a}), fingerprint_parameters({"actor": b})
    assert hash_a != hash_b
    assert [name for name in per_a if per_a[name] != per_b[name]] == ["actor.2.weight"]


def test_tensor_order_and_names_are_part_of_the_hash() -> None:
    x, y = torch.zeros(2), torch.ones(2)
    assert fingerprint_named([("x", x), ("y", y)])[0] != fingerprint_named([("y", y), ("x", x)])[0]
    assert fingerprint_named([("x", x)])[0] != fingerprint_named([("z", x)])[0]


def test_bfloat16_tensors_hash() -> None:
    assert fingerprint_named([("b", torch.ones(3, dtype=torch.bfloat16))])[0]


def test_optimizer_hash_follows_its_state_and_learning_rate() -> None:
    model = _model(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    empty = fingerprint_optimizer(optimizer.state_dict())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    stepped = fingerprint_optimizer(optimizer.state_dict())
    optimizer.param_groups[0]["lr"] = 5e-4
    assert len({empty, stepped, fingerprint_optimizer(optimizer.state_dict())}) == 3


def test_host_bytes_fetches_each_tensors_own_bytes_whatever_its_dtype_and_shape() -> None:
    """The tensors are packed into one buffer per device and split again: each slice must be that
    tensor's bytes alone, for every dtype, 0-d, empty and non-contiguous tensors included."""
    from determinism.fingerprint import host_bytes

    tensors = [torch.arange(6, dtype=torch.float32).view(2, 3).t(), torch.tensor(2.5, dtype=torch.float64),
               torch.empty(0), torch.tensor([True, False, True]), torch.ones(3, dtype=torch.bfloat16),
               torch.arange(5, dtype=torch.int64)]
    fetched = host_bytes(tensors)
    for tensor, data in zip(tensors, fetched):
        expected = tensor.contiguous().view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor.contiguous()
        assert data.tobytes() == expected.numpy().tobytes()
