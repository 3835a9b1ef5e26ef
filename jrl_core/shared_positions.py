"""Compute the 3-D rotary positions of each distinct row layout once.

Qwen2-VL and Qwen2.5-VL place every token with three rotary position ids (time, height, width), computed by the
backbone's ``get_rope_index`` in a Python loop over the batch's rows. A row's positions depend only on its token
types (text or image), its attention mask and the patch grids of its images, never on which text tokens it holds
(``get_rope_index`` reads ``input_ids`` for their shape only). A nano GRPO step calls it three times on 128 rows
(16 prompts × G = 8: the generation's prefill, the reference model's and the policy's log-prob passes) whose
layouts are a handful: rollouts of one prompt share it, and so do all rows with the same prompt length and
completion length. One core spent ~24 ms per call, ~7% of a step (``py-spy``/``cProfile``, session 18).

:func:`share_positions` replaces a backbone's ``get_rope_index`` by :meth:`PositionSharing.get_rope_index`, which
groups rows by layout (:func:`layout_groups`), calls the model's own ``get_rope_index`` on one row per layout and
copies the result to the others: the same integers as the model's call on the whole batch (tested), so an exact
speed-up, not a change of the algorithm. Videos, one-row batches, calls that do not bind to the method's own
signature, or rows whose image count does not match the grids take the model's own call unchanged; only methods
with Qwen2-VL's parameters are wrapped. :class:`jrl_core.train.GRPOSettings` ``share_positions`` turns it on (on in
the nano preset, opt-in at paper scale).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from jrl_core.shared_images import install_once  # torch-free import

__all__ = ["PositionSharing", "layout_groups", "share_positions"]

_IMAGE, _VIDEO = 1, 2  # mm_token_type_ids: 0 text, 1 image, 2 video
_PARAMETERS = ("input_ids", "mm_token_type_ids", "image_grid_thw", "video_grid_thw")  # how the method begins


def _shareable(method) -> bool:
    """Whether a backbone's ``get_rope_index`` takes Qwen2-VL's arguments in Qwen2-VL's order (other models with a
    vision tower and a language model, e.g. Qwen2.5-Omni's thinker or GLM-Image, call theirs differently)."""
    try:
        names = [p.name for p in inspect.signature(method).parameters.values()]
    except (TypeError, ValueError):
        return False
    return tuple(names[:len(_PARAMETERS)]) == _PARAMETERS and "attention_mask" in names


def layout_groups(mm_token_type_ids, attention_mask, image_grid_thw) -> tuple[list[int], list[int], list[int]] | None:
    """Which rows of a batch have the same rotary-position layout.

    Args:
        mm_token_type_ids: int tensor (rows, length): 0 text, 1 image, 2 video per token.
        attention_mask: tensor (rows, length), 1 on real tokens, or None (every token real).
        image_grid_thw: long tensor (images, 3), the batch's image grids in row order, or None (no images).
    Returns:
        ``(keep, inverse, images)``: ``keep`` the first row of every distinct layout, in order; ``inverse[r]`` the
        position in ``keep`` of row ``r``'s layout; ``images`` the grid rows of the kept rows' images, in order.
        A layout is the row's token types, its mask and its images' grids. None when the rows hold videos or their
        image runs (consecutive image tokens among the unmasked ones) do not number the grid rows: the caller then
        uses the model's own computation, which raises its own error for inconsistent input.
    """
    types = mm_token_type_ids.tolist()
    mask = attention_mask.tolist() if attention_mask is not None else [None] * len(types)
    grids = image_grid_thw.tolist() if image_grid_thw is not None else []
    seen: dict[tuple, int] = {}
    keep: list[int] = []
    inverse: list[int] = []
    images: list[int] = []
    start = 0
    for r, (row, m) in enumerate(zip(types, mask, strict=True)):
        valid = row if m is None else [t for t, k in zip(row, m, strict=True) if k]
        if _VIDEO in valid:
            return None
        runs = sum(1 for i, t in enumerate(valid) if t == _IMAGE and (i == 0 or valid[i - 1] != _IMAGE))
        if start + runs > len(grids):
            return None
        key = (tuple(row), None if m is None else tuple(m), tuple(tuple(g) for g in grids[start:start + runs]))
        if key not in seen:
            seen[key] = len(keep)
            keep.append(r)
            images.extend(range(start, start + runs))
        inverse.append(seen[key])
        start += runs
    if start != len(grids):
        return None
    return keep, inverse, images


@dataclass
class PositionSharing:
    """The wrapper on one backbone's ``get_rope_index`` (module docstring); ``remove()`` restores it. ``calls``
    counts calls, ``rows`` / ``computed`` the rows received / rows actually run through the model's loop."""

    backbone: object
    original: object = None
    signature: object = None  # the original's inspect.Signature: calls are bound to its own parameter names
    calls: int = 0
    rows: int = 0
    computed: int = 0

    def get_rope_index(self, *args, **kwargs):
        """The backbone's ``get_rope_index`` (same arguments and returns: position ids (3, rows, length) and
        deltas (rows, 1)), run on one row per distinct layout and copied to the rest. Other keyword arguments
        (``generate`` passes its whole model kwargs: pixel values, cache, …; the Qwen-VL methods ignore them) go to
        the model's call unchanged; a call this cannot share (videos, one row, a mask of another shape, arguments
        that do not bind) goes to the model's method exactly as it came."""
        import torch

        self.calls += 1
        try:
            bound = self.signature.bind(*args, **kwargs).arguments
        except TypeError:
            return self.original(*args, **kwargs)
        extra = {}
        for name, param in self.signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                extra = dict(bound.get(name, {}))
        input_ids, types = bound.get("input_ids"), bound.get("mm_token_type_ids")
        grids, mask = bound.get("image_grid_thw"), bound.get("attention_mask")
        rows = 0 if input_ids is None else input_ids.shape[0]
        self.rows += rows
        if (input_ids is None or types is None or bound.get("video_grid_thw") is not None
                or bound.get("second_per_grid_ts") is not None or rows < 2 or types.shape != input_ids.shape
                or (mask is not None and mask.shape != input_ids.shape)):
            self.computed += rows
            return self.original(*args, **kwargs)
        plan = layout_groups(types, mask, grids)
        if plan is None or len(plan[0]) == rows:
            self.computed += rows
            return self.original(*args, **kwargs)
        keep, inverse, images = plan
        self.computed += len(keep)

        def rows_of(x, index):
            return x.index_select(0, torch.tensor(index, dtype=torch.long, device=x.device))

        positions, deltas = self.original(rows_of(input_ids, keep), rows_of(types, keep),
                                          image_grid_thw=None if grids is None else rows_of(grids, images),
                                          attention_mask=None if mask is None else rows_of(mask, keep), **extra)
        return (positions.index_select(1, torch.tensor(inverse, dtype=torch.long, device=positions.device)),
                rows_of(deltas, inverse))

    def remove(self) -> None:
        if getattr(self.backbone, "_jrl_position_sharing", None) is self:
            del self.backbone.get_rope_index  # the instance attribute: the class's method shows through again
            del self.backbone._jrl_position_sharing


def share_positions(model) -> list[PositionSharing]:
    """Make every Qwen-VL backbone in ``model`` (modules with ``get_rope_index``, a ``language_model`` and a
    ``visual`` tower: :func:`jrl_core.shared_prompts.find_backbones`, whose ``get_rope_index`` takes Qwen2-VL's
    arguments in its order) compute each distinct row layout's rotary positions once. Idempotent per backbone;
    returns the :class:`PositionSharing` handles (empty for models without such a backbone, e.g. InternVL, or with
    another ``get_rope_index``, e.g. Qwen2.5-Omni's thinker)."""
    from jrl_core.shared_prompts import find_backbones

    def make(bb):
        sharing = PositionSharing(bb, original=bb.get_rope_index, signature=inspect.signature(bb.get_rope_index))
        bb.get_rope_index = sharing.get_rope_index  # instance attribute: the class is untouched
        return sharing

    backbones = [bb for bb in find_backbones(model)
                 if getattr(bb, "_jrl_position_sharing", None) is not None or _shareable(bb.get_rope_index)]
    return install_once(backbones, "_jrl_position_sharing", make)
