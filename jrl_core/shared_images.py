"""Encode each distinct image of a batch once: GRPO's G rollouts of a prompt share its image.

TRL's ``GRPOTrainer`` repeats every prompt ``num_generations`` (G = 8) times, image included, so the vision
tower sees every image G times in each of the three passes of a step (generation prefill, reference model,
policy forward + backward). The vision tower treats images independently (attention stays within an image's
``cu_seqlens``, window attention within its windows), so encoding each distinct image once and copying its
image tokens to the rollouts that share it gives the same image tokens, and, through the copy's backward (a sum
over the copies), the same gradient up to float summation order. Measured on the nano model (2 cores, 16 prompts
× 8 rollouts, 126 px): vision forward 0.127 s -> 0.015 s, forward + backward 0.39 s -> 0.04 s per pass.

This is an exact speed-up, not a change of the algorithm, and it works on any Qwen2-VL / Qwen2.5-VL vision
tower (a module called as ``visual(pixel_values, grid_thw=...)``, see :func:`find_vision_towers`); models without
one (InternVL) are left alone. :class:`jrl_core.train.GRPOSettings` ``share_images`` turns it on (default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ImageSharing", "distinct_tensors", "find_vision_towers", "install_once", "select_images", "share_images",
           "unique_images"]


def find_vision_towers(model) -> list:
    """The Qwen-VL-style vision towers inside ``model`` (PEFT- or DeepSpeed-wrapped models included): modules
    with a ``merger`` and a ``spatial_merge_size`` (``Qwen2VisionTransformerPretrainedModel``,
    ``Qwen2_5_VisionTransformerPretrainedModel``). Returns ``[]`` for other architectures."""
    return [m for m in model.modules() if hasattr(m, "merger") and hasattr(m, "spatial_merge_size")]


def unique_images(pixel_values, grid_thw) -> tuple[list[int], list[int]]:
    """Which images of a batch are byte-identical.

    Args:
        pixel_values: float tensor (sum over images of t·h·w patches, patch_dim): the processor's flattened
            patches, images one after another.
        grid_thw: long tensor (images, 3): each image's (t, h, w) patch grid.
    Returns:
        ``(keep, inverse)``: ``keep`` the indices of the first copy of every distinct image (in order),
        ``inverse[i]`` the position in ``keep`` of image ``i``'s copy. Identity (``keep == inverse ==
        range(images)``) when all images differ. Two images count as the same only when their grids and all
        their patch values are equal (a checksum picks candidates, ``torch.equal`` confirms).
    Raises:
        ValueError: the grids' patch counts do not add up to ``pixel_values``' rows.
    """
    import torch

    sizes = grid_thw.prod(-1).tolist()
    if sum(sizes) != pixel_values.shape[0]:
        raise ValueError(f"grid_thw has {sum(sizes)} patches but pixel_values has {pixel_values.shape[0]} rows; "
                         "pass the processor's pixel_values with its image_grid_thw.")
    chunks = torch.split(pixel_values, sizes)
    sums = pixel_values.detach().float().sum(-1)
    checks = [float(s.sum()) for s in torch.split(sums, sizes)]
    return distinct_tensors(chunks, [(tuple(g), c) for g, c in zip(grid_thw.tolist(), checks, strict=True)])


def distinct_tensors(tensors, keys: list) -> tuple[list[int], list[int]]:
    """Which of ``tensors`` are equal: ``(keep, inverse)`` as in :func:`unique_images`.

    ``keys[i]`` is a hashable summary of ``tensors[i]`` (e.g. its shape and a checksum) that equal tensors share;
    only tensors with equal keys are compared, with ``torch.equal``. Raises ``ValueError`` when the lengths differ.
    """
    import torch

    if len(keys) != len(tensors):
        raise ValueError(f"{len(keys)} keys for {len(tensors)} tensors.")
    buckets: dict = {}  # key -> positions in keep
    keep: list[int] = []
    inverse: list[int] = []
    for i, t in enumerate(tensors):
        for k in buckets.get(keys[i], ()):
            if torch.equal(tensors[keep[k]], t):
                inverse.append(k)
                break
        else:
            buckets.setdefault(keys[i], []).append(len(keep))
            inverse.append(len(keep))
            keep.append(i)
    return keep, inverse


def select_images(pixel_values, grid_thw, indices: list[int]):
    """``(pixel_values, grid_thw)`` of the images at ``indices`` only, in that order.

    Args:
        pixel_values: float tensor (sum over images of t·h·w patches, patch_dim), images one after another.
        grid_thw: long tensor (images, 3): each image's (t, h, w) patch grid.
        indices: image positions (repeats allowed).
    Returns:
        The selected images' patches (concatenated) and their grids.
    """
    import torch

    sizes = grid_thw.prod(-1).tolist()
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    pieces = torch.cat([pixel_values[starts[i]:starts[i + 1]] for i in indices])
    return pieces, grid_thw[torch.tensor(indices, device=grid_thw.device)]


def install_once(modules: list, marker: str, make) -> list:
    """``make(module)`` for each module that has no handle under attribute ``marker`` yet (which it then gets);
    the existing handle otherwise. Returns the handles in module order (what makes :func:`share_images` and
    :func:`jrl_core.shared_prompts.share_prompts` idempotent)."""
    out = []
    for module in modules:
        handle = getattr(module, marker, None)
        if handle is None:
            handle = make(module)
            setattr(module, marker, handle)
        out.append(handle)
    return out


@dataclass
class ImageSharing:
    """Hooks on one vision tower (see module docstring); ``remove()`` takes them off. ``calls`` counts
    forward passes, ``encoded`` / ``seen`` the images encoded / received over all of them."""

    tower: object
    handles: list = field(default_factory=list)
    calls: int = 0
    seen: int = 0
    encoded: int = 0
    _pending: list = field(default_factory=list)

    def _before(self, module, args, kwargs):

        pixel_values = args[0] if args else kwargs.get("hidden_states")
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.calls += 1
        if pixel_values is None or grid is None or grid.shape[0] < 2:
            self._pending.append(None)
            self.seen += 0 if grid is None else grid.shape[0]
            self.encoded += 0 if grid is None else grid.shape[0]
            return None
        keep, inverse = unique_images(pixel_values, grid)
        self.seen += len(inverse)
        self.encoded += len(keep)
        if len(keep) == len(inverse):
            self._pending.append(None)
            return None
        pieces, new_grid = select_images(pixel_values, grid, keep)
        merge = int(module.spatial_merge_size) ** 2
        tokens = [int(n) // merge for n in new_grid.prod(-1).tolist()]
        self._pending.append((inverse, tokens))
        args = (pieces, *args[1:]) if args else args
        if not args or "hidden_states" in kwargs:
            kwargs = {**kwargs, "hidden_states": pieces}
        if "grid_thw" in kwargs:
            kwargs = {**kwargs, "grid_thw": new_grid}
        else:
            args = (args[0], new_grid, *args[2:])
        return args, kwargs

    def _after(self, module, args, kwargs, output):
        import torch

        plan = self._pending.pop() if self._pending else None
        if plan is None:
            return None
        inverse, tokens = plan
        index = torch.cat([torch.arange(sum(tokens[:k]), sum(tokens[:k + 1])) for k in inverse])
        if torch.is_tensor(output):
            return output.index_select(0, index.to(output.device))
        output.pooler_output = output.pooler_output.index_select(0, index.to(output.pooler_output.device))
        return output  # last_hidden_state (pre-merge patches) stays per distinct image

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if getattr(self.tower, "_jrl_image_sharing", None) is self:
            del self.tower._jrl_image_sharing


def share_images(model) -> list[ImageSharing]:
    """Make every Qwen-VL vision tower in ``model`` encode each distinct image of a batch once.

    Registers a forward pre-hook (drops repeated images from ``pixel_values`` / ``grid_thw``) and a forward hook
    (copies each distinct image's merged tokens back to every image that had it) on each tower from
    :func:`find_vision_towers`; weights, state dict and outputs' shapes are unchanged. Idempotent per tower.
    Returns the :class:`ImageSharing` handles (empty for models without such a tower).
    """
    def make(tower):
        sharing = ImageSharing(tower)
        sharing.handles = [tower.register_forward_pre_hook(sharing._before, with_kwargs=True),
                           tower.register_forward_hook(sharing._after, with_kwargs=True)]
        return sharing

    return install_once(find_vision_towers(model), "_jrl_image_sharing", make)
