"""The experiment config: recipes, overrides and the settings they resolve to (no training here)."""

import re

import pytest
import yaml

from jrl_core import config, experiment, schedules, train
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


# --- configuration resolved once, validated at load (issue 14 item 7, issue 18 items 3-4, 8) ---------------

BAD_OVERRIDES = [  # (override, the field the message must name)
    ("grpo.steps=abc", "grpo.steps"),
    ("seed=1.5", "seed"),
    ("lora=5", "lora"),
    ("dtype=int3", "dtype"),
    ("grpo.learning_rate=fast", "grpo.learning_rate"),
    ("trainer.foo=1", "trainer.foo"),
    ("size=0x0", "size"),  # YAML alone would read 0x0 as the hex int 0
    ("grpo.steps=-5", "grpo.steps"),
    ("grpo=5", "grpo"),
    ("grpo.steps", "grpo.steps"),  # no '='
    ("grpo.num_generations=1", "grpo.num_generations"),
    ("grpo.beta=-0.1", "grpo.beta"),
    ("grpo.prompts_per_step=0", "grpo.prompts_per_step"),
    ("grpo.bf16=1", "grpo.bf16"),
    ("grpo.seed=3", "grpo.seed"),
    ("grpo.per_device_batch=7", "grpo.per_device_batch"),
    ("n_test=0", "n_test"),
    ("seed=-1", "seed"),
    ("scale=huge", "scale"),
    ("algorithm=ppo", "algorithm"),
    ("sft_data=silver", "sft_data"),
    ("question_type=puzzle", "question_type"),
    ("mode=thinkin", "mode"),
    ("rewards=[accuracy, speed]", "rewards"),
    ("reward_weights=[1.0]", "reward_weights"),
    ("curriculum=3x1:a", "curriculum"),
    ("sft.batch_size=0", "sft.batch_size"),
    ("lora.r=0", "lora.r"),
    ("nano.image_size=100", "nano.image_size"),
    ("kl_schedule.preset=steep", "kl_schedule.preset"),
    ("kl_schedule.kind=linear", "kl_schedule.kind"),
    ("trainer.learning_rate=1e-5", "grpo.learning_rate"),  # set through grpo, not twice
    ("seed.x=1", "seed"),
    ("lora={r: 4", "lora"),
]


@pytest.mark.parametrize(("override", "field"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_a_bad_override_fails_at_load_naming_the_field(override, field):
    with pytest.raises(ValueError, match=re.escape(field)) as err:
        load_recipe("nano/rq1_2x1_pair", [override])
    assert isinstance(err.value, config.RecipeError)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("override", "expected"), [
    ("grpo.steps=abc", "expected an int > 0"),
    ("seed=1.5", "expected an int >= 0"),
    ("dtype=int3", "one of 'auto', 'bf16', 'fp32', 'fp16'"),
    ("trainer.foo=1", "unknown trl.GRPOConfig keyword; known: "),
    ("grpo.lr=1", "did you mean grpo.learning_rate?"),
])
def test_the_message_says_what_is_allowed(override, expected):
    with pytest.raises(config.RecipeError, match=re.escape(expected)):
        load_recipe("nano/rq1_2x1_pair", [override])


def test_string_fields_keep_the_text_of_yaml_scalars(tmp_path):
    exp = load_recipe("nano/rq1_2x1_pair", ["name=no", "photo_source=2024-01-01"])
    assert exp.name == "no" and exp.photo_source == "2024-01-01"
    assert load_recipe("nano/rq1_2x1_pair", ['name="quoted"']).name == "quoted"
    recipe = tmp_path / "no.yaml"
    recipe.write_text("name: no\nsize: 1x2\ngrpo: {lr_scheduler_type: constant}\n")
    assert load_recipe(recipe).name == "no"
    with pytest.raises(config.RecipeError, match="size='0x0'"):
        apply_overrides(Experiment(), {"size": "0x0"})


def test_values_are_resolved_once_into_typed_settings():
    exp = load_recipe("nano/rq1_2x1_pair", ["grpo.learning_rate=1e-5", "grpo.report_to=[]", "grpo.beta=0"])
    assert exp.grpo == {"learning_rate": 1e-5, "report_to": (), "beta": 0.0}  # PyYAML reads 1e-5 as text
    assert exp.grpo_settings() is exp.plan.grpo and exp.plan.grpo.learning_rate == 1e-5
    assert Experiment(grpo={"steps": None}).grpo == {}  # None = the preset's value
    assert Experiment(**exp.to_dict()) == exp
    assert Experiment(reward_weights=[1, 2]).reward_weights == (1.0, 2.0)  # ints are numbers
    assert Experiment(mode="thinking", lora={"r": 4}).plan.lora.r == 4
    assert Experiment(model="Qwen/Qwen2.5-VL-3B-Instruct").plan.nano is None


def test_a_grpo_d_schedule_is_checked_at_load():
    with pytest.raises(config.RecipeError, match="beta_min <= beta_max"):
        Experiment(kl_schedule={"beta_min": 0.2, "beta_max": 0.1})
    with pytest.raises(config.RecipeError, match="preset or beta_min and beta_max, not both"):
        Experiment(kl_schedule={"preset": "counting", "beta_min": 0.1, "beta_max": 0.2})
    with pytest.raises(config.RecipeError, match="TRL builds no reference model"):
        Experiment(kl_schedule={"beta_min": 0.0, "beta_max": 0.1})
    with pytest.raises(config.RecipeError, match="explore_fraction"):
        Experiment(kl_schedule={"preset": "counting", "explore_fraction": 1.0})


def test_trainer_keywords_are_checked_against_grpo_config():
    exp = load_recipe("nano/rq1_2x1_pair", ["trainer.use_vllm=false", "trainer.top_p=0.9"])
    assert exp.trainer == {"use_vllm": False, "top_p": 0.9}
    with pytest.raises(config.RecipeError, match=r"trainer.use_vllm='maybe': expected true or false"):
        load_recipe("nano/rq1_2x1_pair", ["trainer.use_vllm=maybe"])


def test_recipe_file_errors_name_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ngrpo: {steps: 5\nseed: 1\n")
    with pytest.raises(config.RecipeError, match=r"broken.yaml: line 3, column \d+: malformed YAML"):
        load_recipe(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrpo:\n  steps: abc\n")
    with pytest.raises(config.RecipeError, match=r"bad.yaml, line 3: grpo.steps='abc'"):
        load_recipe(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(config.RecipeError, match="appears twice"):
        load_recipe(twice)
    with pytest.raises(config.RecipeError, match="is a folder.*nano/rq1_2x1_pair"):
        load_recipe(experiment.RECIPES_DIR / "nano")
    with pytest.raises(config.RecipeError, match="is a folder"):
        load_recipe("paper")
    with pytest.raises(FileNotFoundError, match="does not exist either"):
        load_recipe(tmp_path / "missing" / "x.yaml")


def test_an_unreachable_hub_model_fails_in_seconds(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "_can_connect", lambda host, port, timeout: (False, "test: no network"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(config.RecipeError, match="hub is unreachable.*HF_HUB_OFFLINE=1"):
        config.check_model_reachable("nobody-jrl-test/no-such-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(config.RecipeError, match="not in the Hugging Face cache"):
        config.check_model_reachable("nobody-jrl-test/no-such-model")
    with pytest.raises(config.RecipeError, match="not a hub id"):
        config.check_model_reachable("./runs/missing/final")
    assert config.check_model_reachable("nano") == "nano"
    assert config.check_model_reachable(str(tmp_path)) == "local"


def _notebook(path, source):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    return path


def test_notebook_parameters_are_checked_against_the_parameters_cell(tmp_path):
    nb = _notebook(tmp_path / "nb.ipynb", 'seed = 0\nmodel = "nano"\nsteps = None\nrun_dir = None\n')
    assert config.notebook_overrides(nb, [("seed", "3"), ("model", "no"), ("steps", "[1, 2]")]) == {
        "seed": 3, "model": "no", "steps": [1, 2]}
    with pytest.raises(config.RecipeError, match=r"-p seeed: unknown parameter of nb.ipynb \(did you mean 'seed'\?\); "
                                                  r"known: seed, model, steps"):
        config.notebook_overrides(nb, [("seeed", "3")])
    with pytest.raises(config.RecipeError, match="run_dir is set by the runner"):
        config.notebook_overrides(nb, [("run_dir", "x")])
