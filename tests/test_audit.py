"""seedlock-audit on the CPU: a clean config exits 0 and says what the CPU cannot show; an RNG
seeded from the OS's entropy and an op PyTorch flags as non-deterministic, planted in the run,
are each named with the line that made them; bad input is one paragraph and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tasks.cartpole
from bench import op_cost
from trainers import audit

SMALL = ("trainer=rsl_rl", "num_envs=16")


def _audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        audit.main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_a_clean_config_exits_0_and_says_what_the_cpu_cannot_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_torch_state: None,
) -> None:
    code, out, _ = _audit(capsys, "--audit-dir", str(tmp_path / "a"), *SMALL)
    assert code == 0 and "CLEAN: nothing found" in out
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert (report["ops"], report["rngs"], report["breaks"]) == ([], [], [])
    assert report["settings"]["deterministic_algorithms"] is False  # as the config sets it, not the probe
    assert any("deterministic at a fixed thread count" in note for note in report["not_checked"])
    assert (tmp_path / "a" / "run" / "fingerprints.jsonl").is_file()


def test_a_planted_unseeded_rng_and_a_flagged_op_are_named_at_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, restore_torch_state: None,
) -> None:
    step = tasks.cartpole.CartpoleEnv.step
    scratch = torch.zeros(4)

    def planted_step(self, actions):  # type: ignore[no-untyped-def]
        np.random.default_rng()  # entropy-seeded: outside seedlock's seeding
        scratch.put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))  # no deterministic implementation
        return step(self, actions)

    monkeypatch.setattr(tasks.cartpole.CartpoleEnv, "step", planted_step)
    code, out, _ = _audit(capsys, "--audit-dir", str(tmp_path / "a"), "--iterations", "1", *SMALL)
    assert code == 1 and "FOUND 2 thing(s)" in out
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    [op] = report["ops"]
    [rng] = report["rngs"]
    assert op["what"] == "put_" and op["location"].startswith("tests/test_audit.py:") and "(planted_step)" in op["location"]
    assert op["count"] == rng["count"] > 0  # once per env step of the iteration
    assert rng["what"] == "numpy.random.default_rng() without a seed" and "(planted_step)" in rng["location"]


def test_an_op_that_differs_only_under_torch_defaults_is_named_with_what_the_lock_runs_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, restore_torch_state: None,
) -> None:
    """``index_put_(..., accumulate=True)`` on the CPU sums in parallel under torch's defaults, and
    torch's checks cannot see it (with them on, torch runs its sorted version silently): the
    dispatch probe names it, a break under the defaults and not under torch_deterministic=true."""
    step = tasks.cartpole.CartpoleEnv.step
    scratch = torch.zeros(4)

    def planted_step(self, actions):  # type: ignore[no-untyped-def]
        scratch.index_put_((torch.tensor([1, 1, 2]),), torch.ones(3), accumulate=True)
        return step(self, actions)

    monkeypatch.setattr(tasks.cartpole.CartpoleEnv, "step", planted_step)
    code, out, _ = _audit(capsys, "--audit-dir", str(tmp_path / "defaults"), "--iterations", "1", *SMALL)
    assert code == 1 and "FOUND 1 thing(s)" in out and "torch_deterministic=true: a sorted write or sum in index order" in out
    [op] = json.loads((tmp_path / "defaults" / "audit.json").read_text())["lockable_ops"]
    assert op["what"] == "aten::index_put_" and "(planted_step)" in op["location"] and op["shapes"] == [[4], [3], [3]]
    rows = op_cost.cost(op, "cpu", steps=2)  # the cost column: the op replayed alone at its shapes
    assert [row["variant"] for row in rows] == list(op_cost.OP_VARIANTS) and rows[1]["repeatable"] and rows[1]["ms"] > 0
    code, out, _ = _audit(capsys, "--audit-dir", str(tmp_path / "locked"), "--iterations", "1", *SMALL, "torch_deterministic=true")
    report = json.loads((tmp_path / "locked" / "audit.json").read_text())
    assert code == 0 and "CLEAN" in out and [op["what"] for op in report["lockable_ops"]] == ["aten::index_put_"]


@pytest.mark.parametrize(("args", "message"), [
    (("--iterations", "3"), "--iterations=3 is not valid: the audit watches 1 or 2 iterations."),
    (("run_dir=x",), "'run_dir=x' is not valid here: seedlock-audit sets run_dir itself; use --audit-dir."),
    (("trainer=nope",), "trainer"),
])
def test_bad_input_is_one_paragraph_and_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, _, err = _audit(capsys, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
