"""The experiment config: recipes, overrides and the settings they resolve to (no training here)."""

import pytest
import yaml

from jrl_core import experiment, schedules, train
from jrl_core.experiment import Experiment, apply_overrides, load_recipe


def all_recipes():
    return sorted(p for p in experiment.RECIPES_DIR.rglob("*.yaml") if "accelerate" not in p.parts)


@pytest.mark.parametrize("path", all_recipes(), ids=lambda p: str(p.relative_to(experiment.RECIPES_DIR)))
def test_every_recipe_loads_and_resolves_its_settings(path):
    exp = load_recipe(path)
    s = exp.grpo_settings()
    assert s.steps > 0 and s.completions_per_step() > 0
    names, weights = exp.reward_setup()
    assert len(names) == len(weights) == len(s.reward_weights)
    exp.sft_settings()
    exp.kl_callback(s.steps)


def test_paper_recipes_carry_protocol_6():
    for name in ("paper/qwen2.5-vl-3b_2x1_pair_nothink", "paper/qwen2.5-vl-7b_2x1_pair_think",
                 "paper/qwen2-vl-2b_2x1_pair_nothink", "paper/internvl2.5-2b_2x1_pair_think"):
        exp = load_recipe(name)
        s = exp.grpo_settings()
        assert (s.prompts_per_step, s.num_generations, s.learning_rate, s.beta) == (64, 8, 1e-6, 0.04)
        assert s.lr_scheduler_type == "linear" and s.loss_type == "grpo" and s.bf16
        assert s.steps == (1000 if exp.think else 2000)
        assert s.max_completion_length == 512 and exp.n_test == 1000


def test_overrides_set_top_level_and_nested_fields():
    exp = load_recipe("nano/rq1_2x1_pair", ["grpo.steps=7", "mode=thinking", "lora={r: 4}"])
    assert exp.grpo_settings().steps == 7 and exp.think and exp.lora_settings().r == 4
    assert apply_overrides(exp, {"seed": 3}).grpo_settings().seed == 3


def test_unknown_fields_and_recipes_are_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'stpes'"):
        load_recipe(None, ["stpes=3"])
    with pytest.raises(FileNotFoundError, match="nano/rq1_2x1_pair"):
        load_recipe("nano/nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"modle": "nano"}))
    with pytest.raises(ValueError, match="modle"):
        load_recipe(bad)
    with pytest.raises(ValueError, match="unknown GRPO setting"):
        load_recipe(None, ["grpo.lr=1"]).grpo_settings()
    with pytest.raises(ValueError, match="algorithm"):
        Experiment(algorithm="ppo")


def test_mode_defaults_give_the_papers_rewards():
    assert Experiment(mode="thinking").reward_setup() == (("accuracy", "format"), (1.0, 0.5))
    assert Experiment(mode="no_thinking_rl").reward_setup() == (("equality",), (1.0,))
    assert Experiment(mode="cls_rl_thinking").reward_setup()[1] == (1.0, 1.0)


def test_grpo_d_recipe_builds_the_eq3_callback_and_a_nonzero_starting_beta():
    exp = load_recipe("nano/grpo_d_counting")
    s = exp.grpo_settings()
    assert s.beta > 0  # TRL builds the reference model only for β ≠ 0
    cb = exp.kl_callback(100)
    lo, hi = schedules.GRPO_D_PRESETS["counting"]
    assert cb.schedule(0) == pytest.approx((lo + hi) / 2) and cb.schedule(30) == pytest.approx(lo)
    assert cb.schedule(100) == pytest.approx(hi)
    assert Experiment().kl_callback(100) is None


def test_curriculum_recipe_switches_size_by_step():
    exp = load_recipe("nano/curriculum_3x1_4x1")
    cur = exp.curriculum_()
    assert cur.size_at(0) == (3, 1) and cur.size_at(49) == (3, 1) and cur.size_at(50) == (4, 1)


def test_train_rows_follow_the_curriculum_by_step():
    exp = Experiment(curriculum="2x1:2,1x2")
    rows = experiment.train_rows(exp, n_rows=8, steps=4)
    assert [(r["m"], r["n"]) for r in rows] == [(2, 1)] * 4 + [(1, 2)] * 4
    again = experiment.train_rows(exp, n_rows=8, steps=4)
    assert [r["solution"] for r in rows] == [r["solution"] for r in again]


def test_lora_settings_target_only_the_language_model_when_vision_is_frozen():
    cfg = train.LoraSettings(r=4, freeze_vision=True).peft_config()
    assert "language_model" in cfg.target_modules and "visual" not in cfg.target_modules
    assert "visual" in train.LoraSettings(r=4, freeze_vision=False).peft_config().target_modules


def test_grpo_config_splits_the_step_over_processes(monkeypatch, tmp_path):
    s = train.preset("paper", per_device_batch=4)
    monkeypatch.setenv("WORLD_SIZE", "8")
    cfg = train.grpo_config(s, tmp_path)
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 512
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert train.grpo_config(s, tmp_path).gradient_accumulation_steps == 128  # one GPU keeps the batch of 512
    with pytest.raises(ValueError, match="must divide"):
        train.grpo_config(train.preset("paper", per_device_batch=5), tmp_path)


def test_letter_centring_recipe_turns_the_control_on_and_the_default_leaves_it_off():
    on = load_recipe(experiment.RECIPES_DIR / "nano" / "letter_centring_2x1_pair.yaml").grpo_settings()
    off = load_recipe(experiment.RECIPES_DIR / "nano" / "rq1_2x1_pair.yaml").grpo_settings()
    assert on.letter_centring and not off.letter_centring
    assert train.PAPER.letter_centring is False  # the papers' GRPO has no such control
