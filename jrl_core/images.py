"""Photo sources and train/test splits.

Four sources, one entry point (:func:`load_photos`), each optionally with procedural training pictures:

* ``"skimage"``: the real photographs bundled inside ``skimage.data`` (:data:`SKIMAGE_PHOTOS`), read
  from the package's data folder, so no network is needed. Split **by source photo**:
  :data:`SKIMAGE_TEST` is held out, the rest is train. Views cut from one photo (:func:`sample_views`)
  therefore never straddle the split.
* ``"packages"``: ``"skimage"`` plus the real photographs other installed packages ship
  (:data:`PACKAGE_PHOTOS`: matplotlib's sample data, scikit-learn's sample images, PyWavelets' data),
  all of them on the *train* side: the test split is exactly ``"skimage"``'s (the same 5 photos, the
  same held-out puzzles), the train split has 19 photos instead of 14.
* ``"package-photos"``: those five photos alone, as a *second held-out set* (test split only; the nano base and
  the default recipes never see them): :func:`jrl_core.experiment.second_heldout_rows`.
* a folder of images: every ``*.jpg|*.jpeg|*.png|*.bmp|*.webp`` below it (recursive, case-insensitive
  suffix). Split by a stable hash of the relative POSIX path: ``sha1(path) mod 100 < 80`` → train,
  else test (80/20; independent of process, machine and ``PYTHONHASHSEED``).
* a data dir in the Jigsaw-R1 reference layout: ``<dir>/coco/train2014/*.jpg`` listed by
  ``<dir>/coco/train2014.json`` (paper_spec §1.4 "Data"). The json is either a list of file names,
  a COCO-style dict ``{"images": [{"file_name": ...}, ...]}`` (an image entry may carry
  ``"split": "train"|"test"``), or a dict ``{"train": [...], "test": [...]}``. Without an explicit
  split the same 80/20 hash split as for folders is used (on the file name).
* any of these followed by ``"+synthetic"`` or ``"+synthetic:N"`` (e.g. ``"skimage+synthetic"``): the source's
  photos plus ``N`` procedural dead-leaves pictures (:mod:`jrl_core.synthetic`; default
  :data:`SYNTHETIC_TRAIN_PICTURES`) on the *train* side only; the test split is exactly the source's
  (:func:`split_procedural`). ``"+tiling[:N]"`` adds procedural walls (:func:`jrl_core.synthetic.tiling`) the
  same way; both suffixes may be given. The nano default is ``"skimage+synthetic+tiling"``; see
  :data:`SYNTHETIC_TRAIN_PICTURES` and :data:`PROCEDURAL_TRAIN_PICTURES` for why.

Photos are **streamed**: :func:`load_photos` lists files and reads their headers only; a photo's
pixels are decoded when :attr:`Photo.image` is used, through a small per-process LRU cache
(:data:`DECODE_CACHE_SIZE` photos), so memory stays flat however large the folder (COCO train2014 decoded
up front would take ~75 GB). Every image is converted to 8-bit RGB by :func:`to_rgb` (conversions
documented there). A file with a non-UTF-8 name, an unreadable or too small image is skipped with a
``warnings.warn`` naming the file and the reason and counted in a :class:`SkipRecord`; nothing is
dropped silently. A file that breaks after listing raises a clear error when used (see
:func:`load_photos`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "IMAGE_SUFFIXES",
    "SKIMAGE_PHOTOS",
    "SKIMAGE_TEST",
    "PACKAGE_PHOTOS",
    "SPLITS",
    "SYNTHETIC_SEED",
    "SYNTHETIC_TRAIN_PICTURES",
    "PROCEDURAL_TRAIN_PICTURES",
    "DECODE_CACHE_SIZE",
    "Photo",
    "PhotoDecodeError",
    "SkipRecord",
    "clear_decode_cache",
    "decode_cache_info",
    "hash_split",
    "load_photos",
    "sample_views",
    "set_decode_cache_size",
    "split_procedural",
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

#: Real photographs shipped inside other installed packages (``image_id`` → (module, file relative to the
#: module's folder)), the ``"packages"`` source's extra *training* photos. ``.npz`` files hold one 2-D
#: (grayscale) or H×W×3 uint8 array. Left out: matplotlib's logos and plots, PyWavelets' ``camera`` (the
#: same photo as skimage's), scikit-learn's fetchers (they download).
PACKAGE_PHOTOS: dict[str, tuple[str, str]] = {
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("sklearn.datasets", "images/china.jpg"),
    "flower": ("sklearn.datasets", "images/flower.jpg"),
    "aero": ("pywt.data", "aero.npz"),
    "ascent": ("pywt.data", "ascent.npz"),
}

#: Accepted ``split`` values. ``"all"`` is train ∪ test.
SPLITS = ("train", "test", "all")
#: File suffixes picked up from a folder (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Share of hashed items that go to train (folder and COCO sources).
TRAIN_PERCENT = 80


class PhotoDecodeError(ValueError):
    """A listed photo file could not be decoded when it was used (see :class:`Photo`)."""


class Photo:
    """One source photograph: an in-memory image, or a file decoded lazily on use.

    ``Photo(image_id, image)`` wraps an image already in memory (views, tests, synthetic photos).
    ``Photo(image_id, path=...)`` (what :func:`load_photos` returns) keeps only the path: :attr:`image`
    decodes the file when it is first used and keeps the result in a small process-wide LRU cache
    (:func:`set_decode_cache_size`, default :data:`DECODE_CACHE_SIZE` photos), so memory does not grow
    with the number of photos listed. Photos are immutable and pickle cheaply (a file-backed photo
    pickles as its path, without the :class:`SkipRecord` it reports decode failures to).

    Attributes:
        image_id: stable identifier: the skimage name, the path relative to the folder, the COCO file
            name, or ``"<parent id>#<view index>"`` for a view from :func:`sample_views`.
        path: the image file of a file-backed photo (made absolute), else None.

    Raises:
        ValueError: neither or both of ``image`` and ``path`` given, or an in-memory image that is not
            a PIL image in mode ``"RGB"`` (convert it with :func:`to_rgb`).
    """

    __slots__ = ("image_id", "path", "_image", "_record")

    def __init__(self, image_id: str, image: Image.Image | None = None, *, path: str | os.PathLike | None = None,
                 record: SkipRecord | None = None) -> None:
        if (image is None) == (path is None):
            raise ValueError(f"Photo {image_id!r}: give either an in-memory image or a file path (path=...), "
                             "not both and not neither.")
        if image is not None and (not isinstance(image, Image.Image) or image.mode != "RGB"):
            mode = getattr(image, "mode", type(image).__name__)
            raise ValueError(
                f"Photo {image_id!r}: image must be a PIL image in mode 'RGB', got {mode!r}; "
                "convert it with jrl_core.images.to_rgb(image)."
            )
        object.__setattr__(self, "image_id", image_id)
        object.__setattr__(self, "path", None if path is None else Path(path).absolute())  # cwd may change
        object.__setattr__(self, "_image", image)
        object.__setattr__(self, "_record", record)

    @property
    def image(self) -> Image.Image:
        """The photo as an 8-bit ``"RGB"`` PIL image (W×H×3, values 0-255; see :func:`to_rgb`).

        A file-backed photo is decoded on first use and served from the LRU cache afterwards; treat the
        returned image as read-only (it is shared).

        Raises:
            FileNotFoundError: the file was listed by :func:`load_photos` but is gone now (photos are read
                lazily, so the source must not change while a run uses it); the message names the file.
            PhotoDecodeError: the file is there but cannot be decoded (e.g. a truncated JPEG whose header
                was fine when it was listed). It is also warned about and counted as ``"unreadable"`` in
                the :class:`SkipRecord` of the :func:`load_photos` call that listed it.
        """
        if self._image is not None:
            return self._image
        return _DECODE_CACHE.get(self.path, self._decode)

    @property
    def is_file_backed(self) -> bool:
        """True when the image is read from :attr:`path` on use (not held in memory)."""
        return self._image is None

    def _decode(self) -> Image.Image:
        path = self.path
        try:
            return _decode_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"photo {_display(self.image_id)!r}: file {_display(str(path))} was listed by load_photos but is "
                "gone now. Photos are decoded lazily (on use), so the photo folder must not change during a run: "
                "restore the file, or load the photos again with load_photos()."
            ) from None
        except Exception as err:  # any decoder failure (OSError, UnidentifiedImageError, SyntaxError, ...)
            detail = f"unreadable at use ({type(err).__name__}: {err})"
            warnings.warn(f"cannot decode image {_display(str(path))}: {detail}", stacklevel=3)
            if self._record is not None:
                self._record.add(self.image_id, "unreadable", detail)
            raise PhotoDecodeError(
                f"photo {_display(self.image_id)!r}: cannot decode {_display(str(path))} ({type(err).__name__}: "
                f"{err}). Remove or replace the file, or load the photos with load_photos(..., verify=True), "
                "which decodes every file once up front and skips undecodable ones."
            ) from err

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Photo is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Photo is immutable: cannot delete {name!r}")

    def __reduce__(self):
        return (_rebuild_photo, (self.image_id, self._image, self.path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Photo):
            return NotImplemented
        return (self.image_id, self.path) == (other.image_id, other.path) and self._image == other._image

    def __hash__(self) -> int:
        return hash((self.image_id, self.path))

    def __repr__(self) -> str:
        if self._image is None:
            return f"Photo({self.image_id!r}, path={str(self.path)!r})"
        return f"Photo({self.image_id!r}, <RGB {self._image.width}x{self._image.height}>)"


def _rebuild_photo(image_id: str, image: Image.Image | None, path: Path | None) -> Photo:
    return Photo(image_id, image, path=path)


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` for image files; a ``.npz`` holding one uint8 array (2-D or H×W×3) as an image."""
    if path.suffix.lower() == ".npz":
        with np.load(path) as data:
            arrays = [data[k] for k in data.files]
        a = arrays[0] if len(arrays) == 1 else None
        if a is None or a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
            shapes = [(x.dtype.name, x.shape) for x in arrays]
            raise ValueError(f"{path}: expected one uint8 array (H×W grayscale or H×W×3 RGB) in the .npz, found "
                             f"{shapes}; save the photo as np.savez(path, image=array_uint8) or as a PNG/JPEG.")
        return Image.fromarray(arrays[0])
    return Image.open(path)


def _decode_file(path: Path) -> Image.Image:
    """Decode one image file into an 8-bit RGB image (:func:`to_rgb`); the decoder's error propagates."""
    with _open_image(path) as raw:
        raw.load()
        return to_rgb(raw)


DECODE_CACHE_SIZE = 32
"""Default number of decoded file-backed photos kept per process (~0.9 MB each at 640×480)."""


class _LRU:
    """A thread-safe LRU map path → decoded image, with hit/miss counters."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: OrderedDict[Path, Image.Image] = OrderedDict()
        self.hits = self.misses = 0
        self.lock = threading.Lock()

    def get(self, key: Path, load) -> Image.Image:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self.items[key]
            self.misses += 1
        value = load()  # decode outside the lock; a racing thread at worst decodes twice
        with self.lock:
            if self.maxsize > 0:
                self.items[key] = value
                self.items.move_to_end(key)
                while len(self.items) > self.maxsize:
                    self.items.popitem(last=False)
        return value


_DECODE_CACHE = _LRU(DECODE_CACHE_SIZE)


def set_decode_cache_size(maxsize: int) -> None:
    """Keep at most ``maxsize`` (≥ 0) decoded file-backed photos per process; 0 disables the cache.

    Raises:
        ValueError: ``maxsize`` is not an int ≥ 0.
    """
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
        raise ValueError(f"decode cache size must be an int >= 0, got {maxsize!r}.")
    with _DECODE_CACHE.lock:
        _DECODE_CACHE.maxsize = maxsize
        while len(_DECODE_CACHE.items) > maxsize:
            _DECODE_CACHE.items.popitem(last=False)


def decode_cache_info() -> dict[str, int]:
    """``{"size", "maxsize", "hits", "misses"}`` of this process's decode cache (size in photos)."""
    with _DECODE_CACHE.lock:
        return {"size": len(_DECODE_CACHE.items), "maxsize": _DECODE_CACHE.maxsize,
                "hits": _DECODE_CACHE.hits, "misses": _DECODE_CACHE.misses}


def clear_decode_cache() -> None:
    """Drop every decoded photo of this process's cache and reset its counters."""
    with _DECODE_CACHE.lock:
        _DECODE_CACHE.items.clear()
        _DECODE_CACHE.hits = _DECODE_CACHE.misses = 0


def _display(name: str) -> str:
    """``name`` safe to print and to write as UTF-8: bytes that are not UTF-8 (surrogate escapes from
    ``os.listdir``) shown as ``\\xNN``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_valid_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class SkipRecord:
    """Counts of images skipped while loading (or found undecodable at use), by reason.

    Attributes:
        skipped: reason → count; reasons are ``"unreadable"`` (not an image, or fails to decode),
            ``"too_small"``, ``"missing"`` (listed but not on disk) and ``"bad_name"`` (a file name that
            is not valid UTF-8).
        examples: up to ``max_examples`` strings ``"<file>: <why>"`` for the report (names that are not
            UTF-8 shown with ``\\xNN`` escapes, so the record always writes as UTF-8 JSON).
    """

    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20
    _counted: set = field(default_factory=set, init=False, repr=False, compare=False)

    def add(self, name: str, reason: str, detail: str) -> None:
        """Count one skipped file under ``reason`` and keep ``"name: detail"`` as an example; the same
        (file, reason) is counted once however often it is reported."""
        if (name, reason) in self._counted:
            return
        self._counted.add((name, reason))
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{_display(name)}: {_display(detail)}")

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
    try:  # a name from os.listdir that is not UTF-8 hashes as its bytes on disk
        data = key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = key.encode("utf-8", "surrogatepass")
    bucket = int.from_bytes(hashlib.sha1(data).digest()[:8], "big") % 100
    return "train" if bucket < train_percent else "test"


def _probe(path: Path, name: str, min_size: int, record: SkipRecord, verify: bool) -> Photo | None:
    """A file-backed Photo for one listed file, or warn + count and return None.

    Reads only the header (format and size) unless ``verify``, which decodes the file once (and drops it).
    """
    shown = _display(str(path))
    if not _is_valid_name(name):
        detail = "bad_name (file name is not valid UTF-8; rename the file)"
        warnings.warn(f"skipping image {shown}: {detail}", stacklevel=3)
        record.add(name, "bad_name", detail)
        return None
    if not path.is_file():
        detail = "missing (listed but not on disk)"
        warnings.warn(f"skipping image {shown}: {detail}", stacklevel=3)
        record.add(name, "missing", detail)
        return None
    try:
        if verify:
            size = _decode_file(path).size
        else:
            with _open_image(path) as raw:  # header only (format and size) for image files
                size = raw.size
    except Exception as err:  # any decoder failure (OSError, UnidentifiedImageError, SyntaxError, ...)
        detail = f"unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"skipping image {shown}: {detail}", stacklevel=3)
        record.add(name, "unreadable", detail)
        return None
    if min(size) < min_size:  # EXIF rotation swaps the sides, the shorter side stays
        detail = f"too small ({size[0]}x{size[1]} px, min side < min_size={min_size})"
        warnings.warn(f"skipping image {shown}: {detail}", stacklevel=3)
        record.add(name, "too_small", detail)
        return None
    return Photo(image_id=name, path=path, record=record)


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


def _package_entries(split: str, *, alone: bool = False) -> list[tuple[str, Path]]:
    """The ``"packages"`` source: skimage's entries, then (train split only) :data:`PACKAGE_PHOTOS`. With
    ``alone`` (the ``"package-photos"`` source): :data:`PACKAGE_PHOTOS` only, as a test set (no train split).

    Raises ``ValueError`` naming the package and the fix when one is not installed, and for ``alone`` with the
    train split."""
    import importlib

    if alone and split == "train":
        raise ValueError("photo source 'package-photos' is a held-out set only (the five photos other packages "
                         "ship); it has no train split. Train on a 'skimage' source and evaluate on it.")
    entries = [] if alone else _skimage_entries(split)
    if split == "test" and not alone:
        return entries
    for name, (module, rel) in PACKAGE_PHOTOS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            source = "package-photos" if alone else "packages"
            raise ValueError(f"photo source {source!r} needs {module.split('.')[0]!r} for photo {name!r} ({err}); "
                             "install the workbook's dependencies (pip install -e .)"
                             + ("." if alone else " or use source 'skimage'.")) from err
        entries.append((name, Path(mod.__file__).parent / rel))
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


SYNTHETIC_TRAIN_PICTURES = 42
"""Procedural pictures a ``"+synthetic"`` source adds to the train split: three per skimage training photo, so
with ``"skimage+synthetic"`` three quarters of the training puzzles are cut from them (views go round-robin over the
photo list; with the default's 42 walls too, three in seven).

Why (session 12, nano-v10, GRPO preset, seed 0, the fixed held-out set of 300 puzzles on the 5 test photos): a
dead-leaves picture has no sky, ground or upright objects, so a swapped pair can be told only from whether the
content runs on across the seam, the cue that 1x2 (left/right) puzzles need. Training on ``"skimage"`` alone,
1x2 reached 65.7%; with 14 pictures added 75.7%, with 42 added 77.3%. 2x1 stayed where it was: 86.3%, 86.7%,
87.0%. The README gives every seed of the adopted setting."""

SYNTHETIC_SEED = 777
"""Seed of the ``"+synthetic"`` training pictures (:func:`jrl_core.synthetic.pictures`); the nano build's
vision stage, when it uses pictures, draws them with its own config seed."""


PROCEDURAL_TRAIN_PICTURES = {"synthetic": SYNTHETIC_TRAIN_PICTURES, "tiling": 42}
"""Pictures a photo source's procedural suffix adds when it gives no count (``"+synthetic"``: 42 dead-leaves
pictures, ``"+tiling"``: 42 walls, three per skimage training photo); kinds: :data:`jrl_core.synthetic.KINDS`.

Why the walls (session 14, nano-v10, GRPO preset, seeds 0–4, the same held-out set): the base's swap probe is at
chance on the held-out brick wall. With 14 walls (the default of session 14; views go round-robin over 14 photos
+ 42 + 14 pictures) RQ1 2x1 reached 88.7 / 87.7 / 87.7 / 87.7 / 88.0% (dead leaves alone: 87.0 / 88.0 / 84.7 /
87.3 / 88.7%), through rocket rather than brick, and 1x2 70.3% (dead leaves alone 72.3%, seed sd 9.7 points).

Why 42 (session 15): with 42 walls 2x1 reached 88.1% and 1x2 73.1% with its seeds in agreement (72.0–74.7%, sd
1.0 point, no locked answer cell). The choice was made on the *second* held-out set
(:func:`jrl_core.experiment.second_heldout_rows`, five photos no setting had been chosen on), by a rule fixed
before scoring it (42 if it is not worse on either size): 2x1 95.2% with 42 walls vs 94.3% with 14, 1x2 77.9% vs
74.8%. That set has chosen this one setting and nothing else."""


@functools.lru_cache(maxsize=4)
def _synthetic_pictures(n: int, kind: str = "synthetic") -> tuple[Photo, ...]:
    """The procedural training pictures of one kind, made once per process (~40 ms each; photos are immutable)."""
    from jrl_core import synthetic  # synthetic imports this module: imported here, not at the top

    return tuple(synthetic.pictures(n, seed=SYNTHETIC_SEED, kind=kind))


def split_procedural(source: str) -> tuple[str, dict[str, int]]:
    """``(base source, {kind: number of procedural training pictures})`` of a photo source name.

    Suffixes ``"+<kind>"`` or ``"+<kind>:N"`` with a kind of :data:`PROCEDURAL_TRAIN_PICTURES` come after the base,
    in any order: ``"skimage+synthetic"`` → ``("skimage", {"synthetic": 42})``, ``"skimage+synthetic:14+tiling"`` →
    ``("skimage", {"synthetic": 14, "tiling": 42})``, any other name → ``(name, {})``.

    Raises:
        ValueError: a suffix whose count is not an integer ≥ 1, or a kind given twice (the message shows the form).
    """
    base, counts = str(source), {}
    while True:
        head, sep, tail = base.rpartition("+")
        kind, colon, n = tail.partition(":")
        if not sep or not head or kind not in PROCEDURAL_TRAIN_PICTURES:
            return base, dict(reversed(list(counts.items())))
        if kind in counts:
            raise ValueError(f"photo source {source!r}: '+{kind}' is given twice; give it once.")
        if colon and (not n.isdigit() or int(n) < 1):
            raise ValueError(f"photo source {source!r}: the count after '+{kind}:' must be an integer >= 1, "
                             f"e.g. '{head}+{kind}:{PROCEDURAL_TRAIN_PICTURES[kind]}' (or '{head}+{kind}' for the "
                             "default).")
        counts[kind] = int(n) if colon else PROCEDURAL_TRAIN_PICTURES[kind]
        base = head


def load_photos(
    source: str = "skimage",
    split: str = "train",
    *,
    min_size: int = 64,
    record: SkipRecord | None = None,
    limit: int | None = None,
    verify: bool = False,
) -> list[Photo]:
    """List the photographs of one split of a source, as file-backed photos decoded lazily.

    Listing reads each file's header only (format and size, ~0.02 ms per JPEG), so memory and time do not
    grow with decoded pixels: a photo's pixels are decoded when :attr:`Photo.image` is first used and kept
    in a small LRU cache (:func:`set_decode_cache_size`). Files skipped at listing: names that are not
    valid UTF-8 (``"bad_name"``), files listed but absent (``"missing"``), files that are not a readable
    image (``"unreadable"``) and images whose shorter side is below ``min_size`` (``"too_small"``).

    A file whose header reads but whose data does not decode (e.g. a truncated JPEG) is listed, and its use
    raises :class:`PhotoDecodeError` naming the file (warned about and counted as ``"unreadable"`` in
    ``record``). ``verify=True`` decodes every file once up front instead (one at a time, nothing kept:
    ~1-7 ms per 640×480 JPEG, no memory growth) and skips such files here, before training starts. A file
    removed between listing and use raises ``FileNotFoundError`` naming it.

    Args:
        source: ``"skimage"`` (split by photo: :data:`SKIMAGE_TEST` held out), ``"packages"`` (the same
            test split; train adds :data:`PACKAGE_PHOTOS`), ``"package-photos"`` (:data:`PACKAGE_PHOTOS` alone,
            test split only: a second held-out set),
            a path to a folder of images (80/20 hash split of the relative path), or a path to a data
            dir holding ``coco/train2014/`` and ``coco/train2014.json`` (the reference's COCO layout;
            the json's split if it gives one, else the hash split). See the module docstring.
        split: ``"train"``, ``"test"`` or ``"all"``.
        min_size: images whose shorter side is below this many pixels are skipped (default 64).
        record: a :class:`SkipRecord` to count skipped files in (one is made if omitted); the returned
            photos keep it, to count files that fail to decode later.
        limit: stop after this many photos (in sorted order), e.g. to keep a big folder cheap.
        verify: decode every listed file once now and skip the undecodable ones (default False: header
            only).

    Returns:
        File-backed :class:`Photo` objects in a deterministic order (sorted by name; skimage in
        :data:`SKIMAGE_PHOTOS` order); ``.image`` is an 8-bit RGB image (see :func:`to_rgb`).

    Raises:
        ValueError: unknown source or split (the message says what is accepted), a COCO listing that
            cannot be read, or no photo at all in the result.

    Warns:
        UserWarning: once per skipped file (bad name, unreadable, too small, listed but missing), naming it.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    base, procedural = split_procedural(source)
    if procedural:
        photos = load_photos(base, split, min_size=min_size, record=record, limit=limit, verify=verify)
        if split == "test":
            return photos
        return photos + [p for kind, n in procedural.items() for p in _synthetic_pictures(n, kind)]
    if record is None:
        record = SkipRecord()
    if source == "skimage":
        entries, kind = _skimage_entries(split), "skimage"
    elif source == "packages":
        entries, kind = _package_entries(split), "packages"
    elif source == "package-photos":
        entries, kind = _package_entries(split, alone=True), "package-photos"
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
                f"unknown photo source {source!r}: not 'skimage', 'packages' or 'package-photos' and not an "
                "existing folder. Pass one of those, a folder of images, or a data dir containing "
                "coco/train2014.json."
            )
    photos: list[Photo] = []
    for name, path in entries:
        if limit is not None and len(photos) >= limit:
            break
        photo = _probe(path, name, min_size, record, verify)
        if photo is not None:
            photos.append(photo)
    if not photos:
        raise ValueError(
            f"no usable photo in source {_display(str(source))!r} ({kind}), split {split!r}: {len(entries)} "
            f"candidate files, skipped {record.to_dict()['skipped']}. Check the path, the split, or lower min_size."
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


def view_at(photos: list[Photo], i: int, *, seed: int | str, size: int, min_crop: float = 0.5,
            render: bool = True) -> Photo:
    """View ``i`` of :func:`sample_views` alone: a pure function of (photos, i, seed, size, min_crop), so
    a step-keyed data builder can draw the view of any index without drawing the ones before it.
    ``render=False`` gives the same ``image_id`` with a black ``size``×``size`` RGB image instead of the crop
    (for rows whose prompts, solutions and ids are wanted without pixels: resizing is most of a row's cost).

    Raises:
        ValueError: empty ``photos`` or ``i < 0``.
    """
    if not photos:
        raise ValueError("view_at needs at least one photo; load some with load_photos().")
    if i < 0:
        raise ValueError(f"view index must be >= 0, got {i}.")
    photo = photos[i % len(photos)]
    if not render:
        return Photo(image_id=f"{photo.image_id}#{i}", image=Image.new("RGB", (size, size)))
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
