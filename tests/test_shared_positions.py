"""Rotary positions once per row layout (jrl_core.shared_positions) and a heap that keeps freed memory
(jrl_core.memory): the same numbers, less work."""

import dataclasses
import platform

import pandas as pd
import pytest
import torch

from jrl_core import memory, nano, train
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows
from jrl_core.shared_positions import layout_groups, share_positions


def _prompts(processor, copies, padding_side="left"):
    """Two 2x1 non-thinking prompts and a longer 3x1 thinking one, each ``copies`` times (as TRL repeats a prompt
    G times), through the processor: prompt tokens padded on ``padding_side``, pixel values, grids."""
    photos = load_photos("skimage", "train")
    rows = (build_rows(sample_views(photos, 2, seed=0, size=56), PuzzleSpec(m=2, n=1, question_type="pair"),
                       n_items=2, seed=0)
            + build_rows(sample_views(photos, 1, seed=1, size=56), PuzzleSpec(m=3, n=1, question_type="pair", think=True),
                         n_items=1, seed=0))
    texts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
             for r in rows for _ in range(copies)]
    return processor(text=texts, images=[r["image"] for r in rows for _ in range(copies)], return_tensors="pt",
                     padding=True, padding_side=padding_side)


def _batch(processor, copies=4):
    """:func:`_prompts`, then a completion of 1-3 tokens per rollout, right padded with mask 0: the rows TRL's
    scoring pass builds."""
    b = _prompts(processor, copies)
    n = b["input_ids"].shape[0]
    gen = torch.Generator().manual_seed(0)
    comp = torch.randint(7, 50, (n, 3), generator=gen)  # distinct tokens: the layout ignores which ones
    comp_mask = (torch.arange(3) < torch.randint(1, 4, (n, 1), generator=gen)).long()
    types = b["mm_token_type_ids"]
    return dict(input_ids=torch.cat([b["input_ids"], comp], 1),
                attention_mask=torch.cat([b["attention_mask"], comp_mask], 1),
                mm_token_type_ids=torch.cat([types, torch.zeros(n, 3, dtype=types.dtype)], 1),
                image_grid_thw=b["image_grid_thw"])


def test_layout_groups_ignore_tokens_and_keep_masks_types_and_grids_apart():
    types = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    grids = torch.tensor([[1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 4, 1]])
    keep, inverse, images = layout_groups(types, mask, grids)
    assert (keep, inverse) == ([0, 2, 3, 4], [0, 0, 1, 2, 3])  # row 1 = row 0; mask, types and grid differ after
    assert images == [0, 2, 3, 4]  # each kept row's image, in row order
    assert layout_groups(types, None, grids)[:2] == ([0, 3, 4], [0, 0, 0, 1, 2])
    assert layout_groups(torch.tensor([[0, 2, 0]]), None, None) is None  # videos: the model's own call
    assert layout_groups(types, mask, grids[:4]) is None  # five image runs, four grids
    assert layout_groups(types, mask, torch.cat([grids, grids[:1]])) is None  # a grid left over
    masked_image = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0]])
    assert layout_groups(masked_image, torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1]]), grids[:1]) == ([0, 1], [0, 1], [0])


def test_shared_positions_give_the_same_integers_as_the_models_loop(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    batch = _batch(processor)
    backbone = model.model
    expected = backbone.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                       image_grid_thw=batch["image_grid_thw"], attention_mask=batch["attention_mask"])
    handles = share_positions(model)
    assert len(handles) == 1 and share_positions(model)[0] is handles[0]  # idempotent
    got = backbone.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                  image_grid_thw=batch["image_grid_thw"], attention_mask=batch["attention_mask"],
                                  pixel_values=None, use_cache=False)  # generate passes extra model kwargs
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert bool((batch["attention_mask"] == 0).any())  # left and right padding were exercised
    h = handles[0]
    assert h.rows == 12 and 3 <= h.computed < 12  # 3 prompts × 4 rollouts, a few completion lengths each
    out_plain = model.model(**batch, use_cache=False)  # the forward asks for positions through the wrapper too
    assert h.calls == 2
    h.remove()
    assert not hasattr(backbone, "_jrl_position_sharing")
    out_again = model.model(**batch, use_cache=False)
    real = batch["attention_mask"].bool()
    assert torch.equal(out_plain.last_hidden_state[real], out_again.last_hidden_state[real])


def test_generation_with_shared_positions_writes_the_same_completions(nano_dir, sample_generation):
    model, processor = nano.load_model(str(nano_dir))
    batch = _prompts(processor, copies=3)
    seq0, scores0 = sample_generation(model, batch)
    sharing = share_positions(model)[0]
    seq1, scores1 = sample_generation(model, batch)
    # 3 prompts, each 3 times: at most 3 layouts (the two 2x1 prompts may share one: tokens do not count)
    assert sharing.calls >= 1 and sharing.rows == 9 * sharing.calls and sharing.computed <= 3 * sharing.calls
    assert torch.equal(seq1, seq0) and torch.equal(scores1, scores0)  # the same positions: the same floats


def test_grpo_trainer_with_shared_positions_logs_the_same_training(grpo_case, tmp_path):
    model, processor, rows, settings, state = (grpo_case.model, grpo_case.processor, grpo_case.rows,
                                               grpo_case.settings, grpo_case.state)
    assert settings.share_positions and settings.keep_freed_memory  # the nano preset's defaults
    trainer, _ = train.train_grpo(model, processor, rows, settings, tmp_path / "on", save_final=False)
    handles = trainer.position_sharing
    assert len(handles) == 2  # policy and reference model (β = 0.04)
    assert handles[0].computed < handles[0].rows  # G = 4 rollouts of a prompt share a layout
    model.load_state_dict(state)
    for h in handles:
        h.remove()
    trainer, _ = train.train_grpo(model, processor, rows, dataclasses.replace(settings, share_positions=False),
                                  tmp_path / "off", save_final=False)
    assert trainer.position_sharing == []
    on, off = (pd.read_csv(tmp_path / d / "train_log.csv") for d in ("on", "off"))
    cols = ["loss", "reward", "kl", "entropy"]
    assert on[cols].equals(off[cols])  # the same integers in, the same floats out


def test_keep_freed_memory_sets_glibc_thresholds_and_checks_its_limit():
    done = memory.keep_freed_memory()
    assert isinstance(done, bool)
    if platform.libc_ver()[0] not in ("glibc", ""):  # musl, macOS, Windows: nothing to set
        assert done is False
    assert memory.keep_freed_memory(1 << 20) is done  # the smallest limit: the same C library answers alike
    for bad in (0, 1 << 31):
        with pytest.raises(ValueError, match="limit_bytes"):
            memory.keep_freed_memory(bad)


def test_only_qwen_vl_style_rope_methods_are_wrapped_and_odd_calls_pass_through(nano_dir):
    from jrl_core.shared_positions import PositionSharing, _shareable

    def omni_style(input_ids, image_grid_thw, video_grid_thw, attention_mask, use_audio_in_video, audio_lengths,
                   second_per_grids):
        return "omni"

    assert not _shareable(omni_style)
    model, processor = nano.load_model(str(nano_dir))
    assert _shareable(model.model.get_rope_index)
    batch = _batch(processor, copies=2)
    expected = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
                                          None, attention_mask=batch["attention_mask"])
    sharing = share_positions(model)[0]
    assert isinstance(sharing, PositionSharing)
    got = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"], None,
                                     attention_mask=batch["attention_mask"])  # positional, as the signature allows
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]) and sharing.computed < sharing.rows
    one = model.model.get_rope_index(batch["input_ids"][:1], batch["mm_token_type_ids"][:1],
                                     image_grid_thw=batch["image_grid_thw"][:1],
                                     attention_mask=batch["attention_mask"][:1])  # one row: the model's own call
    assert torch.equal(one[0], expected[0][:, :1])
