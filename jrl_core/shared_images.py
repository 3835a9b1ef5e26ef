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

import contextlib
from dataclasses import dataclass, field

__all__ = ["DecodeSharing", "ImageSharing", "PreprocessSharing", "decoded_once", "distinct_tensors",
           "find_vision_towers", "image_key", "install_once", "preprocessing_shared", "select_images", "share_images",
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


def _flat_pil_images(images) -> list | None:
    """``images`` (one PIL image, or a list nested one level, e.g. one list per prompt) as a flat list, or None when
    anything in it is not a PIL image (then the image processor gets the call unchanged)."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if not isinstance(images, (list, tuple)):
        return None
    flat = []
    for item in images:
        if isinstance(item, Image.Image):
            flat.append(item)
        elif isinstance(item, (list, tuple)) and all(isinstance(x, Image.Image) for x in item):
            flat.extend(item)
        else:
            return None
    return flat


def image_key(image) -> tuple:
    """A content key of a PIL image: ``(mode, size, 16-byte BLAKE2b digest of its pixels and palette)``; equal
    pixels give equal keys, whatever the object (the G copies of a rollout group's image are often distinct
    objects). A palette image's palette is part of the digest (its pixels are palette indices)."""
    import hashlib

    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    if image.mode in ("P", "PA"):
        digest.update(bytes(image.getpalette() or ()))
    return image.mode, image.size, digest.digest()


class PreprocessSharing:
    """An image processor that preprocesses each distinct image once and reuses the result.

    Stands in for a processor's ``image_processor`` (:func:`preprocessing_shared` installs it): called on a list of
    PIL images, it runs the wrapped image processor on the images it has not seen yet (by :func:`image_key` and the
    call's keyword arguments), splits the result per image and concatenates every image's own patches in the order
    asked. TRL's ``GRPOTrainer`` preprocesses a step's images twice (rollout generation and the log-prob passes),
    each G times over: 16 prompts × 8 rollouts = 256 preprocessings of 16 images per nano step (57 ms per 128 images
    on one core, 4 ms per 16; the step went 0.969 → 0.943 s, ``benchmarks/nano_speed.py --base``). Exact: image
    processors treat images independently, so the pixel values are the same bits (tested); an image object passed
    several times in one call (the G rows of a prompt share one decoded image, :class:`DecodeSharing`) is hashed
    once. Anything else (other output keys such as InternVL's tiles, outputs that are not torch tensors, a non-PIL
    input, ``return_tensors`` other than ``"pt"`` or None) goes to the wrapped processor unchanged (the output kind
    is checked once per ``return_tensors`` value on one image).
    Every other attribute is the wrapped processor's.

    Attributes:
        wrapped: the image processor. ``seen`` / ``processed``: images asked for / actually preprocessed.
    """

    _OUTPUT_KEYS = frozenset({"pixel_values", "image_grid_thw"})

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.seen = 0
        self.processed = 0
        self._cache: dict = {}
        self._tensors: dict = {}  # return_tensors value -> whether the wrapped processor returns torch tensors for it

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def __call__(self, images=None, *args, **kwargs):
        import torch
        from transformers import BatchFeature

        flat = _flat_pil_images(images)
        returns = kwargs.get("return_tensors")
        try:
            options = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        except Exception:  # an argument without a stable text form: no sharing
            options = None
        if flat is None or not flat or args or options is None or returns not in (None, "pt"):
            return self.wrapped(images, *args, **kwargs)
        if returns not in self._tensors:  # does this return_tensors give torch tensors (what the cache holds)?
            probe = self.wrapped(flat[:1], **kwargs)
            self._tensors[returns] = (set(probe.keys()) == self._OUTPUT_KEYS
                                      and all(torch.is_tensor(v) for v in probe.values()))
        if not self._tensors[returns]:
            return self.wrapped(images, *args, **kwargs)
        digests: dict = {}  # id -> image_key: rows that share one decoded image (DecodeSharing) hash it once
        keys = [(digests[id(im)] if id(im) in digests else digests.setdefault(id(im), image_key(im)), options)
                for im in flat]
        missing = {}
        for k, im in zip(keys, flat, strict=True):
            if k not in self._cache and k not in missing:
                missing[k] = im
        if missing:
            out = self.wrapped(list(missing.values()), **kwargs)
            grid = out["image_grid_thw"]
            chunks = torch.split(out["pixel_values"], grid.prod(-1).tolist())
            for i, k in enumerate(missing):
                self._cache[k] = (chunks[i], grid[i])
            self.processed += len(missing)
        self.seen += len(keys)
        return BatchFeature({"pixel_values": torch.cat([self._cache[k][0] for k in keys]),
                             "image_grid_thw": torch.stack([self._cache[k][1] for k in keys])})


@contextlib.contextmanager
def preprocessing_shared(processor):
    """Within the block, ``processor.image_processor`` is a :class:`PreprocessSharing` around it (a fresh cache, so
    memory holds one step's distinct images at most); the original is put back on exit, also after an error.
    Yields the :class:`PreprocessSharing`, or None when ``processor`` has no ``image_processor`` (a text-only
    tokenizer)."""
    original = getattr(processor, "image_processor", None)
    if original is None:
        yield None
        return
    sharing = PreprocessSharing(original)
    processor.image_processor = sharing
    try:
        yield sharing
    finally:
        processor.image_processor = original


class DecodeSharing:
    """A ``datasets`` transform that decodes each distinct stored image of a fetched batch once.

    ``datasets`` stores a PIL column as encoded files (PNG bytes) and decodes every row it hands out. TRL's
    ``GRPOTrainer`` fetches a step's rows with each prompt repeated G times (its ``RepeatSampler``), so a nano step
    (16 prompts × 8) decoded 128 PNGs of 16 images: ~70 ms of a ~1.1 s step on one core (``py-spy``, session 16).
    Called on a batch (a dict of columns, as ``Dataset.set_transform`` gives it), this decodes the images of
    ``column`` with ``datasets.Image`` once per distinct stored value (equal bytes and path) and gives every row
    that stored it the same decoded image; other columns pass through unchanged. Exact: the pixels are the
    decoder's, bit for bit. The decoded images are shared between rows, so code downstream must not modify a PIL
    image in place (TRL and the Qwen processors do not). Memory holds one batch's images, as before.

    Attributes:
        column: the image column. ``seen`` / ``decoded``: images handed out / actually decoded.
    """

    def __init__(self, column: str = "image"):
        self.column = column
        self.seen = 0
        self.decoded = 0

    def __call__(self, batch: dict) -> dict:
        from datasets import Image

        feature = Image()
        done: dict = {}
        images = []
        for value in batch[self.column]:
            key = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else None
            if key is None:  # a path string, an image already decoded, or nothing stored: as datasets would give it
                images.append(value if value is None else feature.decode_example(value))
                continue
            if key not in done:
                done[key] = feature.decode_example(value)
                self.decoded += 1
            images.append(done[key])
        self.seen += len(images)
        return {**batch, self.column: images}


def decoded_once(dataset, column: str = "image"):
    """``dataset`` (a ``datasets.Dataset``) with its image ``column`` decoded by a :class:`DecodeSharing`: each
    distinct image of a fetched batch once. Returns a new dataset (the argument is unchanged); returns
    ``dataset`` itself when ``column`` is not a decoded ``datasets.Image`` column."""
    from datasets import Image

    feature = dataset.features.get(column)
    if not isinstance(feature, Image) or not feature.decode:
        return dataset
    out = dataset.cast_column(column, Image(decode=False))
    out.set_transform(DecodeSharing(column))
    return out
