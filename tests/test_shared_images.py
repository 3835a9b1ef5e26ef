"""Encoding each distinct image once (jrl_core.shared_images) changes neither outputs nor gradients."""

import dataclasses

import pytest
import torch

from jrl_core import nano, train
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows
from jrl_core.shared_images import find_vision_towers, share_images, unique_images


def _batch(processor, copies=3, n=4):
    rows = build_rows(sample_views(load_photos("skimage", "train"), n, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=n, seed=0)
    texts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
             for r in rows for _ in range(copies)]
    images = [r["image"] for r in rows for _ in range(copies)]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def test_unique_images_groups_identical_images_only():
    pv = torch.arange(24, dtype=torch.float32).view(6, 4)
    pv = torch.cat([pv[:2], pv[:2], pv[2:4], pv[:2]])  # images 0, 1 and 3 equal; image 2 differs
    grid = torch.tensor([[1, 1, 2]] * 4)
    keep, inverse = unique_images(pv, grid)
    assert keep == [0, 2] and inverse == [0, 0, 1, 0]
    keep, inverse = unique_images(pv[:4].clone(), torch.tensor([[1, 1, 2], [1, 2, 1]]))  # same values, other grid
    assert keep == [0, 1] and inverse == [0, 1]
    with pytest.raises(ValueError, match="grid_thw"):
        unique_images(pv, torch.tensor([[1, 1, 2]]))


def test_shared_images_give_the_same_logits_and_gradients(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    batch = _batch(processor)

    def run():
        model.zero_grad()
        out = model(**batch)
        out.logits.float().pow(2).mean().backward()
        return out.logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    logits0, grads0 = run()
    handles = share_images(model)
    assert len(handles) == 1 and find_vision_towers(model) == [handles[0].tower]
    assert share_images(model)[0] is handles[0]  # idempotent: no second pair of hooks
    logits1, grads1 = run()
    assert handles[0].seen == 12 and handles[0].encoded == 4  # 4 distinct images × 3 copies
    torch.testing.assert_close(logits1, logits0, rtol=1e-5, atol=1e-6)
    assert grads1.keys() == grads0.keys() and any(k.startswith("model.visual") for k in grads0)
    for k in grads0:
        torch.testing.assert_close(grads1[k], grads0[k], rtol=1e-4, atol=1e-7)
    handles[0].remove()
    assert not hasattr(handles[0].tower, "_jrl_image_sharing")
    run()
    assert handles[0].seen == 12  # hooks gone


def test_grpo_trainer_shares_images_of_a_group(nano_dir, tmp_path):
    model, processor = nano.load_model(str(nano_dir))
    rows = build_rows(sample_views(load_photos("skimage", "train"), 4, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=4, seed=0)
    settings = dataclasses.replace(train.NANO, steps=1, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                                   save_fraction=0.0, report_to=(), share_prompts=False)  # prompt sharing would
    # hand the scoring passes each image once already (jrl_core.shared_prompts); here every pass sees all G copies
    trainer, _ = train.train_grpo(model, processor, rows, settings, tmp_path / "run", save_final=False)
    sharing = trainer.image_sharing
    assert len(sharing) == 2  # policy and reference model (β = 0.04)
    assert all(s.seen == 4 * s.encoded for s in sharing if s.calls)  # G = 4 rollouts share each image
    assert sum(s.calls for s in sharing) >= 3  # generation, reference and policy passes
    off = dataclasses.replace(settings, share_images=False)
    trainer, _ = train.train_grpo(model, processor, rows, off, tmp_path / "off", save_final=False)
    assert trainer.image_sharing == []


def test_distinct_tensors_compares_only_within_a_key():
    import pytest
    import torch

    from jrl_core.shared_images import distinct_tensors

    a, b = torch.zeros(2), torch.ones(2)
    assert distinct_tensors([a, b, a.clone(), b], ["k", "k", "k", "k"]) == ([0, 1], [0, 1, 0, 1])
    assert distinct_tensors([a, a.clone()], ["k1", "k2"]) == ([0, 1], [0, 1])  # other keys: never the same
    with pytest.raises(ValueError, match="keys"):
        distinct_tensors([a], [])


def test_preprocessing_shared_gives_the_same_inputs_and_preprocesses_each_image_once(nano_dir):
    from PIL import Image

    from jrl_core.shared_images import PreprocessSharing, image_key, preprocessing_shared

    _, processor = nano.load_model(str(nano_dir))
    original = processor.image_processor
    plain = _batch(processor, copies=3)
    with preprocessing_shared(processor) as sharing:
        assert isinstance(processor.image_processor, PreprocessSharing)
        assert processor.image_processor.merge_size == original.merge_size  # every other attribute is the original's
        first, second = _batch(processor, copies=3), _batch(processor, copies=3)
        assert sharing.seen == 24 and sharing.processed == 4  # 4 distinct images, 3 copies, asked for twice
    assert processor.image_processor is original  # put back
    for out in (first, second):
        assert out.keys() == plain.keys()
        for k in plain:
            assert torch.equal(out[k], plain[k]), k  # the same bits, not just close
    # content, not identity: an equal copy is the same image, one changed pixel is another
    img = Image.new("RGB", (56, 56), (10, 20, 30))
    other = img.copy()
    other.putpixel((0, 0), (10, 20, 31))
    assert image_key(img) == image_key(img.copy()) != image_key(other)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    recoloured = pal.copy()
    recoloured.putpalette([0, 0, 0, 0, 255, 0])  # the same indices, another colour
    assert image_key(pal) == image_key(pal.copy()) != image_key(recoloured)


def test_preprocessing_shared_hashes_an_image_object_once_per_call(nano_dir, monkeypatch):
    from PIL import Image

    from jrl_core import shared_images

    _, processor = nano.load_model(str(nano_dir))
    hashed = []
    real_key = shared_images.image_key
    monkeypatch.setattr(shared_images, "image_key", lambda im: hashed.append(im) or real_key(im))
    red, blue = Image.new("RGB", (56, 56), (200, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 200))
    images = [red] * 8 + [blue] * 8 + [red.copy()]  # G rows sharing one decoded image; an equal copy
    plain = processor.image_processor(images, return_tensors="pt")
    sharing = shared_images.PreprocessSharing(processor.image_processor)
    out = sharing(images, return_tensors="pt")
    assert len(hashed) == 3 and sharing.processed == 2  # one hash per object, one preprocessing per content
    assert torch.equal(out["pixel_values"], plain["pixel_values"])
    assert torch.equal(out["image_grid_thw"], plain["image_grid_thw"])


def test_preprocessing_shared_hands_other_calls_to_the_image_processor_unchanged(nano_dir):
    import numpy as np

    from jrl_core.shared_images import preprocessing_shared

    _, processor = nano.load_model(str(nano_dir))
    arrays = [np.zeros((56, 56, 3), dtype=np.uint8)] * 2  # not PIL images: not shared
    plain = processor.image_processor(arrays, return_tensors="pt")
    with preprocessing_shared(processor) as sharing:
        out = processor.image_processor(arrays, return_tensors="pt")
        assert sharing.seen == 0 and sharing.processed == 0
    assert torch.equal(out["pixel_values"], plain["pixel_values"])


def test_preprocessing_shared_restores_the_processor_after_an_error(nano_dir):
    from jrl_core.shared_images import preprocessing_shared

    _, processor = nano.load_model(str(nano_dir))
    original = processor.image_processor
    with pytest.raises(RuntimeError, match="boom"), preprocessing_shared(processor):
        raise RuntimeError("boom")
    assert processor.image_processor is original
    with preprocessing_shared(processor.tokenizer) as sharing:  # a text-only tokenizer: nothing to share
        assert sharing is None


def _same_training_on_and_off(nano_dir, tmp_path, field: str, check, **fixed) -> None:
    """Two tiny GRPO steps (2 prompts × G = 4) with ``GRPOSettings.<field>`` on, then off (``fixed``: other settings
    for both); ``check(on, trainer, processor, original image processor)`` after each; the two training logs must be
    equal (an exact speed-up)."""
    rows = build_rows(sample_views(load_photos("skimage", "train"), 4, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=4, seed=0)
    settings = dataclasses.replace(train.NANO, steps=2, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                                   save_fraction=0.0, report_to=(), **fixed)
    logs = {}
    for on in (True, False):
        model, processor = nano.load_model(str(nano_dir))
        original = processor.image_processor
        trainer, logs[on] = train.train_grpo(model, processor, rows, dataclasses.replace(settings, **{field: on}),
                                             tmp_path / str(on), save_final=False)
        check(on, trainer, processor, original)
    cols = ["loss", "reward", "kl"]
    assert logs[True][cols].equals(logs[False][cols])  # exact: the same inputs give the same training


def test_grpo_trainer_preprocesses_each_image_once_per_step_with_the_same_training(nano_dir, tmp_path):
    def check(on, trainer, processor, original):
        assert processor.image_processor is original  # put back after every step
        if on:  # 2 steps × 2 prompts, each image asked for by G = 4 rollouts in TRL's two processor calls
            assert trainer.preprocessed == {"seen": 2 * 2 * 4 * 2, "processed": 2 * 2}
        else:
            assert trainer.preprocessed == {"seen": 0, "processed": 0}

    _same_training_on_and_off(nano_dir, tmp_path, "share_preprocessing", check, share_rows=False)


def test_grpo_trainer_processes_each_prompt_once_per_step_with_the_same_training(nano_dir, tmp_path):
    def check(on, trainer, processor, original):
        assert trainer.processing_class is processor  # the row-sharing view is put back after every step
        if on:  # 2 steps x TRL's two batched processor calls, each on 2 prompts x G = 4 rows
            assert trainer.processor_rows == {"rows": 2 * 2 * 8, "distinct": 2 * 2 * 2}
        else:
            assert trainer.processor_rows == {"rows": 0, "distinct": 0}

    _same_training_on_and_off(nano_dir, tmp_path, "share_rows", check)


def test_preprocessing_shared_keeps_each_image_of_mixed_sizes_exact():
    """Dynamic resolution (the Qwen hub checkpoints' processors): images of different sizes get different patch
    grids; every image still gets its own patches, bit for bit."""
    import numpy as np
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from jrl_core.shared_images import preprocessing_shared

    class Holder:  # stands in for a processor: only its image_processor attribute is used
        image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224)

    rng = np.random.default_rng(0)
    sizes = [(84, 56), (56, 112), (140, 140)]
    distinct = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images = [[distinct[i]] for i in (0, 1, 0, 2, 1, 2)]  # one list per prompt, repeats in between
    holder = Holder()
    plain = holder.image_processor(images, return_tensors="pt")
    with preprocessing_shared(holder) as sharing:
        shared = holder.image_processor(images, return_tensors="pt")
    assert sharing.seen == 6 and sharing.processed == 3
    assert len(set(map(tuple, plain["image_grid_thw"].tolist()))) == 3  # three grids: really mixed sizes
    for k in ("pixel_values", "image_grid_thw"):
        assert torch.equal(shared[k], plain[k]), k


def test_decoded_once_gives_the_same_rows_and_decodes_each_image_once():
    import numpy as np
    from datasets import Image

    from jrl_core.shared_images import DecodeSharing, decoded_once

    rows = build_rows(sample_views(load_photos("skimage", "train"), 4, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=4, seed=0)
    plain = train.to_dataset(rows)
    shared = train.to_dataset(rows, decode_once=True)
    assert isinstance(plain.features["image"], Image) and plain.features["image"].decode  # the argument is untouched
    assert shared.column_names == plain.column_names and len(shared) == len(plain)
    order = [0, 0, 0, 1, 2, 2, 3, 1]  # a GRPO fetch: each prompt several times
    a, b = plain.__getitems__(order), shared.__getitems__(order)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        assert {k: v for k, v in x.items() if k != "image"} == {k: v for k, v in y.items() if k != "image"}
        assert (x["image"].mode, x["image"].size) == (y["image"].mode, y["image"].size)
        assert np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))  # the decoder's pixels, bit for bit
    assert b[0]["image"] is b[1]["image"] and b[0]["image"] is not b[3]["image"]
    assert shared[2]["image"].size == plain[2]["image"].size  # single rows too

    transform = DecodeSharing()
    stored = plain.cast_column("image", Image(decode=False))[order]
    out = transform(stored)
    assert (transform.seen, transform.decoded) == (8, 4) and out["prompt_id"] == stored["prompt_id"]
    assert decoded_once(plain.remove_columns("image")).column_names == [c for c in plain.column_names if c != "image"]


def test_grpo_trainer_decodes_each_image_once_per_step_with_the_same_training(nano_dir, tmp_path):
    def check(on, trainer, processor, original):
        transform = (trainer.train_dataset.format.get("format_kwargs") or {}).get("transform")
        assert (getattr(transform, "decoded", None) == 2 * 2) is on  # 2 steps × 2 distinct images, each fetched 4 times

    _same_training_on_and_off(nano_dir, tmp_path, "share_decoding", check)


def test_to_dataset_stores_lossless_raw_or_png_and_leaves_other_images_to_datasets():
    import io

    from PIL import Image

    rows = build_rows(sample_views(load_photos("skimage", "train"), 3, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=3, seed=0)
    for decode_once in (False, True):
        ds = train.to_dataset(rows, decode_once=decode_once)
        for got, r in zip(ds[0:3]["image"], rows, strict=True):
            assert got.mode == r["image"].mode and got.tobytes() == r["image"].tobytes()  # the same pixels
        assert ds.column_names == [k for k in rows[0] if k != "seed"] + ["prompt_id"]  # the rows' own order
    assert train.to_dataset(rows)._fingerprint == train.to_dataset(rows)._fingerprint  # from the data, not random
    assert train.to_dataset(rows)._fingerprint != train.to_dataset(rows[:2])._fingerprint
    stored = train.stored_image(rows[0]["image"])
    assert rows[0]["image"].mode == "RGB"
    assert Image.open(io.BytesIO(stored["bytes"])).format == "PPM" and stored["path"] is None  # raw pixels
    rgba = rows[0]["image"].convert("RGBA")
    png = Image.open(io.BytesIO(train.stored_image(rgba)["bytes"]))
    assert png.format == "PNG" and png.tobytes() == rgba.tobytes()  # no PPM for alpha: lossless PNG
    grey = rows[0]["image"].convert("L")
    again = Image.open(io.BytesIO(train.stored_image(grey)["bytes"]))
    assert again.mode == "L" and again.tobytes() == grey.tobytes()
    cmyk = Image.new("CMYK", (8, 8))
    jpeg = Image.open(io.BytesIO(_jpeg_bytes()))
    assert train.stored_image(cmyk) is cmyk and train.stored_image(jpeg) is jpeg  # datasets' own encoding
    assert train.stored_image("photo.png") == "photo.png"
    with pytest.raises(ValueError, match="compress_level"):
        train.stored_image(rows[0]["image"], compress_level=10)


def _jpeg_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="JPEG")
    return buffer.getvalue()
