"""seedlock-export: TorchScript and ONNX policies that act exactly as the live policy does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
import torch

from tests.support import SEEDLOCK_EXPORT, TRAINER_PARAMS, TrainedRuns
from trainers import export
from trainers.export import observation_batch
from trainers.play import prepared_run


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SEEDLOCK_EXPORT, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.usefixtures("restore_torch_state")
@pytest.mark.parametrize("trainer", TRAINER_PARAMS)
def test_exported_policies_give_the_live_policys_actions(
    trained_runs: TrainedRuns, tmp_path: Path, trainer: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir, out = trained_runs.base(trainer), tmp_path / "exported"
    monkeypatch.setattr(sys, "argv", ["seedlock-export", f"checkpoint={run_dir}", f"out={out}"])
    export.main()  # in this process, as the console script runs it
    assert "max |exported - live| action" in capsys.readouterr().out
    # The live policy: the library's own inference path, as seedlock-play acts; a batch size
    # other than the export's 64, so the exports' batch dimension must be dynamic.
    with prepared_run(str(run_dir), num_envs=17, overrides=["device=cpu"]) as (run, checkpoint, adapter):
        live = adapter.load_policy(run, checkpoint)
        observations = observation_batch(run.env)
        with torch.no_grad():
            expected = live(observations).float()
    scripted = torch.jit.load(str(out / "policy.pt"))(observations)
    session = onnxruntime.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    onnx_actions = torch.from_numpy(session.run(None, {"obs": observations.numpy()})[0])
    assert expected.shape == (17, run.env.num_actions)
    assert torch.equal(scripted, expected)  # the same ops on the same CPU
    torch.testing.assert_close(onnx_actions, expected, rtol=0, atol=1e-5)  # ONNX Runtime's own kernels
    assert not torch.equal(expected, expected[:1].expand_as(expected))  # the batch is not one observation


@pytest.mark.xdist_group("rsl_rl")
def test_export_never_replaces_an_existing_directory(trained_runs: TrainedRuns, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    exported = run_export(f"checkpoint={trained_runs.base('rsl_rl')}", f"out={tmp_path / 'out'}")
    assert exported.returncode == 2 and "already exists" in exported.stderr and "Traceback" not in exported.stderr
