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
speed-up, not a change of the algorithm. Videos, extra arguments, or rows whose image count does not match the
grids take the model's own call unchanged. :class:`jrl_core.train.GRPOSettings` ``share_positions`` turns it on
(on in the nano preset, opt-in at paper scale).
"""

from __future__ import annotations

from dataclasses import dataclass

from jrl_core.shared_images import install_once  # torch-free import

__all__ = ["PositionSharing", "layout_groups", "share_positions"]

_IMAGE = 1  # mm_token_type_ids: 0 text, 1 image, 2 video


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
        if 2 in valid:
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
    calls: int = 0
    rows: int = 0
    computed: int = 0

    def get_rope_index(self, input_ids=None, mm_token_type_ids=None, image_grid_thw=None, video_grid_thw=None,
                       second_per_grid_ts=None, attention_mask=None, **kwargs):
        """The backbone's ``get_rope_index`` (same arguments and returns: position ids (3, rows, length) and
        deltas (rows, 1)), run on one row per distinct layout and copied to the rest. Other keyword arguments
        (``generate`` passes its whole model kwargs: pixel values, cache, …; the Qwen-VL methods ignore them) go to
        the model's call unchanged."""
        import torch

        plain = dict(image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
                     second_per_grid_ts=second_per_grid_ts, attention_mask=attention_mask, **kwargs)
        self.calls += 1
        rows = 0 if input_ids is None else input_ids.shape[0]
        self.rows += rows
        if (input_ids is None or mm_token_type_ids is None or video_grid_thw is not None
                or second_per_grid_ts is not None or rows < 2
                or (attention_mask is not None and attention_mask.shape != input_ids.shape)):
            self.computed += rows
            return self.original(input_ids, mm_token_type_ids, **plain)
        plan = layout_groups(mm_token_type_ids, attention_mask, image_grid_thw)
        if plan is None or len(plan[0]) == rows:
            self.computed += rows
            return self.original(input_ids, mm_token_type_ids, **plain)
        keep, inverse, images = plan
        self.computed += len(keep)
        keep_t = torch.tensor(keep, device=input_ids.device)
        inv_t = torch.tensor(inverse, device=input_ids.device)
        grid = None if image_grid_thw is None else image_grid_thw[torch.tensor(images, dtype=torch.long,
                                                                               device=image_grid_thw.device)]
        positions, deltas = self.original(input_ids[keep_t], mm_token_type_ids[keep_t], image_grid_thw=grid,
                                          attention_mask=None if attention_mask is None else attention_mask[keep_t],
                                          **kwargs)
        return positions.index_select(1, inv_t.to(positions.device)), deltas.index_select(0, inv_t.to(deltas.device))

    def remove(self) -> None:
        if getattr(self.backbone, "_jrl_position_sharing", None) is self:
            del self.backbone.get_rope_index  # the instance attribute: the class's method shows through again
            del self.backbone._jrl_position_sharing


def share_positions(model) -> list[PositionSharing]:
    """Make every Qwen-VL backbone in ``model`` (modules with ``get_rope_index``, a ``language_model`` and a
    ``visual`` tower: :func:`jrl_core.shared_prompts.find_backbones`) compute each distinct row layout's rotary
    positions once. Idempotent per backbone; returns the :class:`PositionSharing` handles (empty for models
    without such a backbone, e.g. InternVL)."""
    from jrl_core.shared_prompts import find_backbones

    def make(bb):
        sharing = PositionSharing(bb, original=bb.get_rope_index)
        bb.get_rope_index = sharing.get_rope_index  # instance attribute: the class is untouched
        return sharing

    return install_once(find_backbones(model), "_jrl_position_sharing", make)
