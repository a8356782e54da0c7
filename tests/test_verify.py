"""seedlock-verify: identical runs exit 0; a planted divergence exits 1 and is located down to
the iteration, the tensors and the manifest field; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from determinism.compare import compare_runs, manifest_differences
from determinism.fingerprint import FINGERPRINT_FILE
from tests.support import run_verify

VERIFY_SIZE = ("num_envs=32", "max_iterations=2", "determinism.num_threads=1")


def test_a_deterministic_config_is_identical_and_exits_0(tmp_path: Path) -> None:
    result = run_verify("--verify-dir", str(tmp_path / "v"), "trainer=skrl", "seed=5", *VERIFY_SIZE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL: 2 runs, 2 iterations each" in result.stdout
    report = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert report["identical"] is True and report["divergences"] == [] and report["manifest_differences"] == {}
    runs = [Path(run) for run in report["runs"]]
    assert runs == [tmp_path / "v" / "run_0", tmp_path / "v" / "run_1"]
    assert runs[0].joinpath(FINGERPRINT_FILE).read_bytes() == runs[1].joinpath(FINGERPRINT_FILE).read_bytes()
    assert not (runs[0] / "snapshots").exists()  # nothing differed: no snapshot is kept


def test_runs_that_differ_in_seed_exit_1_naming_iteration_0_the_tensors_and_the_seed(tmp_path: Path) -> None:
    # seed=-1: every run draws its own seed, a divergence planted from the very first draw.
    result = run_verify("--verify-dir", str(tmp_path / "v"), "trainer=rsl_rl", "seed=-1", *VERIFY_SIZE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DIFFERENT: run 1 differs from run 0 first at iteration 0" in result.stdout
    report = json.loads((tmp_path / "v" / "verify.json").read_text())
    (divergence,) = report["divergences"]
    assert divergence["iteration"] == 0
    names = {tensor["name"] for tensor in divergence["tensors"]}
    assert {"actor.mlp.0.weight", "critic.mlp.0.weight"} <= names
    for tensor in divergence["tensors"]:
        assert tensor["name"] in result.stdout
        assert tensor["max_abs_diff"] is not None and tensor["max_abs_diff"] >= 0
    assert max(tensor["max_abs_diff"] for tensor in divergence["tensors"]) > 0
    seeds = [json.loads((tmp_path / "v" / f"run_{i}" / "manifest.json").read_text())["seed"] for i in (0, 1)]
    assert report["manifest_differences"]["seed"] == seeds
    assert f"seed: {seeds[0]} | {seeds[1]}" in result.stdout
    # Only the snapshot of the first differing iteration is kept, in each run.
    assert [p.name for p in (tmp_path / "v" / "run_0" / "snapshots").iterdir()] == ["iteration_0.pt"]


def test_the_largest_difference_is_measured_from_the_snapshots(tmp_path: Path) -> None:
    """compare_runs on two hand-made runs whose second iteration differs in one tensor by 0.25."""
    for name, delta in (("a", 0.0), ("b", 0.25)):
        run = tmp_path / name
        (run / "snapshots").mkdir(parents=True)
        lines = []
        for iteration in (0, 1):
            weight = torch.zeros(3) + (delta if iteration == 1 else 0.0)
            torch.save({"policy.w": weight, "policy.b": torch.ones(2)}, run / "snapshots" / f"iteration_{iteration}.pt")
            lines.append({"iteration": iteration, "env_steps": 10 * (iteration + 1), "parameters_sha256": str(weight.sum().item()),
                          "parameters": {"policy.w": str(weight.sum().item()), "policy.b": "same"}})
        (run / FINGERPRINT_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
        (run / "manifest.json").write_text(json.dumps({"seed": 1, "devices": {"cuda": [name]}, "created_at": name}))
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"])
    (divergence,) = comparison.divergences
    assert (divergence.iteration, divergence.env_steps) == (1, 20)
    assert [(t.name, t.max_abs_diff) for t in divergence.tensors] == [("policy.w", 0.25)]
    assert comparison.manifest_differences == {"devices.cuda": [["a"], ["b"]]}  # created_at is expected to differ


def test_manifest_differences_name_nested_fields(tmp_path: Path) -> None:
    paths = []
    for index, threads in enumerate((2, 16)):
        path = tmp_path / f"m{index}.json"
        path.write_text(json.dumps({"flags": {"num_threads": threads, "cudnn_benchmark": False},
                                    "run": {"run_dir": str(index)}}))
        paths.append(path)
    assert manifest_differences(paths) == {"flags.num_threads": [2, 16]}


def test_a_verify_dir_with_runs_in_it_is_never_reused(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "verify.json").write_text("{}")
    result = run_verify("--verify-dir", str(tmp_path / "v"), *VERIFY_SIZE)
    assert result.returncode == 2 and "is not empty" in result.stderr
    assert (tmp_path / "v" / "verify.json").read_text() == "{}"
