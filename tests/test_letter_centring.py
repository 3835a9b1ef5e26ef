"""The letter-centring bias control (train.centre_letter_advantages) and its trainer hook."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core.train import centre_letter_advantages


def test_removes_the_batch_letter_preference_and_keeps_within_letter_contrasts():
    adv = torch.tensor([1.0, 0.5, -0.2, -1.0, 0.3, 0.0])
    letters = ["A", "A", "B", "B", "A", None]
    out = centre_letter_advantages(adv, letters)
    a = [i for i, x in enumerate(letters) if x == "A"]
    b = [i for i, x in enumerate(letters) if x == "B"]
    assert out[a].sum().item() == pytest.approx(0.0, abs=1e-6)
    assert out[b].sum().item() == pytest.approx(0.0, abs=1e-6)
    assert out[5].item() == 0.0  # no letter: untouched
    # differences between completions of the same letter are kept
    assert (out[0] - out[1]).item() == pytest.approx(0.5)
    assert (out[2] - out[3]).item() == pytest.approx(0.8)
    assert adv[0].item() == 1.0  # the input is not modified


def test_a_pure_letter_bias_gets_no_advantage():
    """Every A completion better than every B by the same amount (what a batch-wide letter
    preference looks like): after centring, A and B completions carry no net push."""
    adv = torch.tensor([0.7, 0.7, 0.7, -0.7, -0.7])
    out = centre_letter_advantages(adv, ["A", "A", "A", "B", "B"])
    assert torch.allclose(out, torch.zeros(5))


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one per completion"):
        centre_letter_advantages(torch.zeros(3), ["A", "B"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.sampled_from(["A", "B", "C", None])), min_size=1, max_size=40))
def test_per_letter_sums_vanish(pairs):
    adv = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    letters = [p[1] for p in pairs]
    out = centre_letter_advantages(adv, letters)
    for letter in {x for x in letters if x is not None}:
        idx = [i for i, x in enumerate(letters) if x == letter]
        assert abs(out[idx].sum().item()) < 1e-9
    for i, x in enumerate(letters):
        if x is None:
            assert out[i].item() == adv[i].item()


def test_trainer_hook_centres_the_advantages_it_trains_on(nano_dir, tmp_path, monkeypatch):
    """With ``letter_centring`` the trainer parses one letter (or None) per completion and
    trains on the centred advantages; without it the function is never called."""
    import dataclasses

    from jrl_core import nano, train
    from jrl_core.images import load_photos, sample_views
    from jrl_core.puzzles import PuzzleSpec, build_rows

    calls = []
    real = train.centre_letter_advantages

    def spy(advantages, letters):
        out = real(advantages, letters)
        calls.append((advantages.clone(), list(letters), out.clone()))
        return out

    monkeypatch.setattr(train, "centre_letter_advantages", spy)
    model, processor = nano.load_model(str(nano_dir))
    views = sample_views(load_photos("skimage", "train"), 4, seed=0, size=56)
    rows = build_rows(views, PuzzleSpec(m=2, n=1, question_type="pair"), n_items=4, seed=0)
    base = dataclasses.replace(train.NANO, steps=1, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                               report_to=())
    train.train_grpo(model, processor, rows[:2], base, tmp_path / "off", save_final=False)
    assert calls == []
    train.train_grpo(model, processor, rows[2:], dataclasses.replace(base, letter_centring=True), tmp_path / "on",
                     save_final=False)
    assert len(calls) == 1
    adv, letters, out = calls[0]
    assert len(letters) == len(adv) == 8  # 2 prompts x 4 completions
    assert all(x is None or (len(x) == 1 and x.isupper()) for x in letters)
    for letter in {x for x in letters if x is not None}:
        idx = [i for i, x in enumerate(letters) if x == letter]
        assert abs(out[idx].sum().item()) < 1e-5
