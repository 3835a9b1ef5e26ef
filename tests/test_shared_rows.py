"""jrl_core.shared_rows: a processor's batched calls run each distinct row once, with the full call's outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from jrl_core.shared_rows import expand_rows, row_groups, rows_shared


@pytest.fixture(scope="module")
def processor(nano_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(nano_dir))


def _images(k: int, size: int = 56) -> list:
    return [Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype("uint8")) for i in range(k)]


def _conversation(image, text: str) -> list:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def _trl_step_calls(proc, conversations, images) -> tuple:
    """The processor calls of one TRL GRPO step: the rollouts' prompt ids, each prompt's rendered text, and the
    log-prob passes' inputs."""
    from trl.data_utils import apply_chat_template

    ids = proc.apply_chat_template(conversation=conversations, add_generation_prompt=True, tokenize=True,
                                   return_dict=True)
    texts = [apply_chat_template({"prompt": c}, proc)["prompt"] for c in conversations]
    inputs = proc(images=images, text=texts, padding=True, return_tensors="pt")
    return ids, texts, inputs


def _assert_same(a, b) -> None:
    assert set(a.keys()) == set(b.keys())
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_a_grpo_step_s_processor_calls_give_the_full_calls_outputs_from_the_distinct_prompts(processor):
    distinct = _images(3)
    order = [0, 0, 1, 0, 2, 2, 1, 1]  # G copies of each prompt, interleaved
    conversations = [_conversation(distinct[i], f"Which half is on the left, image {i}? Answer (A) or (B).")
                     for i in order]
    images = [[distinct[i]] for i in order]
    plain = _trl_step_calls(processor, conversations, images)
    with rows_shared(processor) as (view, stats):
        shared = _trl_step_calls(view, conversations, images)
        assert isinstance(view, type(processor)) and view.tokenizer is processor.tokenizer
    _assert_same(plain[0], shared[0])
    assert plain[1] == shared[1]
    _assert_same(plain[2], shared[2])
    assert (stats.calls, stats.rows, stats.distinct) == (2, 16, 6)
    assert (stats.renders, stats.rendered) == (8, 3)


def test_rows_with_another_image_object_or_text_are_not_merged(processor):
    a, b = _images(2)
    twin = a.copy()  # the same pixels in another object: kept apart (images are the same only by identity)
    text = processor.apply_chat_template(_conversation(a, "Which half?"), add_generation_prompt=True)
    other = processor.apply_chat_template(_conversation(a, "Which piece?"), add_generation_prompt=True)
    images = [[a], [twin], [b], [a], [a]]
    texts = [text, text, text, text, other]
    plain = processor(images=images, text=texts, padding=True, return_tensors="pt")
    with rows_shared(processor) as (view, stats):
        shared = view(images=images, text=texts, padding=True, return_tensors="pt")
    _assert_same(plain, shared)
    assert (stats.rows, stats.distinct) == (5, 4)


def test_the_view_shares_the_processor_s_state_both_ways(processor):
    with rows_shared(processor) as (view, _):
        view.jrl_marker = 1
        assert processor.jrl_marker == 1
        del processor.jrl_marker
        assert not hasattr(view, "jrl_marker")


class _ExtraField:
    """A stand-in processor whose batched call returns a field row sharing does not know."""

    def __init__(self):
        self.calls = []

    def __call__(self, images=None, text=None, **kwargs):
        self.calls.append(len(text))
        return {"input_ids": torch.arange(len(text))[:, None], "token_boxes": torch.zeros(len(text), 4)}

    def apply_chat_template(self, conversation, **kwargs):
        return "rendered"


def test_a_call_with_an_unknown_output_field_takes_the_processor_s_own_path():
    proc = _ExtraField()
    with rows_shared(proc) as (view, stats):
        out = view(text=["a", "a", "b"], padding=True)
    assert proc.calls == [2, 3]  # tried on the distinct rows, then the full call
    assert torch.equal(out["input_ids"], torch.arange(3)[:, None]) and out["token_boxes"].shape == (3, 4)
    assert stats.calls == 0


def test_expand_rows_copies_per_row_per_image_and_per_patch_fields_in_row_order():
    # distinct rows: 0 has 1 image (grid 1x2x2: 4 patches), 1 none, 2 has 2 images (1x1x2 and 1x2x1: 2 + 2 patches)
    grid = torch.tensor([[1, 2, 2], [1, 1, 2], [1, 2, 1]])
    pixels = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 3)
    out = {"input_ids": [[1, 2], [3], [4, 5, 6]], "attention_mask": torch.tensor([[1, 1], [0, 1], [1, 1]]),
           "image_grid_thw": grid, "pixel_values": pixels}
    inverse = [2, 0, 0, 1, 2]
    got = expand_rows(out, inverse, [1, 0, 2])
    assert got["input_ids"] == [[4, 5, 6], [1, 2], [1, 2], [3], [4, 5, 6]]
    assert torch.equal(got["attention_mask"], torch.tensor([[1, 1], [1, 1], [1, 1], [0, 1], [1, 1]]))
    assert torch.equal(got["image_grid_thw"], grid[[1, 2, 0, 0, 1, 2]])
    patches = [4, 5, 6, 7, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]
    assert torch.equal(got["pixel_values"], pixels[patches])
    assert expand_rows({**out, "image_sizes": grid}, inverse, [1, 0, 2]) is None  # unknown field
    assert expand_rows(out, inverse, [1, 1, 2]) is None  # the images do not match the rows


def test_row_groups_keeps_first_rows_in_order():
    assert row_groups(["b", "a", "b", "c", "a"]) == ([0, 1, 3], [0, 1, 0, 2, 1])
    assert row_groups([]) == ([], [])
