"""Scoring each distinct prompt once (jrl_core.shared_prompts) changes neither hidden states nor gradients."""

import dataclasses

import pandas as pd
import pytest
import torch

from jrl_core import nano, train
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows
from jrl_core.shared_prompts import find_backbones, prompt_groups, share_prompts


def _rows():
    """Two 2x1 non-thinking prompts and one 3x1 thinking prompt: different lengths, so rows are left padded."""
    photos = load_photos("skimage", "train")
    return (build_rows(sample_views(photos, 2, seed=0, size=56), PuzzleSpec(m=2, n=1, question_type="pair"),
                       n_items=2, seed=0)
            + build_rows(sample_views(photos, 1, seed=1, size=56), PuzzleSpec(m=3, n=1, question_type="pair", think=True),
                         n_items=1, seed=0))


def _batch(processor, copies=4):
    """Each prompt ``copies`` times (as TRL repeats a prompt G times), then 3 completion tokens per rollout
    (letters and end of turn; rollouts 0 and 1 identical), as TRL's scoring pass sees them."""
    rows = _rows()
    texts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
             for r in rows for _ in range(copies)]
    b = processor(text=texts, images=[r["image"] for r in rows for _ in range(copies)], return_tensors="pt",
                  padding=True)
    n = len(texts)
    opts = torch.tensor(processor.tokenizer.convert_tokens_to_ids(["A", "B", "<|im_end|>"]))
    comp = opts[torch.randint(0, 3, (n, 3), generator=torch.Generator().manual_seed(0))]
    comp[1] = comp[0]
    width = b["input_ids"].shape[1]
    batch = dict(input_ids=torch.cat([b["input_ids"], comp], 1),
                 attention_mask=torch.cat([b["attention_mask"], torch.ones(n, 3, dtype=torch.long)], 1),
                 mm_token_type_ids=torch.cat([b["mm_token_type_ids"],
                                              torch.zeros(n, 3, dtype=b["mm_token_type_ids"].dtype)], 1),
                 pixel_values=b["pixel_values"], image_grid_thw=b["image_grid_thw"], use_cache=False)
    return batch, width


def test_prompt_groups_by_tokens_mask_and_images():
    ids = torch.tensor([[0, 5, 6, 1], [0, 5, 6, 2], [5, 5, 6, 1], [0, 5, 6, 1]])
    mask = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    assert prompt_groups(ids, mask, 3) == ([0, 2, 3], [0, 0, 1, 2])  # row 3: same tokens, other mask
    assert prompt_groups(ids, mask, 3, image_keys=[(0,), (1,), (0,), (0,)]) == ([0, 1, 2, 3], [0, 1, 2, 3])
    assert prompt_groups(ids, mask, 4) == ([0, 1, 2, 3], [0, 1, 2, 3])  # a prefill pass: the whole row is prompt
    for bad in (0, 5):
        with pytest.raises(ValueError, match="prompt_length"):
            prompt_groups(ids, mask, bad)
    with pytest.raises(ValueError, match="image_keys"):
        prompt_groups(ids, mask, 3, image_keys=[(0,)])


def test_shared_prompts_give_the_same_hidden_states_and_gradients(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    batch, width = _batch(processor)
    w = torch.randn(model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(1))

    def run():
        model.zero_grad()
        hidden = model.model(**batch).last_hidden_state
        (hidden[:, width - 1:] @ w).pow(2).mean().backward()  # what the head scores: last prompt token onwards
        return hidden.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    h0, g0 = run()
    handles = share_prompts(model)
    assert len(handles) == 1 and find_backbones(model) == [handles[0].backbone]
    assert share_prompts(model)[0] is handles[0]  # idempotent
    run()
    assert handles[0].calls == 0  # outside scoring() the model's own forward runs
    with handles[0].scoring(width):
        h1, g1 = run()
    assert (handles[0].calls, handles[0].rows, handles[0].prompts) == (1, 12, 3)
    assert bool((batch["attention_mask"][:, :width] == 0).any())  # left padding was exercised
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(h1[real], h0[real], rtol=1e-4, atol=1e-5)
    assert g1.keys() == g0.keys() and any(k.startswith("model.visual") for k in g0)
    for k in g0:  # float summation order differs: within 1e-4 of each tensor's largest entry
        assert (g1[k] - g0[k]).abs().max() <= 1e-4 * g0[k].abs().max(), k
    handles[0].remove()
    assert not hasattr(handles[0].backbone, "_jrl_prompt_sharing")
    with handles[0].scoring(width):
        run()
    assert handles[0].calls == 1  # the wrapper is gone


def test_gradient_checkpointing_falls_back_to_the_plain_forward(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    batch, width = _batch(processor, copies=2)
    sharing = share_prompts(model)[0]
    model.gradient_checkpointing_enable()
    model.train()
    with sharing.scoring(width):
        model.model(**batch).last_hidden_state.sum().backward()  # checkpointed layers would drop the cache
        assert sharing.calls == 0
        with torch.no_grad():  # no backward, no recomputation: shared (the reference model's pass)
            model.model(**batch)
    assert sharing.calls == 1


def test_grpo_trainer_scores_each_prompt_once_with_the_same_losses(grpo_case, tmp_path):
    model, processor, rows, settings, state = (grpo_case.model, grpo_case.processor, grpo_case.rows,
                                               grpo_case.settings, grpo_case.state)
    trainer, _ = train.train_grpo(model, processor, rows, settings, tmp_path / "on", save_final=False)
    sharing = list(trainer.prompt_sharing)
    assert len(sharing) == 2  # policy and reference model (β = 0.04)
    assert all(s.calls >= 2 and s.rows == 4 * s.prompts for s in sharing)  # G = 4 rollouts per prompt
    assert sharing[0].prefills == 2  # the policy's generation prefill, once per step
    on = pd.read_csv(tmp_path / "on" / "train_log.csv")
    model.load_state_dict(state)
    off = dataclasses.replace(settings, share_prompts=False)
    trainer, _ = train.train_grpo(model, processor, rows, off, tmp_path / "off", save_final=False)
    assert trainer.prompt_sharing == []
    model.load_state_dict(state)
    no_prefill = dataclasses.replace(settings, share_prefill=False)
    trainer, _ = train.train_grpo(model, processor, rows, no_prefill, tmp_path / "no_prefill", save_final=False)
    policy = trainer.prompt_sharing[0]
    assert policy is sharing[0]  # one wrapper per backbone, kept across trainers: its counters accumulate
    assert policy.prefills == 2 and policy.calls >= 4  # scored shared again, generated plainly
    unshared_prefill = pd.read_csv(tmp_path / "no_prefill" / "train_log.csv")
    for col in ("loss", "kl", "reward", "entropy"):
        torch.testing.assert_close(torch.tensor(unshared_prefill[col].values), torch.tensor(on[col].values),
                                   rtol=1e-3, atol=1e-5)
    plain = pd.read_csv(tmp_path / "off" / "train_log.csv")
    for col in ("loss", "kl", "reward", "entropy"):
        torch.testing.assert_close(torch.tensor(on[col].values), torch.tensor(plain[col].values), rtol=1e-3, atol=1e-5)


def test_generation_prefill_runs_each_prompt_once_with_the_same_completions(nano_dir, sample_generation):
    model, processor = nano.load_model(str(nano_dir))
    rows = _rows()  # two 2x1 prompts and a longer 3x1 one: left padding, so an attention mask
    texts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
             for r in rows for _ in range(4)]
    batch = processor(text=texts, images=[r["image"] for r in rows for _ in range(4)], return_tensors="pt",
                      padding=True, padding_side="left")
    assert bool((batch["attention_mask"] == 0).any())

    seq0, scores0 = sample_generation(model, batch)
    sharing = share_prompts(model)[0]
    with sharing.generating():
        seq1, scores1 = sample_generation(model, batch)
    assert sharing.prefills == 1 and (sharing.rows, sharing.prompts) == (12, 3)
    assert torch.equal(seq1, seq0)  # the same draws on the same batch
    finite = scores0.isfinite()
    torch.testing.assert_close(scores1[finite], scores0[finite], rtol=1e-4, atol=1e-4)
    sample_generation(model, batch)  # outside generating(): the model's own forward
    assert sharing.prefills == 1


def test_prefill_keeps_caches_it_cannot_share_and_the_old_cache_name(nano_dir):
    from transformers import DynamicCache, StaticCache

    model, processor = nano.load_model(str(nano_dir))
    batch, width = _batch(processor, copies=2)
    prompt = {k: (v[:, :width] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v)
              for k, v in batch.items() if k != "use_cache"}
    sharing = share_prompts(model)[0]
    cache = DynamicCache(config=model.config.get_text_config())
    with torch.no_grad():
        model.model(**prompt, past_key_values=cache, use_cache=True)  # the deprecated name, outside any block
    assert cache.get_seq_length() == width  # the caller's cache was filled, not dropped
    static = StaticCache(config=model.config.get_text_config(), max_cache_len=width + 4)
    with sharing.generating(), torch.no_grad():
        model.generate(**{k: v for k, v in prompt.items()}, past_key_values=static, max_new_tokens=2,
                       do_sample=False)
    assert sharing.prefills == 0  # a static cache has no row copy: the model's own pass


def test_encoded_images_group_rows_only_when_they_map_to_rows():
    from jrl_core.shared_prompts import PromptSharing

    ids = torch.tensor([[1, 9, 9, 2]] * 4)
    mask = torch.ones_like(ids)
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    pooled = (a, a.clone(), b, a)  # one image per row; rows 0, 1 and 3 show the same picture
    assert PromptSharing._plan_encoded(ids, mask, pooled, [2, 2, 2, 2]) == ([0, 2], [0, 0, 1, 0], 1)
    assert PromptSharing._plan_encoded(ids, mask, pooled, [2, 2, 2, 3]) is None  # tokens do not match images
    assert PromptSharing._plan_encoded(ids, mask, pooled[:3], None) is None  # 3 images for 4 rows
    assert PromptSharing._plan_encoded(ids, mask, (a, b, a + 1, a + 2), None) is None  # nothing repeats
