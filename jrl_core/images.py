"""Photo sources and train/test splits.

Three sources, one entry point (:func:`load_photos`):

* ``"skimage"`` (the embedded default): the real photographs bundled inside ``skimage.data``
  (:data:`SKIMAGE_PHOTOS`), read from the package's data folder, so no network is needed.
  Split **by source photo**: :data:`SKIMAGE_TEST` is held out, the rest is train. Views cut from
  one photo (:func:`sample_views`) therefore never straddle the split.
* a folder of images: every ``*.jpg|*.jpeg|*.png|*.bmp|*.webp`` below it (recursive, case-insensitive
  suffix). Split by a stable hash of the relative POSIX path: ``sha1(path) mod 100 < 80`` → train,
  else test (80/20; independent of process, machine and ``PYTHONHASHSEED``).
* a data dir in the Jigsaw-R1 reference layout: ``<dir>/coco/train2014/*.jpg`` listed by
  ``<dir>/coco/train2014.json`` (paper_spec §1.4 "Data"). The json is either a list of file names,
  a COCO-style dict ``{"images": [{"file_name": ...}, ...]}`` (an image entry may carry
  ``"split": "train"|"test"``), or a dict ``{"train": [...], "test": [...]}``. Without an explicit
  split the same 80/20 hash split as for folders is used (on the file name).

Every image is converted to 8-bit RGB by :func:`to_rgb` (conversions documented there). An
unreadable or too small image is skipped with a ``warnings.warn`` naming the file and the reason
and counted in a :class:`SkipRecord`; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "IMAGE_SUFFIXES",
    "SKIMAGE_PHOTOS",
    "SKIMAGE_TEST",
    "SPLITS",
    "Photo",
    "SkipRecord",
    "hash_split",
    "load_photos",
    "sample_views",
    "to_rgb",
]

#: The real photographs in ``skimage.data`` (file stem → used as ``image_id``). Left out on purpose:
#: ``motorcycle_right`` (the same scene as ``motorcycle_left``, a stereo pair), and the non-photos
#: ``horse``, ``logo``, ``color``, ``chessboard_*``, ``phantom``.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock_motion", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "ihc", "microaneurysms", "moon", "motorcycle_left", "page",
    "retina", "rocket", "text",
)
#: Held-out skimage photos (the test split). Chosen to mix colour/grayscale, natural/texture/object.
SKIMAGE_TEST: tuple[str, ...] = ("chelsea", "coffee", "rocket", "brick", "moon")

#: Accepted ``split`` values. ``"all"`` is train ∪ test.
SPLITS = ("train", "test", "all")
#: File suffixes picked up from a folder (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Share of hashed items that go to train (folder and COCO sources).
TRAIN_PERCENT = 80


@dataclass(frozen=True)
class Photo:
    """One source photograph.

    Attributes:
        image_id: stable identifier: the skimage name, the path relative to the folder, the COCO file
            name, or ``"<parent id>#<view index>"`` for a view from :func:`sample_views`.
        image: an 8-bit ``"RGB"`` PIL image (W×H×3, values 0-255).

    Raises:
        ValueError: the image is not in mode ``"RGB"`` (convert it with :func:`to_rgb`).
    """

    image_id: str
    image: Image.Image

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image.Image) or self.image.mode != "RGB":
            mode = getattr(self.image, "mode", type(self.image).__name__)
            raise ValueError(
                f"Photo {self.image_id!r}: image must be a PIL image in mode 'RGB', got {mode!r}; "
                "convert it with jrl_core.images.to_rgb(image)."
            )


@dataclass
class SkipRecord:
    """Counts of images skipped while loading, by reason.

    Attributes:
        skipped: reason → count; reasons are ``"unreadable"``, ``"too_small"``, ``"missing"``.
        examples: up to ``max_examples`` strings ``"<file>: <why>"`` for the report.
    """

    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, name: str, reason: str, detail: str) -> None:
        """Count one skipped file under ``reason`` and keep ``"name: detail"`` as an example."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{name}: {detail}")

    @property
    def total(self) -> int:
        """Number of skipped files, all reasons together."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        """JSON-ready ``{"skipped": {...}, "total": int, "examples": [...]}``."""
        return {"skipped": dict(self.skipped), "total": self.total, "examples": list(self.examples)}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB, upright.

    Conversions, in order:

    1. EXIF orientation is applied (``ImageOps.exif_transpose``), so a phone photo stored sideways
       comes out the way it was taken.
    2. 16-bit/32-bit integer grayscale (``I;16*``, ``I``) is scaled to 0-255 by ``/257`` (the full
       16-bit range onto the 8-bit range); an ``I`` image whose maximum is ≤ 255 is taken as 8-bit.
       Float (``F``) images are taken as 0-1 if their maximum is ≤ 1, else 0-255, and clipped.
    3. Transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is composited on
       white.
    4. Everything else (``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ...) goes through ``convert("RGB")``;
       grayscale becomes three equal channels.

    Args:
        image: any PIL image.

    Returns:
        A new ``"RGB"`` image of the (possibly EXIF-rotated) size.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image).astype(np.float64)
        if mode == "F":
            arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        elif mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr / 257.0
        arr = np.nan_to_num(arr, nan=0.0)
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image.copy() if image.readonly else image


def hash_split(key: str, train_percent: int = TRAIN_PERCENT) -> str:
    """Stable train/test assignment of a string key.

    Args:
        key: e.g. a relative POSIX path or a file name.
        train_percent: share (0-100) assigned to ``"train"``.

    Returns:
        ``"train"`` if ``int(sha1(key)) mod 100 < train_percent`` else ``"test"``; the same on every
        process and machine (never Python's ``hash()``).
    """
    bucket = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < train_percent else "test"


def _open_checked(path: Path, name: str, min_size: int, record: SkipRecord) -> Photo | None:
    """Read one file into a Photo, or warn + count and return None."""
    try:
        with Image.open(path) as raw:
            raw.load()
            image = to_rgb(raw)
    except Exception as err:  # any decoder failure (OSError, UnidentifiedImageError, SyntaxError, ...)
        detail = f"unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"skipping image {path}: {detail}", stacklevel=3)
        record.add(name, "unreadable", detail)
        return None
    if min(image.size) < min_size:
        detail = f"too small ({image.width}x{image.height} px, min side < min_size={min_size})"
        warnings.warn(f"skipping image {path}: {detail}", stacklevel=3)
        record.add(name, "too_small", detail)
        return None
    return Photo(image_id=name, image=image)


def _skimage_entries(split: str) -> list[tuple[str, Path]]:
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    entries = []
    for name in SKIMAGE_PHOTOS:
        in_test = name in SKIMAGE_TEST
        if split == "all" or (split == "test") == in_test:
            matches = sorted(data_dir.glob(f"{name}.*"))
            path = next((p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES), data_dir / f"{name}.png")
            entries.append((name, path))
    return entries


def _folder_entries(root: Path, split: str) -> list[tuple[str, Path]]:
    entries = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            rel = path.relative_to(root).as_posix()
            if split == "all" or hash_split(rel) == split:
                entries.append((rel, path))
    return entries


def _coco_entries(coco_dir: Path, split: str) -> list[tuple[str, Path]]:
    listing = coco_dir / "train2014.json"
    try:
        spec = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the COCO listing {listing}: {err}. Fix or remove the file.") from err
    named: list[tuple[str, str | None]]  # (file name, explicit split or None)
    if isinstance(spec, list):
        named = [(str(x), None) for x in spec]
    elif isinstance(spec, dict) and "images" in spec:
        named = []
        for item in spec["images"]:
            if isinstance(item, dict):
                named.append((str(item["file_name"]), item.get("split")))
            else:
                named.append((str(item), None))
    elif isinstance(spec, dict) and ("train" in spec or "test" in spec):
        named = [(str(x), s) for s in ("train", "test") for x in spec.get(s, [])]
    else:
        raise ValueError(
            f"{listing}: expected a list of file names, a COCO dict with 'images', or "
            "{'train': [...], 'test': [...]}."
        )
    entries = []
    for file_name, given in named:
        assigned = given if given in ("train", "test") else hash_split(file_name)
        if split == "all" or assigned == split:
            entries.append((file_name, coco_dir / "train2014" / file_name))
    return entries


def load_photos(
    source: str = "skimage",
    split: str = "train",
    *,
    min_size: int = 64,
    record: SkipRecord | None = None,
    limit: int | None = None,
) -> list[Photo]:
    """Load the photographs of one split of a source.

    Args:
        source: ``"skimage"`` (embedded default, split by photo: :data:`SKIMAGE_TEST` held out),
            a path to a folder of images (80/20 hash split of the relative path), or a path to a data
            dir holding ``coco/train2014/`` and ``coco/train2014.json`` (the reference's COCO layout;
            the json's split if it gives one, else the hash split). See the module docstring.
        split: ``"train"``, ``"test"`` or ``"all"``.
        min_size: images whose shorter side is below this many pixels are skipped (default 64).
        record: a :class:`SkipRecord` to count skipped files in (one is made if omitted).
        limit: stop after this many photos (in sorted order), e.g. to keep a big folder cheap.

    Returns:
        Photos in a deterministic order (sorted by name; skimage in :data:`SKIMAGE_PHOTOS` order),
        each an 8-bit RGB image (see :func:`to_rgb`).

    Raises:
        ValueError: unknown source or split (the message says what is accepted), a COCO listing that
            cannot be read, or no photo at all in the result.

    Warns:
        UserWarning: once per skipped file (unreadable, too small, listed but missing), naming it.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if record is None:
        record = SkipRecord()
    if source == "skimage":
        entries, kind = _skimage_entries(split), "skimage"
    else:
        root = Path(source).expanduser()
        if (root / "coco" / "train2014.json").is_file():
            entries, kind = _coco_entries(root / "coco", split), "coco"
        elif (root / "train2014.json").is_file() and (root / "train2014").is_dir():
            entries, kind = _coco_entries(root, split), "coco"
        elif root.is_dir():
            entries, kind = _folder_entries(root, split), "folder"
        else:
            raise ValueError(
                f"unknown photo source {source!r}: not 'skimage' and not an existing folder. "
                "Pass 'skimage', a folder of images, or a data dir containing coco/train2014.json."
            )
    photos: list[Photo] = []
    for name, path in entries:
        if limit is not None and len(photos) >= limit:
            break
        if not path.is_file():
            detail = "missing (listed but not on disk)"
            warnings.warn(f"skipping image {path}: {detail}", stacklevel=2)
            record.add(name, "missing", detail)
            continue
        photo = _open_checked(path, name, min_size, record)
        if photo is not None:
            photos.append(photo)
    if not photos:
        raise ValueError(
            f"no usable photo in source {source!r} ({kind}), split {split!r}: {len(entries)} candidate "
            f"files, skipped {record.to_dict()['skipped']}. Check the path, the split, or lower min_size."
        )
    return photos


def sample_views(
    photos: list[Photo],
    k: int,
    *,
    seed: int,
    size: int,
    min_crop: float = 0.5,
) -> list[Photo]:
    """Multiply photos into ``k`` random square views (crop + optional horizontal flip + resize).

    View ``i`` comes from ``photos[i % len(photos)]`` (round-robin, every photo used when
    ``k >= len(photos)``) with its own RNG ``random.Random(f"{seed}:{i}")``, so a view depends only
    on (seed, i, the photo), never on process or hash seed. Its crop is a square whose side is a
    uniform fraction in ``[min_crop, 1]`` of the photo's shorter side, at a uniform position; it is
    flipped left-right with probability 0.5 (never up-down: vertical order is what a jigsaw asks
    about), then resized to ``size×size`` with bicubic resampling.

    Args:
        photos: non-empty list of RGB photos.
        k: number of views (≥ 0).
        seed: any int.
        size: output side in pixels (≥ 1): the model's input side, :func:`jrl_core.nano.view_size`
            (views are cut at the size the processor feeds the model, never resized twice).
        min_crop: smallest crop side as a fraction of the shorter photo side, in (0, 1].

    Returns:
        ``k`` photos of ``size×size`` RGB, ids ``"<photo id>#<i>"`` (e.g. ``"astronaut#17"``).

    Raises:
        ValueError: empty ``photos``, negative ``k``, ``size < 1`` or ``min_crop`` outside (0, 1].
    """
    if not photos:
        raise ValueError("sample_views needs at least one photo; load some with load_photos().")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}.")
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}.")
    if not 0.0 < min_crop <= 1.0:
        raise ValueError(f"min_crop must be in (0, 1], got {min_crop}.")
    return [view_at(photos, i, seed=seed, size=size, min_crop=min_crop) for i in range(k)]


def view_at(photos: list[Photo], i: int, *, seed: int | str, size: int, min_crop: float = 0.5) -> Photo:
    """View ``i`` of :func:`sample_views` alone: a pure function of (photos, i, seed, size, min_crop), so
    a step-keyed data builder can draw the view of any index without drawing the ones before it.

    Raises:
        ValueError: empty ``photos`` or ``i < 0``.
    """
    if not photos:
        raise ValueError("view_at needs at least one photo; load some with load_photos().")
    if i < 0:
        raise ValueError(f"view index must be >= 0, got {i}.")
    photo = photos[i % len(photos)]
    x0, y0, side, flip = view_crop(photo, seed=seed, i=i, min_crop=min_crop)
    return Photo(image_id=f"{photo.image_id}#{i}", image=render_view(photo, x0, y0, side, flip, size))


def view_crop(photo: Photo, *, seed: int, i: int, min_crop: float = 0.5) -> tuple[int, int, int, bool]:
    """The random draws of view ``i`` of :func:`sample_views`: ``(x0, y0, side, flip)`` in pixels
    of ``photo`` (a square crop at (x0, y0) with that side, flipped left-right when ``flip``).
    Exposed so that a task can make a second crop tied to the same view (e.g. the same crop
    moved, :mod:`jrl_core.perception`'s continuity tasks)."""
    rng = random.Random(f"{seed}:{i}")
    width, height = photo.image.size
    short = min(width, height)
    side = max(1, min(short, round(rng.uniform(min_crop, 1.0) * short)))
    x0 = rng.randint(0, width - side)
    y0 = rng.randint(0, height - side)
    return x0, y0, side, rng.random() < 0.5


def render_view(photo: Photo, x0: int, y0: int, side: int, flip: bool, size: int) -> Image.Image:
    """The square crop ``(x0, y0, side)`` of ``photo`` resized to ``size×size`` (bicubic), flipped
    left-right when ``flip``: how :func:`sample_views` renders a view."""
    view = photo.image.resize((size, size), Image.Resampling.BICUBIC, box=(x0, y0, x0 + side, y0 + side))
    return view.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else view
