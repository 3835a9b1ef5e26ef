"""Procedural natural-image-like pictures for the nano vision stage (issue: a stronger nano base).

The embedded photo set is small (:data:`jrl_core.images.SKIMAGE_PHOTOS`: 14 train photos), and a vision encoder
trained on views of 14 photos learns those photos as much as it learns what a continuous image looks like. These
pictures follow the *dead-leaves* model of natural-image statistics (Lee, Mumford & Huang 2001, "Occlusion models
for natural images"): opaque shapes with a power-law size distribution occluding one another, which reproduces
the scale invariance and edge statistics of photographs; each shape carries a colour gradient, stripes or noise
texture, and the whole picture a soft blur and sensor noise. They are made only for the vision stage's
perception questions ("is this one unbroken picture?", "do both halves come from the same picture?"): never a
jigsaw, seam-order or swap question, and never the held-out photos.

Deterministic: picture ``i`` of ``seed`` is the same on every machine (numpy's PCG64 and PIL's drawing are
integer-exact; the blur is PIL's).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jrl_core.images import Photo

__all__ = ["SIZE", "dead_leaves", "pictures"]

SIZE = 384
"""Side of a picture in pixels: views are crops of at least half of it (192 px), rendered at 126 px."""


def _colour(rng: np.random.Generator, palette: np.ndarray) -> tuple[int, int, int]:
    base = palette[rng.integers(len(palette))]
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 25, 3), 0, 255))


def dead_leaves(seed: int | str, size: int = SIZE) -> Image.Image:
    """One procedural picture.

    Args:
        seed: any int or string; the same seed gives the same picture.
        size: side in pixels (≥ 32).
    Returns:
        An RGB PIL image of ``size × size`` (values 0–255).
    Raises:
        ValueError: ``size < 32``.
    """
    if size < 32:
        raise ValueError(f"size={size}: use at least 32 px.")
    rng = np.random.default_rng(abs(hash_seed(seed)))
    palette = rng.uniform(20, 235, (rng.integers(3, 7), 3))  # a few dominant colours per picture, like a scene
    # background: a smooth two-colour gradient in a random direction
    c0, c1 = np.array(_colour(rng, palette), float), np.array(_colour(rng, palette), float)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = np.clip((np.cos(angle) * xx + np.sin(angle) * yy + 0.5) / 2, 0, 1)[..., None]
    image = Image.fromarray(((1 - t) * c0 + t * c1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    n = int(rng.integers(500, 1200))  # about 2-5 times the picture's area in leaves: few background gaps
    rmin, rmax = 5.0, size / 2.5
    u = rng.uniform(size=n)  # radius density ∝ r^-3 (dead leaves), by inverse transform sampling
    radii = 1 / np.sqrt(1 / rmin**2 - u * (1 / rmin**2 - 1 / rmax**2))
    for r in radii:  # each leaf falls on top of the earlier ones
        cx, cy = rng.uniform(-r, size + r, 2)
        fill = _colour(rng, palette)
        kind = rng.integers(4)
        if kind == 0:
            ry = r * rng.uniform(0.4, 1.0)
            draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=fill)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * rng.uniform(0.3, 1), cx + r * rng.uniform(0.3, 1), cy + r], fill=fill)
        elif kind == 2:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.0, k)
            draw.polygon([(cx + a * np.cos(b), cy + a * np.sin(b)) for a, b in zip(rad, ang, strict=True)], fill=fill)
        else:  # a stroke: branches, wires, horizon lines
            ang = rng.uniform(0, np.pi)
            dx, dy = 1.5 * r * np.cos(ang), 1.5 * r * np.sin(ang)
            draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=int(max(1, r / 6)))
    arr = np.asarray(image, dtype=float)
    if rng.uniform() < 0.6:  # stripes / ripples over the whole picture at low contrast (texture)
        freq, ang = rng.uniform(4, 40), rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * freq * (np.cos(ang) * xx + np.sin(ang) * yy))
        arr += rng.uniform(3, 15) * wave[..., None]
    arr += rng.normal(0, rng.uniform(1, 8), arr.shape)  # sensor noise
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))


def hash_seed(seed: int | str) -> int:
    """A stable 63-bit integer for an int or string seed (Python's ``hash`` of a str is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"synthetic:{seed}".encode()).digest()[:8], "little") >> 1


def pictures(n: int, *, seed: int = 0, size: int = SIZE) -> list[Photo]:
    """``n`` procedural pictures as in-memory :class:`jrl_core.images.Photo` objects (ids ``"synthetic/<seed>/<i>"``).

    Raises:
        ValueError: ``n < 1`` or ``size < 32``.
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one picture.")
    return [Photo(f"synthetic/{seed}/{i}", dead_leaves(f"{seed}:{i}", size)) for i in range(n)]
