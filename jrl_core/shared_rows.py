"""Run each distinct row of a processor call once: GRPO hands the processor every prompt G times.

TRL's ``GRPOTrainer`` repeats each prompt G times in a step's batch (its ``RepeatSampler``) and runs the whole batch
through the processor twice: ``apply_chat_template(conversation=[...], tokenize=True)`` for the rollouts' prompt ids,
and ``processor(images=..., text=..., padding=True)`` for the log-prob passes' image inputs, after rendering every
prompt's chat template once more. At nano scale a step is 16 distinct prompts × 8: the text half of those calls
(rendering, tokenizing, expanding the image placeholders, token types, tensors) was ~90 ms of a 0.84-s step on one
core (``cProfile``, session 19), seven eighths of it repeated.

Within :func:`rows_shared`, a view of the processor (an instance of a subclass of its class that shares its state, so
``isinstance`` checks and every other attribute behave as before)

1. runs a batched call whose rows repeat (equal text and the same image objects, or equal conversations with the
   same image objects) on the distinct rows only, and copies each row's outputs to every row that repeats it:
   per-row fields (``input_ids``, ``attention_mask``, ``mm_token_type_ids``), per-image ones (``image_grid_thw``)
   and per-patch ones (``pixel_values``), in row order;
2. renders a single conversation's chat template (``tokenize=False``) once per distinct conversation and options.

Padding is the same (the distinct rows have the batch's longest row), and every row's tokens and pixels are computed
as the full call computes them, so the outputs are equal element for element (tested): an exact speed-up. A call
whose outputs hold any other field, or whose images are not given per row, takes the processor's own path
unchanged. Images count as the same only when they are the same object (``jrl_core.shared_images.DecodeSharing``
hands the G rows of a prompt one decoded image). :class:`jrl_core.train.GRPOSettings` ``share_rows`` turns it on
(default).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

__all__ = ["RowStats", "expand_rows", "row_groups", "rows_shared"]

ROW_FIELDS = ("input_ids", "attention_mask", "mm_token_type_ids")
"""Outputs with one entry per row (lists of lists, or tensors with rows first)."""
IMAGE_FIELDS = ("image_grid_thw",)
"""Outputs with one entry per image, in row order."""
PATCH_FIELDS = ("pixel_values",)
"""Outputs with one entry per image patch (``prod(image_grid_thw[i])`` of them for image ``i``), in row order."""


@dataclass
class RowStats:
    """What a :func:`rows_shared` block did: ``calls`` batched calls shared, ``rows`` rows they received,
    ``distinct`` rows they ran; ``renders`` / ``rendered``: chat-template renderings asked for / actually run."""

    calls: int = 0
    rows: int = 0
    distinct: int = 0
    renders: int = 0
    rendered: int = 0

    def add(self, rows: int, distinct: int) -> None:
        """Count one shared batched call of ``rows`` rows, ``distinct`` of them run."""
        self.calls += 1
        self.rows += rows
        self.distinct += distinct


def row_groups(keys: list) -> tuple[list[int], list[int]]:
    """``(keep, inverse)`` for hashable row ``keys``: ``keep`` the first row of each distinct key, in order;
    ``inverse[r]`` the position in ``keep`` of row ``r``'s key."""
    seen: dict = {}
    keep: list[int] = []
    inverse: list[int] = []
    for r, key in enumerate(keys):
        if key not in seen:
            seen[key] = len(keep)
            keep.append(r)
        inverse.append(seen[key])
    return keep, inverse


def expand_rows(out, inverse: list[int], images_per_row: list[int]):
    """The outputs of a call on distinct rows, copied out to every row (``inverse[r]``: row ``r``'s distinct row;
    ``images_per_row``: images of each distinct row). Returns ``out`` with its fields replaced (the same mapping
    type), or None when it holds a field other than :data:`ROW_FIELDS`, :data:`IMAGE_FIELDS` and
    :data:`PATCH_FIELDS`, or the image fields do not match ``images_per_row`` (the caller then runs the full call).
    """
    import torch

    fields = set(out.keys())
    if not fields <= {*ROW_FIELDS, *IMAGE_FIELDS, *PATCH_FIELDS}:
        return None
    data = {}
    inv = torch.tensor(inverse, dtype=torch.long)
    for k in fields & set(ROW_FIELDS):
        v = out[k]
        if isinstance(v, torch.Tensor):
            data[k] = v.index_select(0, inv)
        elif isinstance(v, list) and len(v) == len(images_per_row):
            data[k] = [list(v[i]) for i in inverse]
        else:
            return None
    grid = out.get("image_grid_thw")
    if "pixel_values" in fields or grid is not None:
        if not isinstance(grid, torch.Tensor) or grid.shape[0] != sum(images_per_row):
            return None
        first = [0]
        for n in images_per_row:
            first.append(first[-1] + n)
        images = [j for i in inverse for j in range(first[i], first[i + 1])]
        data["image_grid_thw"] = grid.index_select(0, torch.tensor(images, dtype=torch.long))
        if "pixel_values" in fields:
            pixels = out["pixel_values"]
            sizes = grid.prod(dim=1).tolist()
            if not isinstance(pixels, torch.Tensor) or pixels.shape[0] != sum(sizes):
                return None
            start = [0]
            for n in sizes:
                start.append(start[-1] + n)
            patches = torch.cat([torch.arange(start[j], start[j + 1]) for j in images]) if images else \
                torch.zeros(0, dtype=torch.long)
            data["pixel_values"] = pixels.index_select(0, patches)
    if hasattr(out, "data") and isinstance(out.data, dict):  # transformers' BatchFeature / BatchEncoding
        out.data = data
        return out
    return type(out)(data)


def _image_key(value) -> tuple | None:
    """A row's images as a key (the same objects, in order), or None when they are not one row's list."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(id(v) for v in value)
    return None


def _conversation_key(value):
    """A hashable key of a conversation, images by identity; None for a value it does not know."""
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = _conversation_key(v)
            if key is None and v is not None:
                return None
            items.append((k, key))
        return ("dict", tuple(sorted(items, key=lambda kv: str(kv[0]))))
    if isinstance(value, (list, tuple)):
        keys = [_conversation_key(v) for v in value]
        return None if any(k is None and v is not None for k, v in zip(keys, value, strict=True)) else ("list", tuple(keys))
    if isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)
    if value is None:
        return ("none",)
    if type(value).__module__.startswith("PIL."):
        return ("image", id(value))
    return None


def _images_in(conversation) -> int:
    """How many image parts a conversation holds (``{"type": "image", ...}`` content entries)."""
    n = 0
    for message in conversation:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            n += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
    return n


class _RowSharing:
    """Mixed into a processor's own class by :func:`rows_shared` (see the module docstring)."""

    _jrl_stats: RowStats
    _jrl_rendered: dict

    def __call__(self, images=None, text=None, *args, **kwargs):
        stats = type(self)._jrl_stats
        if (not args and isinstance(text, list) and len(text) > 1 and all(isinstance(t, str) for t in text)
                and (images is None or (isinstance(images, list) and len(images) == len(text)))):
            image_keys = [() for _ in text] if images is None else [_image_key(v) for v in images]
            if all(k is not None for k in image_keys):
                keep, inverse = row_groups(list(zip(text, image_keys, strict=True)))
                if len(keep) < len(text):
                    sub = None if images is None else [images[i] for i in keep]
                    out = super().__call__(images=sub, text=[text[i] for i in keep], **kwargs)
                    done = expand_rows(out, inverse, [len(image_keys[i]) for i in keep])
                    if done is not None:
                        stats.add(len(text), len(keep))
                        return done
        return super().__call__(images, text, *args, **kwargs)

    def apply_chat_template(self, conversation, *args, **kwargs):
        stats = type(self)._jrl_stats
        batched = (isinstance(conversation, (list, tuple)) and len(conversation) > 0
                   and all(isinstance(c, (list, tuple)) for c in conversation))
        if not args and batched and len(conversation) > 1 and kwargs.get("tokenize") and kwargs.get("return_dict"):
            keys = [_conversation_key(c) for c in conversation]
            if all(k is not None for k in keys):
                keep, inverse = row_groups(keys)
                if len(keep) < len(conversation):
                    out = super().apply_chat_template([conversation[i] for i in keep], **kwargs)
                    done = expand_rows(out, inverse, [_images_in(conversation[i]) for i in keep])
                    if done is not None:
                        stats.add(len(conversation), len(keep))
                        return done
        elif not args and not batched and isinstance(conversation, (list, tuple)) and not kwargs.get("tokenize"):
            options = _conversation_key(kwargs)
            key = _conversation_key(conversation)
            if key is not None and options is not None:
                stats.renders += 1
                cache = type(self)._jrl_rendered
                if (key, options) not in cache:
                    stats.rendered += 1
                    cache[(key, options)] = super().apply_chat_template(conversation, **kwargs)
                return cache[(key, options)]
        return super().apply_chat_template(conversation, *args, **kwargs)


@contextlib.contextmanager
def rows_shared(processor):
    """Within the block, yields ``(view, stats)``: ``view`` is ``processor`` with :func:`row-shared <rows_shared>`
    batched calls and chat-template renderings (module docstring; the same state, its class a subclass of the
    processor's), ``stats`` a :class:`RowStats`. Renderings are remembered for the block only (keys hold image
    identities, valid while the block's images live). A processor that is not callable is yielded unchanged
    (with ``stats`` all zero)."""
    stats = RowStats()
    if not callable(processor) or not hasattr(processor, "apply_chat_template"):
        yield processor, stats
        return
    cls = type(f"RowShared{type(processor).__name__}", (_RowSharing, type(processor)),
               {"_jrl_stats": stats, "_jrl_rendered": {}, "__module__": __name__})
    view = object.__new__(cls)
    view.__dict__ = processor.__dict__  # one state: what the block changes on either is seen by both
    try:
        yield view, stats
    finally:
        cls._jrl_rendered.clear()
