"""SFT, LoRA, resume and the completion log on the tiny nano model (a few steps each)."""

import dataclasses
import json

import pytest
import torch
from transformers import TrainerCallback

from jrl_core import analysis, experiment, nano, runs, schedules, train
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows

TINY_GRPO = dataclasses.replace(train.NANO, steps=4, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                                max_completion_length=4, report_to=())


def rows_for(n, think=False, seed=0):
    views = sample_views(load_photos("skimage", "train"), n, seed=seed, size=56)
    return build_rows(views, PuzzleSpec(m=2, n=1, question_type="pair", think=think), n_items=n, seed=seed)


def varied_reward(completions, **kwargs):  # 0, 1, 0, 1, ... : differs within every group, so advantages are non-zero
    return [float(i % 2) for i in range(len(completions))]


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_completion_log_has_every_rollout_with_rewards_and_row_columns(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    s = dataclasses.replace(TINY_GRPO, steps=2)
    train.train_grpo(model, processor, rows_for(8), s, tmp_path, reward_names=("accuracy", varied_reward),
                     save_final=False)
    log = analysis.load_completion_log(tmp_path)
    assert len(log) == 2 * 2 * 4  # steps × prompts × G
    assert sorted(log["step"].unique()) == [1, 2]
    assert {"prompt_id", "completion", "reward_accuracy", "reward_varied", "advantage", "length_tokens",
            "length_chars", "solution", "answer_type", "m", "n", "mode"} <= set(log.columns)
    assert (log.groupby(["step", "prompt_id"]).size() == 4).all()  # whole groups of G completions
    assert (log["length_chars"] == log["completion"].str.len()).all()
    assert log["length_tokens"].between(1, 4).all()


def test_sft_trains_on_gold_answers_and_saves_a_checkpoint_grpo_starts_from(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    w0 = params(model)
    examples = train.sft_rows(rows_for(8))
    assert examples[0]["completion"][0]["content"] in ("A", "B")
    trainer, log = train.train_sft(model, processor, examples, train.SFTSettings(steps=2, batch_size=4,
                                                                                 learning_rate=1e-3),
                                   tmp_path / "sft")
    assert len(log) == 2 and "loss" in log
    assert any(not torch.equal(w0[k], v) for k, v in trainer.model.named_parameters())
    cold, proc2 = nano.load_model(str(tmp_path / "sft" / "final"))  # the SFT → RL cold start
    train.train_grpo(cold, proc2, rows_for(4), dataclasses.replace(TINY_GRPO, steps=1), tmp_path / "rl",
                     save_final=False)


def test_sft_masks_the_prompt_so_only_the_answer_is_learned(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    trainer, _ = train.train_sft(model, processor, train.sft_rows(rows_for(4)), train.SFTSettings(steps=1, batch_size=4),
                                 tmp_path, save_final=False)
    batch = next(iter(trainer.get_train_dataloader()))
    labelled = (batch["labels"] != -100).sum(dim=1)
    assert (labelled <= 3).all() and (labelled >= 1).all()  # the letter (+ end of turn), never the prompt


def test_rejection_sampling_keeps_only_correct_well_formed_chains(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    rows = rows_for(4, think=True)
    kept_rows, kept, acc = train.rejection_sample(model, processor, rows, k=2, max_new_tokens=8)
    assert 0.0 <= acc <= 1.0 and len(kept_rows) == len(kept) == round(acc * 4)
    from jrl_core import rewards
    for r, c in zip(kept_rows, kept, strict=True):
        assert rewards.accuracy_reward([c], [r["solution"]], ["letter"], [2], [1], [True]) == [1.0]


def test_lora_adapters_train_and_merge_into_a_plain_checkpoint(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    base = params(model)
    lora = train.LoraSettings(r=4, alpha=8, dropout=0.0, freeze_vision=True)
    s = dataclasses.replace(TINY_GRPO, steps=2, learning_rate=1e-2)
    trainer, _ = train.train_grpo(model, processor, rows_for(8), s, tmp_path, lora=lora,
                                  reward_names=("accuracy", varied_reward), save_final=False)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names) and not any("visual" in n for n in names)
    train.merge_lora(trainer.model).save_pretrained(tmp_path / "final")
    processor.save_pretrained(tmp_path / "final")
    merged, _ = nano.load_model(str(tmp_path / "final"))
    assert not any("lora" in k for k in merged.state_dict())
    after = dict(merged.named_parameters())
    changed = [k for k in base if not torch.equal(base[k], after[k].detach())]
    assert changed and all("language_model" in k for k in changed)  # vision tower untouched


def test_freeze_vision_keeps_the_vision_tower_fixed_in_full_fine_tuning(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    base = params(model)
    s = dataclasses.replace(TINY_GRPO, steps=1, learning_rate=1e-2)
    trainer, _ = train.train_grpo(model, processor, rows_for(4), s, tmp_path, freeze_vision=True,
                                  reward_names=("accuracy", varied_reward), save_final=False)
    now = dict(trainer.model.named_parameters())
    assert all(torch.equal(base[k], now[k]) for k in base if "visual" in k)
    assert any(not torch.equal(base[k], now[k]) for k in base if "visual" not in k)
    with pytest.raises(ValueError, match="no parameters"):
        train.freeze_vision_tower(torch.nn.Linear(2, 2))


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resumed_run_repeats_the_uninterrupted_data_order_and_kl_schedule(nano_dir, tmp_path):
    s = dataclasses.replace(TINY_GRPO, steps=4, save_steps=2)
    rows = experiment.train_rows(experiment.Experiment(curriculum="2x1:2,1x2"), steps=4, prompts_per_step=2,
                                 view_size=56)

    def run(out, extra=(), resume=None):
        model, processor = nano.load_model(str(nano_dir))
        kl = schedules.KLScheduleCallback.grpo_d(4, beta_min=0.02, beta_max=0.1)
        train.train_grpo(model, processor, rows, s, out, callbacks=[kl, *extra], save_final=False,
                         reward_names=("accuracy", varied_reward), resume_from_checkpoint=resume)
        return kl

    full = run(tmp_path / "full")
    run(tmp_path / "cut", extra=[StopAt(2)])
    assert (tmp_path / "cut" / "checkpoint-2").exists()
    assert analysis.load_completion_log(tmp_path / "cut")["step"].max() == 2
    resumed = run(tmp_path / "cut", resume=True)
    a, b = analysis.load_completion_log(tmp_path / "full"), analysis.load_completion_log(tmp_path / "cut")
    assert len(a) == len(b) == 4 * 2 * 4
    assert a.groupby("step")["prompt_id"].apply(sorted).to_dict() == b.groupby("step")["prompt_id"].apply(sorted).to_dict()
    sizes = {step: set(zip(g["m"], g["n"], strict=True)) for step, g in b.groupby("step")}
    assert sizes == {1: {(2, 1)}, 2: {(2, 1)}, 3: {(1, 2)}, 4: {(1, 2)}}  # each step only its stage's size
    assert {step: set(zip(g["m"], g["n"], strict=True)) for step, g in a.groupby("step")} == sizes
    assert [h for h in full.history if h[0] >= 2] == resumed.history  # β(s) continues where it stopped
    log_cut = json.loads((tmp_path / "cut" / "checkpoint-2" / "trainer_state.json").read_text())
    assert log_cut["global_step"] == 2
    import pandas as pd
    assert pd.read_csv(tmp_path / "cut" / "train_log.csv")["step"].tolist() == [1, 2, 3, 4]


def test_run_experiment_does_sft_then_grpo_and_writes_metrics(nano_dir, tmp_path):
    exp = experiment.Experiment(name="t", model=str(nano_dir), algorithm="sft_grpo", n_test=4,
                                sft={"steps": 1, "batch_size": 4}, grpo={"steps": 1, "prompts_per_step": 2,
                                                                         "num_generations": 4, "report_to": []},
                                kl_schedule={"preset": "counting"})
    test = rows_for(4, seed=99)
    out = experiment.run_experiment(exp, tmp_path, test=test)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["kind"] == "experiment" and m["metrics"]["n_test"] == 4
    assert m["details"]["before"]["n"] == m["details"]["after"]["n"] == 4
    assert m["details"]["experiment"]["algorithm"] == "sft_grpo"
    assert (tmp_path / "sft" / "train_log.csv").exists() and (tmp_path / "grpo" / "completions.jsonl").exists()
    assert "beta" in out["grpo_log"]


def test_curriculum_runs_through_the_trainer_one_size_per_step(nano_dir, tmp_path):
    """TRL consumes the step-ordered rows in order: every rollout of step s has the stage's size."""
    exp = experiment.Experiment(curriculum="2x1:2,3x1", seed=3)
    s = dataclasses.replace(TINY_GRPO, steps=4, prompts_per_step=4, num_generations=2)
    rows = experiment.train_rows(exp, steps=4, prompts_per_step=4, view_size=56)
    model, processor = nano.load_model(str(nano_dir))
    train.train_grpo(model, processor, rows, s, tmp_path, save_final=False, reward_names=("accuracy", varied_reward))
    records = runs.read_completion_records(tmp_path / runs.COMPLETION_LOG)
    assert len(records) == 4 * 4 * 2
    by_step: dict[int, set] = {}
    for r in records:
        by_step.setdefault(r["step"], set()).add((r["m"], r["n"]))
    assert by_step == {1: {(2, 1)}, 2: {(2, 1)}, 3: {(3, 1)}, 4: {(3, 1)}}
    # and the prompts of step s are exactly rows s·P … s·P + P − 1
    ids = {step: {r["prompt_id"] for r in records if r["step"] == step} for step in by_step}
    expected = {step: {train.to_dataset(rows[(step - 1) * 4: step * 4])[i]["prompt_id"] for i in range(4)}
                for step in by_step}
    assert ids == expected


def test_a_seed_is_read_back_only_for_the_same_recipe(tmp_path):
    import pandas as pd

    exp = experiment.Experiment(seed=1)
    folder = runs.RunFolder(tmp_path / "seed1")
    folder.root.mkdir()
    for which in ("before", "after"):
        pd.DataFrame({"image_id": ["p#0"], "correct": [1.0]}).to_csv(folder.eval_table(which), index=False)
    summary = {"accuracy": 1.0, "ci_low": 0.2, "ci_high": 1.0, "share_A": 1.0}
    runs.write_metrics(folder.root, runs.MetricsRecord(kind="experiment", details={
        "experiment": exp.to_dict(), "before": summary, "after": summary}))
    assert experiment._seed_outputs(folder, exp)["cached"] is True
    other = experiment.apply_overrides(exp, {"grpo.steps": 7})
    assert experiment._seed_outputs(folder, other) is None  # another recipe: rerun, never mix
