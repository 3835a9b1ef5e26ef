"""Scoring only completion positions (jrl_core.completion_scoring) changes no training number, only the work."""

import dataclasses

import pandas as pd
import torch
from trl.trainer import utils as trl_utils

from jrl_core import train
from jrl_core.completion_scoring import completion_positions_only


def test_the_switch_is_on_inside_the_block_and_restored_after_an_error():
    original = trl_utils._use_triton
    assert original(torch.device("cpu")) is False  # TRL scores every position on a CPU by default
    try:
        with completion_positions_only() as active:
            assert active is True
            assert trl_utils._use_triton(torch.device("cpu")) is True
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert trl_utils._use_triton is original


def test_without_the_switch_in_trl_nothing_changes(monkeypatch):
    monkeypatch.delattr(trl_utils, "_use_triton")
    with completion_positions_only() as active:
        assert active is False
    assert not hasattr(trl_utils, "_use_triton")


def _spy_rows_scored(monkeypatch) -> list[int]:
    """Rows each fused-head call projects (TRL's chunked log-prob function's first argument)."""
    seen: list[int] = []
    fn = trl_utils._ChunkedLogProbFunction
    apply = fn.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(fn, "apply", spy)
    return seen


def test_grpo_logs_are_the_same_with_fewer_positions_projected(grpo_case, tmp_path, monkeypatch):
    model, processor, rows, settings, state = (grpo_case.model, grpo_case.processor, grpo_case.rows,
                                               grpo_case.settings, grpo_case.state)
    seen = _spy_rows_scored(monkeypatch)
    original = trl_utils._use_triton
    train.train_grpo(model, processor, rows, settings, tmp_path / "on", save_final=False)
    assert trl_utils._use_triton is original  # switched on only around the passes
    on_rows, seen[:] = list(seen), []
    model.load_state_dict(state)
    off = dataclasses.replace(settings, score_completions_only=False)
    train.train_grpo(model, processor, rows, off, tmp_path / "off", save_final=False)
    off_rows = list(seen)
    assert len(on_rows) == len(off_rows) > 0
    assert all(a < b for a, b in zip(on_rows, off_rows, strict=True))  # only completion positions projected
    on = pd.read_csv(tmp_path / "on" / "train_log.csv")
    plain = pd.read_csv(tmp_path / "off" / "train_log.csv")
    for col in ("loss", "kl", "reward", "entropy", "grad_norm"):
        torch.testing.assert_close(torch.tensor(on[col].values), torch.tensor(plain[col].values), rtol=1e-4, atol=1e-6)
