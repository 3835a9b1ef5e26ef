"""Perception questions: labelled, deterministic, never jigsaw questions."""

import re
import string

import pytest
from PIL import ImageStat

from jrl_core import perception
from jrl_core.images import load_photos


@pytest.fixture(scope="module")
def photos():
    return load_photos("skimage", "train")


def test_items_are_deterministic_for_a_seed(photos):
    a = perception.make_items(photos, 12, seed=3, size=56)
    b = perception.make_items(photos, 12, seed=3, size=56)
    assert [(x.prompt_text(), x.answer) for x in a] == [(y.prompt_text(), y.answer) for y in b]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_every_task_answers_with_a_listed_letter(photos):
    items = perception.make_items(photos, 4 * len(perception.TASKS), seed=0, tasks=list(perception.TASKS), size=56)
    for it in items:
        assert it.answer in string.ascii_uppercase[: len(it.choices)]
        assert f"({it.answer}) " in it.prompt_text()


def test_brighter_half_label_matches_the_pixels(photos):
    for it in perception.make_items(photos, 20, seed=1, tasks=["brighter_v"], size=56):
        w, h = it.image.size
        top = ImageStat.Stat(it.image.crop((0, 0, w, h // 2)).convert("L")).mean[0]
        bottom = ImageStat.Stat(it.image.crop((0, h // 2, w, h)).convert("L")).mean[0]
        truth = "the top half" if top > bottom else "the bottom half"
        assert it.choices[string.ascii_uppercase.index(it.answer)] == truth


@pytest.mark.parametrize("family", ["brighter_relation", "brighter_grid"])
def test_brighter_relation_answer_is_set_by_the_pixels_and_balanced(photos, family):
    """brighter_relation_v/h and brighter_grid_v/h: the brighter half is k, the darker l; the gold phrase says where
    k is relative to l as the pixels show it, and each relation phrase and each letter is gold about half of the time
    (a base pretrained on it gets no "not swapped" prior from the text)."""
    items = perception.make_items(photos, 200, seed=3, tasks=[f"{family}_v", f"{family}_h"], size=56)
    phrases, letters = [], []
    for it in items:
        w, h = it.image.size
        axis = it.task[-1]
        first, second = ((0, 0, w, h // 2), (0, h // 2, w, h)) if axis == "v" else ((0, 0, w // 2, h), (w // 2, 0, w, h))
        lum = [ImageStat.Stat(it.image.crop(box).convert("L")).mean[0] for box in (first, second)]
        gold = it.choices[string.ascii_uppercase.index(it.answer)]
        k, l = re.search(r"brighter half (?:of the image )?(\d) and the darker half (\d)\.", it.question).groups()  # noqa: E741
        assert len(it.choices) == 2 and gold.startswith(f"{k} ") and gold.endswith(f" {l}")
        word = ("above" if axis == "v" else "left") if lum[0] > lum[1] else ("below" if axis == "v" else "right")
        assert word in gold
        phrases.append(gold.replace(str(k), "k").replace(str(l), "l"))
        letters.append(it.answer)
    assert 0.35 < letters.count("A") / len(letters) < 0.65
    for phrase in ("k is directly above l", "k is directly below l"):
        assert 0.15 < phrases.count(phrase) / len(phrases) < 0.35


def test_brighter_grid_is_laid_out_like_a_jigsaw_pair_prompt(photos):
    """brighter_grid_v/h carry the pair question's grid block (the same text as ``puzzles.question_text``'s, 2x1
    for v and 1x2 for h) and its relation phrases, and ask nothing about an original image."""
    from jrl_core.puzzles import question_text

    for it in perception.make_items(photos, 20, seed=5, tasks=["brighter_grid_v", "brighter_grid_h"], size=56):
        m, n = (2, 1) if it.task.endswith("_v") else (1, 2)
        pair = question_text(m, n, "pair", k=1, l=2, choices=["x", "y"])
        block = pair[pair.index("Consider a"):pair.index("For patches")]
        assert block in it.question and it.question.startswith(f"The input image is divided into {m}x{n} halves")
        assert "original" not in it.question and "permuted" not in it.question


def test_grid_relation_answers_follow_the_layout(photos):
    for it in perception.make_items(photos, 30, seed=2, tasks=["grid_relation"], size=56):
        chosen = it.choices[string.ascii_uppercase.index(it.answer)]
        k, rel_l = chosen.split(" ", 1)
        if it.prompt_text().startswith("Consider a 2x1 grid"):
            assert ("above" in chosen) == (int(k) < int(chosen.split()[-1]))


def test_no_question_is_a_jigsaw_question(photos):
    for it in perception.make_items(photos, 60, seed=4, size=56):
        text = it.prompt_text().lower()
        assert "jigsaw" not in text and "permuted" not in text and "original" not in text


def test_unknown_task_is_named_in_the_error(photos):
    with pytest.raises(ValueError, match="no_such_task"):
        perception.make_items(photos, 2, seed=0, tasks=["no_such_task"], size=56)


def _seam_jump(img, axis):
    """Mean absolute pixel change across the middle seam (rows for "v", columns for "h")."""
    import numpy as np

    a = np.asarray(img.convert("L"), dtype=float)
    if axis == "h":
        a = a.T
    h = a.shape[0] // 2
    return np.abs(a[h - 1] - a[h]).mean()


@pytest.mark.parametrize("axis", ["v", "h"])
def test_continuity_negatives_break_the_seam_and_positives_are_the_view(photos, axis):
    """A "no" item differs from the plain view only in one half, and its seam jumps more on
    average than the seams of "yes" items (one unbroken photo)."""
    items = perception.make_items(photos, 40, seed=5, tasks=[f"continuity_{axis}"], size=56)
    plain = perception.make_items(photos, 40, seed=5, tasks=["grid_relation"], size=56)  # same views, unedited
    yes, no = [], []
    for it, ref in zip(items, plain, strict=True):
        unbroken = it.choices[string.ascii_uppercase.index(it.answer)] == "yes"
        assert it.question == "Is this image one unbroken photo?"
        if unbroken:
            assert it.image.tobytes() == ref.image.tobytes()
            yes.append(_seam_jump(it.image, axis))
        else:
            w, h = it.image.size
            halves = [(0, 0, w, h // 2), (0, h // 2, w, h)] if axis == "v" else [(0, 0, w // 2, h), (w // 2, 0, w, h)]
            kept = [it.image.crop(b).tobytes() == ref.image.crop(b).tobytes() for b in halves]
            assert sum(kept) == 1  # exactly one half replaced
            no.append(_seam_jump(it.image, axis))
    assert yes and no
    assert sum(no) / len(no) > sum(yes) / len(yes)


def test_augment_never_moves_content_up_or_down():
    """The vision stage's augmentation keeps every row's content in its row (flip left-right,
    channel permutation, inversion), so "top"/"bottom" labels keep their meaning."""
    import random

    from PIL import Image

    img = Image.new("RGB", (42, 42), (200, 30, 10))
    img.paste((10, 40, 220), (0, 21, 42, 42))  # bottom half another colour
    seen = set()
    for s in range(30):
        out = perception.augment(img, random.Random(s))
        assert out.size == img.size and out.mode == "RGB"
        top, bottom = out.crop((0, 0, 42, 21)), out.crop((0, 21, 42, 42))
        assert len(top.getcolors()) == 1 and len(bottom.getcolors()) == 1  # halves stay uniform
        assert top.getcolors()[0][1] != bottom.getcolors()[0][1]
        seen.add(top.getcolors()[0][1])
    assert len(seen) > 3  # the augmentation does vary colours
    assert perception.augment(img, random.Random(5)).tobytes() == perception.augment(img, random.Random(5)).tobytes()


def _tiny_model(tiny_config, **over):
    import dataclasses

    from jrl_core import nano

    cfg = dataclasses.replace(tiny_config, **over)
    processor = nano.build_processor(cfg)
    return cfg, nano.build_model(cfg, processor.tokenizer), processor


def test_vision_stage_trains_the_encoder_only(tiny_config):
    """Stage 1 changes the vision encoder and nothing else, and reports held-out accuracy per task."""
    import torch

    cfg, model, processor = _tiny_model(tiny_config, vision_pretrain_steps=4, vision_pretrain_pool=48,
                                        vision_pretrain_tasks=("continuity_v", "same_photo_h"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rec = perception.pretrain_vision(model, processor, cfg, progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".visual." in f".{n}" for n in changed)
    assert any("patch_embed" in n for n in changed) and any("merger" in n for n in changed)
    assert set(rec["held_out_accuracy"]) == {"continuity_v", "same_photo_h"}
    assert all(0.0 <= a <= 1.0 for a in rec["held_out_accuracy"].values())
    assert len(rec["loss_curve"]) >= 2 and rec["pool"] == 48


def test_vision_stage_refuses_a_task_with_one_class(tiny_config):
    cfg, model, processor = _tiny_model(tiny_config, vision_pretrain_steps=1, vision_pretrain_pool=1,
                                        vision_pretrain_tasks=("continuity_v",))
    with pytest.raises(ValueError, match="vision_pretrain_pool"):
        perception.pretrain_vision(model, processor, cfg, progress=False)


def test_instruction_stage_keeps_a_frozen_encoder_and_unfreezes_it_after(tiny_config):
    """With ``freeze_vision`` stage 2 moves the merger (projector) and the language model but not
    the encoder's patch embedding or blocks; afterwards every parameter is trainable again."""
    import torch

    cfg, model, processor = _tiny_model(tiny_config, pretrain_steps=3, freeze_vision=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    perception.pretrain(model, processor, cfg, progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not any("visual.blocks" in n or "patch_embed" in n for n in changed)
    assert any("visual.merger" in n for n in changed) and any("language_model" in n for n in changed)
    assert all(p.requires_grad for p in model.parameters())


def test_tokenizer_corpus_is_fixed_not_the_pretraining_tasks():
    """The nano tokenizer's corpus holds the prompts of CORPUS_TASKS (recipes v6-v9's tasks), not of the current
    pretraining tasks: recipe v10 swapped grid_relation for brighter_relation and its tokenizer stayed the same."""
    texts = perception.corpus()
    assert "grid_relation" in perception.CORPUS_TASKS and "grid_relation" not in perception.DEFAULT_TASKS
    assert any(t.startswith("Consider a ") for t in texts)  # grid layout prompts
    assert "brighter_relation_v" in perception.DEFAULT_TASKS
    assert not any(t.startswith("Call the brighter half") for t in texts)


def test_token_noise_changes_only_the_question_and_draws_learned_tokens(tiny_config, photos):
    """insert_token_noise: deterministic for a seeded draw, draws only learned vocabulary tokens (no chat marker,
    image pad or answer tag), lengthens the question, and encode_sft puts the new question in front of the
    unchanged options, instruction and target."""
    import random

    from jrl_core import nano

    tok = nano.build_processor(tiny_config).tokenizer
    vocab = perception.noise_token_ids(tok)
    added = set(tok.get_added_vocab().values())
    assert vocab and not added & set(vocab) and tok.convert_tokens_to_ids("<|image_pad|>") not in vocab
    item = perception.make_items(photos, 1, seed=2, tasks=["brighter_grid_v"], size=56)[0]
    noisy = [perception.insert_token_noise(item.question, tok, random.Random(s), vocab=vocab) for s in range(8)]
    assert noisy == [perception.insert_token_noise(item.question, tok, random.Random(s), vocab=vocab)
                     for s in range(8)]
    orig = tok(item.question, add_special_tokens=False)["input_ids"]
    for q in noisy:
        ids = tok(q, add_special_tokens=False)["input_ids"]
        assert q != item.question and len(ids) > len(orig)
        assert not any(tag in q for tag in ("<answer>", "</answer>", "<|im_end|>", "<|image_pad|>"))
    processor = nano.build_processor(tiny_config)
    batch = perception.encode_sft(processor, [item, item], questions=[noisy[0], item.question])
    texts = tok.batch_decode(batch["input_ids"], skip_special_tokens=False)
    tail = item.prompt_text()[len(item.question):]
    assert noisy[0] + tail in texts[0] and item.prompt_text() in texts[1]
    assert texts[0].endswith(f"{item.answer}<|im_end|>") and texts[1].endswith(f"{item.answer}<|im_end|>")
    with pytest.raises(ValueError, match="max_runs"):
        perception.insert_token_noise(item.question, tok, random.Random(0), vocab=vocab, max_runs=0)


def test_token_noise_is_inert_when_off(tiny_config):
    """Token noise, its vocabulary and letter smoothing each change a config's hash from the all-off config (whose
    hash is what bases built before these fields have); the defaults' hash is the shipped base's card's."""
    import dataclasses

    off = dataclasses.replace(tiny_config, pretrain_token_noise=0, pretrain_token_noise_vocab="all",
                              pretrain_letter_smoothing=0)
    for field, value in (("pretrain_token_noise", 0.5), ("pretrain_token_noise_vocab", "words"),
                         ("pretrain_letter_smoothing", 0.2)):
        assert dataclasses.replace(off, **{field: value}).key() != off.key(), field
    from jrl_core import nano

    assert nano.NanoConfig().key() == nano.read_card(nano.shipped_base())["config_hash"]


def test_words_noise_vocabulary_leaves_out_indices_labels_and_letters(tiny_config):
    """noise_token_ids(kind="words"): a non-empty subset of the full vocabulary with no token whose text holds a
    digit, a parenthesis or a lone letter (so noise cannot blur position indices, choice labels or answer letters);
    an unknown kind is a ValueError naming the choices; the field's default "all" keeps a config's hash."""
    import dataclasses
    import re

    from jrl_core import nano

    tok = nano.build_processor(tiny_config).tokenizer
    full, words = perception.noise_token_ids(tok), perception.noise_token_ids(tok, "words")
    assert words and set(words) < set(full)
    texts = [tok.decode([i]) for i in words]
    assert not any(re.search(r"[0-9()]", t) for t in texts)
    assert not any(re.search(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", t) for t in texts)
    for label in ("A", "B", "1", "2", "(A)"):
        ids = tok(label, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] in full and ids[0] not in words
    with pytest.raises(ValueError, match="words"):
        perception.noise_token_ids(tok, "digits")
    noisy = dataclasses.replace(tiny_config, pretrain_token_noise=0.5, pretrain_token_noise_vocab="all")
    assert dataclasses.replace(noisy, pretrain_token_noise_vocab="words").key() != noisy.key()


def test_letter_smoothing_moves_only_the_answer_letter_target(nano_dir, photos):
    """letter_smoothed_loss: at 0 it is the model's own loss; at eps the answer-letter token's term becomes
    (1 - eps)·NLL(gold) + eps·mean NLL(other option letters), for a bare letter and after <answer> alike, and
    every other target token (the chain's "(A)", <|im_end|>) keeps its plain NLL; a bad share is a ValueError."""
    import torch

    from jrl_core import nano

    model, processor = nano.load_model(str(nano_dir))
    tok = processor.tokenizer
    items = perception.make_items(photos, 2, seed=4, tasks=["brighter_v"], size=56)
    batch = perception.encode_sft(processor, items, ["non_thinking", "thinking"])
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
        batch["labels"] = labels
        own = model(**batch).loss
    assert torch.allclose(perception.letter_smoothed_loss(logits, batch, items, tok, 0.0), own, atol=1e-5)

    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tgt = labels[:, 1:]
    valid = tgt != -100
    nll = -logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    answer_tag = tok.convert_tokens_to_ids("<answer>")
    expected = nll.clone()
    smoothed = []
    for i, it in enumerate(items):
        gold = tok.convert_tokens_to_ids(it.answer)
        other = tok.convert_tokens_to_ids("B" if it.answer == "A" else "A")
        cols = torch.nonzero(valid[i]).flatten().tolist()
        j = cols[0] if i == 0 else next(c for c in cols if batch["input_ids"][i, c] == answer_tag)
        assert tgt[i, j] == gold
        expected[i, j] = 0.7 * nll[i, j] + 0.3 * -logp[i, j, other]
        smoothed.append((i, j))
    assert len(smoothed) == 2 and sum(int(tgt[1, c] == tok.convert_tokens_to_ids(items[1].answer))
                                      for c in torch.nonzero(valid[1]).flatten().tolist()) >= 1
    got = perception.letter_smoothed_loss(logits, batch, items, tok, 0.3)
    assert torch.allclose(got, expected[valid].mean(), atol=1e-5) and not torch.allclose(got, own, atol=1e-4)
    with pytest.raises(ValueError, match="smoothing"):
        perception.letter_smoothed_loss(logits, batch, items, tok, 1.0)
    with pytest.raises(ValueError, match="items"):
        perception.letter_smoothed_loss(logits, batch, items[:1], tok, 0.3)


def test_instruction_stage_with_letter_smoothing_and_word_noise_trains_and_records_them(tiny_config):
    """pretrain with pretrain_letter_smoothing and word-vocabulary token noise: the weights move, the loss stays
    finite, the record names both settings; both fields change the config hash and are inert at their defaults."""
    import dataclasses
    import math

    import torch

    cfg, model, processor = _tiny_model(tiny_config, pretrain_steps=3, pretrain_letter_smoothing=0.2,
                                        pretrain_token_noise=0.5, pretrain_token_noise_vocab="words")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = perception.pretrain(model, processor, cfg, progress=False)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(math.isfinite(c["loss"]) for c in record["loss_curve"])
    assert record["letter_smoothing"] == 0.2 and record["token_noise_vocab"] == "words"
    assert dataclasses.replace(tiny_config, pretrain_letter_smoothing=0).key() != cfg.key()
