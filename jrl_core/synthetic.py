"""Procedural natural-image-like pictures for the nano vision stage (issue: a stronger nano base).

The embedded photo set is small (:data:`jrl_core.images.SKIMAGE_PHOTOS`: 14 train photos), and a vision encoder
trained on views of 14 photos learns those photos as much as it learns what a continuous image looks like. These
pictures follow the *dead-leaves* model of natural-image statistics (Lee, Mumford & Huang 2001, "Occlusion models
for natural images"): opaque shapes with a power-law size distribution occluding one another, which reproduces
the scale invariance and edge statistics of photographs; each shape carries a colour gradient, stripes or noise
texture, and the whole picture a soft blur and sensor noise. They are made only for the vision stage's
perception questions ("is this one unbroken picture?", "do both halves come from the same picture?"): never a
jigsaw, seam-order or swap question, and never the held-out photos.

A second kind, :func:`tiling`, draws man-made regular surfaces (brick and tile walls, pavements) seen at an
angle: long straight joints and a repeating pattern, where a broken seam shows only as joints that stop lining up.
:data:`KINDS` names both.

Deterministic: picture ``i`` of ``seed`` is the same on every machine (numpy's PCG64 and PIL's drawing are
integer-exact; the blur is PIL's).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jrl_core.images import Photo

__all__ = ["KINDS", "SIZE", "dead_leaves", "pictures", "tiling"]

SIZE = 384
"""Side of a picture in pixels: views are crops of at least half of it (192 px), rendered at 126 px."""


def _colour(rng: np.random.Generator, palette: np.ndarray) -> tuple[int, int, int]:
    base = palette[rng.integers(len(palette))]
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 25, 3), 0, 255))


def _generator(seed: int | str, size: int) -> np.random.Generator:
    """The picture's random generator (PCG64 from :func:`hash_seed`); ``ValueError`` for ``size < 32``."""
    if size < 32:
        raise ValueError(f"size={size}: use at least 32 px.")
    return np.random.default_rng(abs(hash_seed(seed)))


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
    rng = _generator(seed, size)
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


def tiling(seed: int | str, size: int = SIZE) -> Image.Image:
    """One procedural picture of a regular man-made surface: a wall or pavement of bricks or tiles seen at an angle.

    Bricks of one random size (6–25% × 3–12% of the side) in rows, each row shifted by a bond offset (stack, running,
    third or random), separated by joints of a lighter or darker mortar; brick colours from a palette around one material colour
    (grey in a third of the pictures, as stone and concrete); grain, a rotation (near 0° or near 90°, ±12°), a random perspective
    (the drawn wall cut by a jittered quadrilateral), a lighting gradient, sensor noise and a soft blur. It is the
    dead-leaves pictures' complement: no occluding shapes, but long straight joints that run on across a seam only
    when the picture is unbroken.

    Args:
        seed: any int or string; the same seed gives the same picture (independent of :func:`dead_leaves`'s).
        size: side in pixels (≥ 32).
    Returns:
        An RGB PIL image of ``size × size`` (values 0–255).
    Raises:
        ValueError: ``size < 32``.
    """
    rng = _generator(f"tiling:{seed}", size)
    big = 2 * size  # the wall is drawn twice as large, then viewed through a quadrilateral in its middle
    palette = np.clip(rng.uniform(40, 215, 3) + rng.normal(0, 30, (rng.integers(2, 5), 3)), 0, 255)  # one material
    if rng.uniform() < 1 / 3:  # stone, concrete: grey
        palette = np.repeat(palette.mean(1, keepdims=True), 3, axis=1)
    mortar = np.clip(palette.mean(0) + rng.choice([-1, 1]) * rng.uniform(30, 90), 0, 255)
    image = Image.new("RGB", (big, big), tuple(int(v) for v in mortar))
    draw = ImageDraw.Draw(image)
    bw, bh = size * rng.uniform(0.06, 0.25), size * rng.uniform(0.03, 0.12)
    gap = rng.uniform(1, max(1.5, min(bw, bh) / 4))
    offset = float(rng.choice([0.0, 0.5, 1 / 3, rng.uniform(0, 1)]))
    y, row = 0.0, 0
    while y < big:
        x = -bw * ((row * offset) % 1)
        while x < big:
            draw.rectangle([x + gap / 2, y + gap / 2, x + bw - gap / 2, y + bh - gap / 2], fill=_colour(rng, palette))
            x += bw
        y, row = y + bh, row + 1
    arr = np.asarray(image, dtype=float)
    if rng.uniform() < 0.7:  # grain on the bricks
        arr += rng.normal(0, rng.uniform(2, 12), arr.shape[:2])[..., None]
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    image = image.rotate(float(rng.choice([0, 90]) + rng.normal(0, 12)), resample=Image.Resampling.BILINEAR)
    corners = np.array([[0.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.5, 0.5]]) * size + rng.uniform(-0.25, 0.25, (4, 2)) * size
    image = image.transform((size, size), Image.Transform.QUAD, [float(v) for v in corners.ravel()],
                            resample=Image.Resampling.BILINEAR)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ang = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.4) * (np.cos(ang) * xx + np.sin(ang) * yy - 0.5)
    arr = np.asarray(image, dtype=float) * light[..., None] + rng.normal(0, rng.uniform(1, 6), (size, size, 3))
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))


KINDS = {"synthetic": dead_leaves, "tiling": tiling}
"""Procedural picture kinds by the name a photo source's suffix uses (``"skimage+synthetic+tiling:14"``,
:func:`jrl_core.images.split_procedural`): ``"synthetic"`` the dead-leaves pictures, ``"tiling"`` the walls."""


def hash_seed(seed: int | str) -> int:
    """A stable 63-bit integer for an int or string seed (Python's ``hash`` of a str is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"synthetic:{seed}".encode()).digest()[:8], "little") >> 1


def pictures(n: int, *, seed: int = 0, size: int = SIZE, kind: str = "synthetic") -> list[Photo]:
    """``n`` procedural pictures of one kind (:data:`KINDS`) as in-memory :class:`jrl_core.images.Photo` objects.

    Ids are ``"synthetic/<seed>/<i>"`` for dead leaves (as before kinds existed), ``"<kind>/<seed>/<i>"`` otherwise.

    Raises:
        ValueError: ``n < 1``, ``size < 32`` or an unknown ``kind`` (the message lists the kinds).
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one picture.")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {', '.join(KINDS)}.")
    return [Photo(f"{kind}/{seed}/{i}", KINDS[kind](f"{seed}:{i}", size)) for i in range(n)]
