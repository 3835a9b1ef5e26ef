"""The nano model and the GRPO/evaluation path, on a tiny configuration (seconds, not minutes)."""

import dataclasses
import json

import pytest
import torch

from jrl_core import evaluate, nano, train
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows


def test_nano_checkpoint_is_a_safetensors_qwen25vl_folder(nano_dir):
    assert (nano_dir / "model.safetensors").exists()
    cfg = json.loads((nano_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl"
    assert cfg["text_config"]["eos_token_id"] is not None and cfg["text_config"]["pad_token_id"] is not None
    meta = json.loads((nano_dir / "nano.json").read_text())
    assert set(meta["pretraining"]["held_out_accuracy"]) == set(meta["pretraining"]["tasks"])


def test_build_nano_reuses_the_cached_folder(nano_dir, tiny_config):
    before = (nano_dir / "model.safetensors").stat().st_mtime_ns
    again = nano.build_nano(tiny_config, cache_dir=nano_dir.parent, progress=False)
    assert again == nano_dir and (again / "model.safetensors").stat().st_mtime_ns == before


def test_nano_build_is_deterministic_for_a_seed(tiny_config):
    cfg = dataclasses.replace(tiny_config, pretrain_steps=0, vision_pretrain_steps=0)
    a = nano.build_model(cfg, nano.build_processor(cfg).tokenizer)
    b = nano.build_model(cfg, nano.build_processor(cfg).tokenizer)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_tokenizer_keeps_letters_and_tags_single_tokens():
    tok = nano.build_tokenizer(512)
    for t in ["A", "B", "7", "<think>", "</answer>"]:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert tok.decode(tok("résumé ✓ 漢字")["input_ids"]) == "résumé ✓ 漢字"  # byte fallback


def test_load_model_rejects_a_missing_folder_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        nano.load_model(str(tmp_path / "nope"))


def test_generic_path_loads_a_saved_folder_and_grpo_trains_from_it(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))  # AutoProcessor + AutoModelForImageTextToText
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    spec = PuzzleSpec(m=2, n=1, question_type="pair")
    views = sample_views(load_photos("skimage", "train"), 8, seed=0, size=56)
    rows = build_rows(views, spec, n_items=8, seed=0)
    settings = dataclasses.replace(train.NANO, steps=2, prompts_per_step=2, num_generations=4, warmup_ratio=0)
    w0 = {k: v.clone() for k, v in model.named_parameters()}

    def length_reward(completions, **kwargs):  # varies within a group, so advantages are non-zero
        return [float(len(str(c)) % 3) / 2 for c in completions]

    trainer, log = train.train_grpo(model, processor, rows, settings, tmp_path / "run",
                                    reward_names=("accuracy", length_reward))
    assert len(log) == 2 and "rewards/accuracy_reward/mean" in log and "kl" in log
    assert (tmp_path / "run" / "train_log.csv").exists()
    changed = any(not torch.equal(w0[k], v) for k, v in trainer.model.named_parameters())
    assert changed, "GRPO must update the policy"
    assert trainer.args.beta == 0.04 and trainer.args.loss_type == "grpo"


def test_train_grpo_asks_for_enough_rows(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    with pytest.raises(ValueError, match="rows"):
        train.train_grpo(model, processor, [], dataclasses.replace(train.NANO, steps=2), tmp_path)


def test_evaluate_scores_completions_and_keeps_them(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1), n_items=6, image_size=56)
    res = evaluate.evaluate(model, processor, rows, max_new_tokens=3, progress=False)
    assert res.n == 6 and len(res.table) == 6
    assert 0 <= res.accuracy <= 1 and res.ci95[0] <= res.accuracy <= res.ci95[1]
    assert res.random == 0.5
    assert res.table["correct"].sum() == round(res.accuracy * 6)


def test_test_rows_are_the_same_on_every_call():
    a = evaluate.test_rows(PuzzleSpec(), n_items=5, image_size=56)
    b = evaluate.test_rows(PuzzleSpec(), n_items=5, image_size=56)
    assert [r["solution"] for r in a] == [r["solution"] for r in b]
    assert all(x["image"].tobytes() == y["image"].tobytes() for x, y in zip(a, b, strict=True))


def test_wilson_interval_brackets_the_proportion():
    lo, hi = evaluate.wilson_interval(150, 300)
    assert lo < 0.5 < hi and round(hi - lo, 2) == 0.11


def test_pretrained_nano_build_is_deterministic_for_a_seed(nano_dir, tiny_config, tmp_path):
    from safetensors.torch import load_file

    again = nano.build_nano(tiny_config, cache_dir=tmp_path, progress=False)
    a, b = load_file(nano_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_preset_applies_overrides_and_ignores_none():
    s = train.preset("nano", steps=7, beta=None)
    assert s.steps == 7 and s.beta == train.NANO.beta
    assert train.preset("paper").learning_rate == 1e-6 and train.preset("paper").prompts_per_step == 64
    assert train.preset("nano", think=True).max_completion_length == train.THINK_COMPLETION_LENGTH["nano"] == 64
    assert train.preset("paper", think=True).max_completion_length == 512
    assert train.preset("nano", think=True, max_completion_length=32).max_completion_length == 32


def test_preset_names_bad_input():
    with pytest.raises(ValueError, match="scale"):
        train.preset("huge")
    with pytest.raises(ValueError, match="stpes"):
        train.preset("nano", stpes=3)


def test_patch_and_merge_size_set_the_image_token_count():
    """126 px, 14 px patches merged 3x3: a 9x9 patch grid -> 9 image tokens (the 2x1 seam falls
    inside a patch row); a size that does not divide is refused with the fix."""
    cfg = nano.NanoConfig(image_size=126, merge_size=3, pretrain_steps=0, vocab_size=512)
    processor = nano.build_processor(cfg)
    model = nano.build_model(cfg, processor.tokenizer)
    from PIL import Image

    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                                         tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], images=[Image.new("RGB", (126, 126))], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 9
    assert model(**batch).logits.shape[-1] == model.config.text_config.vocab_size
    with pytest.raises(ValueError, match="multiple of 42"):
        nano.build_processor(nano.NanoConfig(image_size=112, merge_size=3))


def test_pretrain_overrides_set_both_stages():
    assert nano.pretrain_overrides(None) == {}
    assert nano.pretrain_overrides(3) == {"pretrain_steps": 3, "vision_pretrain_steps": 3, "vision_pretrain_pool": 96}
    assert nano.pretrain_overrides(5000)["vision_pretrain_pool"] == nano.NanoConfig().vision_pretrain_pool
    with pytest.raises(ValueError, match="nano_pretrain_steps"):
        nano.pretrain_overrides(-1)
