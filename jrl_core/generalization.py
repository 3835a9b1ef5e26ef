"""Offline generalization suite: the nano-scale analogue of Jigsaw-R1 Tables 2 and 3.

Jigsaw-R1 asks whether jigsaw training transfers to other visual tasks (CV-Bench, MMVP, SAT,
Super-CLEVR; paper §5 RQ2, Tables 2-3). Offline, without those benchmarks, the nano model is
scored on procedurally labelled perception questions (``jrl_core.perception``) on views of the
**held-out test photos** (``load_photos(source, "test")``), in two groups:

* task families the nano model was pretrained on (:data:`jrl_core.perception.DEFAULT_TASKS`),
  on unseen photos: does jigsaw RL keep (or improve) what pretraining taught?
* task families it never saw (the rest of ``perception.TASKS``, and :data:`EXTRA_TASKS`
  defined here): does jigsaw RL move accuracy on new perception questions above chance?

Questions are worded exactly as in pretraining (``PerceptionItem.prompt_text(mode)``: question,
"Select the correct answer from the following N choices:", lettered options, the thinking
mode's letter instruction) and become rows in the puzzle-row format, so that
``jrl_core.evaluate.evaluate`` scores them like jigsaw puzzles (answer type ``"letter"``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from PIL import Image, ImageDraw

from jrl_core import answers, perception
from jrl_core.evaluate import evaluate
from jrl_core.images import Photo, load_photos
from jrl_core.modes import get_mode, mode_name
from jrl_core.perception import COLOURS, PerceptionItem

__all__ = [
    "EXTRA_TASKS",
    "SEED_OFFSET",
    "SUITE",
    "SuiteEntry",
    "evaluate_suite",
    "make_suite_items",
    "pretrained_tasks",
    "suite_rows",
]

#: Suite seeds are offset so that no suite set repeats the pretraining's held-out checks on the
#: test photos (``perception.pretrain`` uses seeds 10_007 and 20_011).
SEED_OFFSET = 30_000


# ---------------------------------------------------------------- a family no perception task covers


def _bigger_shape(view: Image.Image, other, rng: random.Random) -> PerceptionItem:
    """Which of two drawn shapes (a red square, a blue circle) is bigger? Radii differ by a factor
    of 1.6-2.2, the shapes sit in opposite halves of the image. A size comparison: no pretraining
    task asks about size (chance 1/2)."""
    w, h = view.size
    small = max(3, min(w, h) // 14)
    big = int(round(small * rng.uniform(1.6, 2.2)))
    square_big = rng.random() < 0.5
    r_square, r_circle = (big, small) if square_big else (small, big)
    horizontal = rng.random() < 0.5
    left_first = rng.random() < 0.5

    def centre(r: int, first: bool) -> tuple[int, int]:
        if horizontal:
            lo, hi = (r + 1, w // 2 - r - 1) if first else (w // 2 + r + 1, w - r - 1)
            return rng.randint(lo, max(lo, hi)), rng.randint(r + 1, max(r + 1, h - r - 1))
        lo, hi = (r + 1, h // 2 - r - 1) if first else (h // 2 + r + 1, h - r - 1)
        return rng.randint(r + 1, max(r + 1, w - r - 1)), rng.randint(lo, max(lo, hi))

    img = view.copy()
    draw = ImageDraw.Draw(img)
    perception._draw_shape(draw, "square", *centre(r_square, left_first), r_square, COLOURS["red"])
    perception._draw_shape(draw, "circle", *centre(r_circle, not left_first), r_circle, COLOURS["blue"])
    truth = "the red square" if square_big else "the blue circle"
    wrong = "the blue circle" if square_big else "the red square"
    return perception._mc(img, "Which shape drawn on the image is bigger?", truth, [wrong], "bigger_shape", rng)


#: Task generators defined here (same signature as ``perception.TASKS``); never in pretraining.
EXTRA_TASKS: dict[str, Callable[[Image.Image, tuple[Image.Image, Image.Image], random.Random], PerceptionItem]] = {
    "bigger_shape": _bigger_shape,
}


# ---------------------------------------------------------------- the suite


class SuiteEntry(NamedTuple):
    """One family of the suite: its task names, a one-line description, and whether the default
    nano model was pretrained on all of its tasks (``perception.DEFAULT_TASKS``)."""

    tasks: tuple[str, ...]
    description: str
    seen_in_pretraining: bool


_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "same_photo": (("same_photo_v", "same_photo_h"), "do the two halves come from the same photo"),
    "brighter": (("brighter_v", "brighter_h"), "which half of the image is brighter"),
    "grid_relation": (("grid_relation",), "relation of two positions in a spelled-out grid layout"),
    "brighter_relation": (("brighter_relation_v", "brighter_relation_h"),
                          "where the brighter half is relative to the darker half (jigsaw relation phrases)"),
    "brighter_grid": (("brighter_grid_v", "brighter_grid_h"),
                      "where the brighter half is relative to the darker half, laid out like a jigsaw pair prompt"),
    "upside_down": (("upside_down",), "is the photo upside down"),
    "quadrant_tint": (("quadrant_tint",), "which quadrant is tinted red"),
    "shape_colour": (("shape_colour",), "colour of a drawn shape"),
    "count_shapes": (("count_shapes",), "how many yellow circles are drawn (1-4)"),
    "shape_relation": (("shape_relation",), "where a red square is relative to a blue circle"),
    "adjacent": (("adjacent_v", "adjacent_h"), "do the two halves show adjacent parts of one photo"),
    "continuity": (("continuity_v", "continuity_h"), "is the image one unbroken photo (no cut across the middle)"),
    "bigger_shape": (("bigger_shape",), "which of two drawn shapes is bigger (defined in generalization.py)"),
}


def _build_suite() -> dict[str, SuiteEntry]:
    known = set(perception.TASKS) | set(EXTRA_TASKS)
    suite = {name: SuiteEntry(tasks, desc, all(t in perception.DEFAULT_TASKS for t in tasks))
             for name, (tasks, desc) in _FAMILIES.items() if all(t in known for t in tasks)}
    covered = {t for entry in suite.values() for t in entry.tasks}
    for task in sorted(known - covered):  # a perception task added later still gets scored
        suite[task] = SuiteEntry((task,), f"perception task {task}", task in perception.DEFAULT_TASKS)
    return suite


#: Family name -> :class:`SuiteEntry`; covers every task of ``perception.TASKS`` and :data:`EXTRA_TASKS`.
SUITE: dict[str, SuiteEntry] = _build_suite()


def _entry(name: str) -> SuiteEntry:
    try:
        return SUITE[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown suite family {name!r}; known: {', '.join(SUITE)}.") from None


def make_suite_items(photos: list[Photo], k: int, *, seed: int, tasks: Sequence[str],
                     size: int) -> list[PerceptionItem]:
    """``k`` labelled questions on views of ``photos``, deterministic per ``seed``.

    Perception tasks only: exactly ``perception.make_items`` (the pretraining generator). With a
    task of :data:`EXTRA_TASKS`: the same recipe (item i uses ``tasks[i % len(tasks)]``, a view of
    photo ``i % len(photos)``, a different photo's view and another crop of the same photo as
    ``others``), with per-item rngs seeded ``"generalization:{seed}:{i}"``.

    Raises:
        ValueError: unknown task names, or fewer than two photos.
    """
    if all(t in perception.TASKS for t in tasks):
        return perception.make_items(photos, k, seed=seed, tasks=tasks, size=size)
    return perception.make_items(photos, k, seed=seed, tasks=tasks, size=size,
                                 generators={**perception.TASKS, **EXTRA_TASKS}, rng_prefix="generalization")


def suite_rows(name: str, n_items: int = 64, seed: int = 0, think: bool = False, *, mode: str | None = None,
               source: str = "skimage", image_size: int) -> list[dict]:
    """Rows of one suite family on the held-out test photos, in the puzzle-row format.

    Args:
        name: a key of :data:`SUITE`.
        n_items: questions (≥ 0), balanced over the family's tasks.
        seed: set seed; the items use ``make_suite_items(seed=SEED_OFFSET + seed)``.
        think: Jigsaw-R1 thinking prompt (``<think>``/``<answer>``) or the non-thinking one; ignored
            when ``mode`` (a ``jrl_core.modes.MODES`` name) is given.
        source: photo source (``jrl_core.images.load_photos``); its ``"test"`` split is used.
        image_size: view side in pixels, the model's input side (``jrl_core.nano.view_size(processor)``).

    Returns:
        ``n_items`` rows (:meth:`jrl_core.perception.PerceptionItem.row`: the pretraining wording, a
        letter answer, no grid) plus ``suite`` (family), ``seen`` (:attr:`SuiteEntry.seen_in_pretraining`) and
        ``photo`` (the test photo the question is about: item i uses photo ``i % len(photos)``).

    Raises:
        ValueError: unknown family or mode, negative ``n_items``.
    """
    entry = _entry(name)
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}.")
    thinking_mode = get_mode(mode_name(mode, think))
    photos = load_photos(source, "test")
    items = make_suite_items(photos, n_items, seed=SEED_OFFSET + seed, tasks=entry.tasks, size=image_size)
    rows = []
    for i, it in enumerate(items):
        rows.append(it.row(thinking_mode.name, image_id=f"{source}:test:{name}:{seed}:{i}", suite=name,
                           seen=entry.seen_in_pretraining, photo=photos[i % len(photos)].image_id))
    return rows


def pretrained_tasks(model) -> tuple[str, ...] | None:
    """The pretraining tasks recorded in a nano checkpoint's ``nano.json`` (``model`` loaded from
    that folder), or None when the model is not a nano build."""
    folder = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not folder:
        return None
    meta_path = Path(str(folder)) / "nano.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    tasks = (meta.get("pretraining") or {}).get("tasks") or meta.get("config", {}).get("pretrain_tasks")
    return tuple(tasks) if tasks else None


def evaluate_suite(
    model,
    processor,
    names: Sequence[str] | None = None,
    *,
    n_items: int = 64,
    seed: int = 0,
    think: bool | str = False,
    source: str = "skimage",
    image_size: int | None = None,
    seen_tasks: Sequence[str] | None = None,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    progress: bool = True,
    backend: str = "hf",
    return_items: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy on the generalization suite (nano analogue of Jigsaw-R1 Tables 2 and 3).

    Args:
        model, processor: as for ``jrl_core.evaluate.generate``.
        names: families (keys of :data:`SUITE`); default all.
        n_items: questions per family (the same set for every model at a given seed).
        seed, source: see :func:`suite_rows`; image_size: view side (None: the processor's,
            ``jrl_core.nano.view_size``).
        think: False/True (Jigsaw-R1 non-thinking/thinking) or a mode name.
        seen_tasks: the model's pretraining tasks, deciding the ``seen`` column; default the tasks
            recorded in the model's ``nano.json`` (:func:`pretrained_tasks`), else
            ``perception.DEFAULT_TASKS``.
        batch_size, backend: passed to ``evaluate``.
        max_new_tokens: default without thinking the letter answer's budget
            (``jrl_core.answers.max_new_tokens``, 4 tokens), with thinking 256.
        return_items: also return the per-question table (for paired intervals, ``stats.paired_contrast``).

    Returns:
        One row per family, then ``suite="SEEN"`` and ``suite="UNSEEN"`` rows (unweighted means
        over the families of each group present; interval columns NaN). Columns: ``suite``,
        ``tasks`` (comma-joined), ``description``, ``seen`` (bool), ``mode``, ``n``, ``accuracy``
        (in [0, 1]), ``ci_low``, ``ci_high`` (Wilson 95%), ``random`` (1/n_choices, mean),
        ``valid`` (format share), ``share_A``.
        With ``return_items``: ``(that table, items)``, ``items`` one row per question in a fixed order —
        ``suite``, ``seen``, ``photo``, ``image_id`` (``"<photo>#<running index>"``, so that
        ``stats.photo_of`` clusters the bootstrap by test photo), ``row_id`` (the row's own id), ``solution``,
        ``completion``, ``correct`` (0/1).

    Raises:
        ValueError: unknown family or mode.
    """
    names = list(SUITE) if names is None else list(names)
    for name in names:
        _entry(name)
    seen_set = set(seen_tasks) if seen_tasks is not None else set(pretrained_tasks(model) or perception.DEFAULT_TASKS)
    mode = think if isinstance(think, str) else mode_name(None, think)
    thinking_mode = get_mode(mode)
    cap = max_new_tokens if max_new_tokens is not None else (
        256 if thinking_mode.think else answers.max_new_tokens("letter"))  # suite rows answer a letter
    if image_size is None:
        from jrl_core.nano import view_size

        image_size = view_size(processor)
    records, item_tables = [], []
    for name in names:
        entry = SUITE[name]
        rows = suite_rows(name, n_items, seed, mode=mode, source=source, image_size=image_size)
        res = evaluate(model, processor, rows, batch_size=batch_size, max_new_tokens=cap, progress=progress,
                       desc=f"suite {name}", backend=backend)
        if return_items:
            seen = all(t in seen_set for t in entry.tasks)
            item_tables.append(pd.DataFrame({
                "suite": name, "seen": seen, "photo": [r["photo"] for r in rows],
                "row_id": [r["image_id"] for r in rows], "solution": [r["solution"] for r in rows],
                "completion": res.table["completion"].tolist() if "completion" in res.table else None,
                "correct": pd.to_numeric(res.table["correct"]).astype(float).tolist()}))
        records.append({
            "suite": name, "tasks": ",".join(entry.tasks), "description": entry.description,
            "seen": all(t in seen_set for t in entry.tasks), "mode": mode, "n": res.n,
            "accuracy": res.accuracy, "ci_low": res.ci95[0], "ci_high": res.ci95[1], "random": res.random,
            "valid": res.valid, "share_A": res.share_a,
        })
    for label, flag in (("SEEN", True), ("UNSEEN", False)):
        group = [r for r in records if r["seen"] is flag and r["suite"] not in ("SEEN", "UNSEEN")]
        if group:
            records.append({
                "suite": label, "tasks": ",".join(t for r in group for t in r["tasks"].split(",")),
                "description": f"mean over the {len(group)} {label.lower()} families", "seen": flag, "mode": mode,
                "n": sum(r["n"] for r in group), "accuracy": sum(r["accuracy"] for r in group) / len(group),
                "ci_low": float("nan"), "ci_high": float("nan"),
                "random": sum(r["random"] for r in group) / len(group),
                "valid": sum(r["valid"] for r in group) / len(group),
                "share_A": sum(r["share_A"] for r in group) / len(group),
            })
    table = pd.DataFrame.from_records(records)
    if not return_items:
        return table
    items = pd.concat(item_tables, ignore_index=True) if item_tables else pd.DataFrame(
        columns=["suite", "seen", "photo", "row_id", "solution", "completion", "correct"])
    items.insert(3, "image_id", [f"{p}#{i}" for i, p in enumerate(items["photo"])])
    return table, items


def group_mean(table: pd.DataFrame, group: str = "UNSEEN") -> float | None:
    """The ``"SEEN"`` or ``"UNSEEN"`` mean accuracy (in [0, 1]) of an :func:`evaluate_suite` table (of
    several seeds' tables stacked, ``experiment.pooled_extra``: the mean over seeds), or None when the table
    has no family of that group."""
    hit = table.loc[table["suite"] == group, "accuracy"]
    return float(hit.mean()) if len(hit) else None
