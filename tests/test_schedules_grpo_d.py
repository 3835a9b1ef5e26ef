"""GRPO-D, OThink-MR1's dynamic KL coefficient (protocol §7, Eq. 3), and its TrainerCallback."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from jrl_core import nano
from jrl_core.schedules import GRPO_D_PRESETS, KLScheduleCallback, grpo_d_beta


def beta(step, t=100, lo=0.04, hi=0.1, **kw):
    return grpo_d_beta(step, t, beta_min=lo, beta_max=hi, **kw)


def test_beta_starts_at_beta_mid():
    assert beta(0) == pytest.approx(0.07)


def test_beta_reaches_beta_min_at_the_end_of_exploration():
    assert beta(30) == pytest.approx(0.04)  # w = 0.3·t


def test_beta_reaches_beta_max_at_the_last_step_and_clamps_after():
    assert beta(100) == pytest.approx(0.1)
    assert beta(250) == beta(100)


def test_beta_decreases_then_increases():
    first = [beta(s) for s in range(0, 31)]
    second = [beta(s) for s in range(30, 101)]
    assert all(a > b for a, b in zip(first, first[1:], strict=False))
    assert all(a < b for a, b in zip(second, second[1:], strict=False))


def test_beta_follows_eq3_between_the_knots():
    assert beta(15) == pytest.approx(0.07 - 0.03 * 15 / 30)
    assert beta(65) == pytest.approx(0.04 + 0.06 * 35 / 70)


@pytest.mark.parametrize("task", ["counting", "geometry"])
def test_presets_span_their_range(task):
    lo, hi = GRPO_D_PRESETS[task]
    values = [grpo_d_beta(s, 50, beta_min=lo, beta_max=hi) for s in range(51)]
    assert values[0] == pytest.approx((lo + hi) / 2)
    assert min(values) == pytest.approx(lo) and max(values) == pytest.approx(hi)


def test_presets_match_the_paper():
    assert GRPO_D_PRESETS == {"counting": (0.04, 0.1), "geometry": (0.0, 0.02)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=-5), "total_steps"),
    (dict(beta_min=0.2, beta_max=0.1), "swap"),
    (dict(beta_min=-0.1), ">= 0"),
    (dict(explore_fraction=0.0), "explore_fraction"),
    (dict(explore_fraction=1.0), "explore_fraction"),
    (dict(step=-1), "step"),
])
def test_bad_inputs_raise_with_the_fix(kwargs, match):
    args = dict(step=0, total_steps=10, beta_min=0.0, beta_max=0.02) | kwargs
    with pytest.raises(ValueError, match=match):
        grpo_d_beta(args.pop("step"), args.pop("total_steps"), **args)


def _step(cb, s):
    cb.on_step_begin(SimpleNamespace(), TrainerState(global_step=s), TrainerControl())


def test_callback_sets_the_trainer_beta_each_step():
    trainer = SimpleNamespace(beta=0.02)
    cb = KLScheduleCallback.grpo_d(10, beta_min=0.0, beta_max=0.02).bind(trainer)
    for s in range(10):
        _step(cb, s)
        assert trainer.beta == grpo_d_beta(s, 10, beta_min=0.0, beta_max=0.02)
    assert [s for s, _ in cb.history] == list(range(10))
    assert cb.history[3][1] == 0.0  # w = 3: β_min


def test_callback_adds_beta_to_the_logs():
    cb = KLScheduleCallback(lambda s: 0.5 * s).bind(SimpleNamespace(beta=1.0))
    _step(cb, 3)
    logs = {"loss": 0.1}
    cb.on_log(SimpleNamespace(), TrainerState(global_step=4), TrainerControl(), logs=logs)
    assert logs["beta"] == 1.5


def test_unbound_callback_says_to_bind():
    with pytest.raises(RuntimeError, match="bind"):
        _step(KLScheduleCallback(lambda s: 0.1), 0)


def test_bind_refuses_a_trainer_built_without_a_reference_model():
    args = SimpleNamespace(beta=0.0, num_iterations=1, steps_per_generation=1, gradient_accumulation_steps=1,
                           max_steps=10)
    with pytest.raises(ValueError, match="non-zero beta"):
        KLScheduleCallback(lambda s: 0.1).bind(SimpleNamespace(beta=0.0, args=args))


def test_bind_refuses_zero_beta_with_rollouts_reused_across_steps():
    args = SimpleNamespace(beta=0.02, num_iterations=2, steps_per_generation=1, gradient_accumulation_steps=1,
                           max_steps=10)
    cb = KLScheduleCallback.grpo_d(10, beta_min=0.0, beta_max=0.02)
    with pytest.raises(ValueError, match="reused"):
        cb.bind(SimpleNamespace(beta=0.02, args=args))
    KLScheduleCallback.grpo_d(10, beta_min=0.04, beta_max=0.1).bind(SimpleNamespace(beta=0.1, args=args))


def test_grpo_run_follows_the_schedule_through_a_zero_beta_step(tmp_path, nano_dir):
    from jrl_core import train
    from jrl_core.images import load_photos, sample_views
    from jrl_core.puzzles import PuzzleSpec, build_rows

    model, processor = nano.load_model(str(nano_dir))
    rows = build_rows(sample_views(load_photos("skimage", "train"), 8, seed=0, size=56), PuzzleSpec(m=2, n=1),
                      n_items=8, seed=0)
    lo, hi = GRPO_D_PRESETS["geometry"]
    # explore_fraction 0.5 over 2 steps: w = 1, so step 0 runs at β_mid = 0.01 and step 1 at β_min = 0.
    cb = KLScheduleCallback.grpo_d(2, beta_min=lo, beta_max=hi, explore_fraction=0.5)
    settings = dataclasses.replace(train.NANO, steps=2, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                                   beta=hi)  # non-zero at construction, so TRL builds the reference model
    trainer, log = train.train_grpo(model, processor, rows, settings, tmp_path / "run", callbacks=[cb],
                                    save_final=False)
    assert trainer.ref_model is not None
    assert cb.history == [(0, pytest.approx(0.01)), (1, 0.0)]
    assert trainer.beta == cb.schedule(1) == 0.0
    assert list(log["beta"]) == [pytest.approx(0.01), 0.0]
    assert math.isfinite(log["kl"][0]) and math.isnan(log["kl"][1])  # TRL skips the KL when β = 0
