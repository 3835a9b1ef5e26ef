"""Downstream benchmarks of Jigsaw-R1 (Table 2: CV-Bench, MMVP, SAT, Super-CLEVR; Table 8: ScreenSpot).

Each benchmark is loaded through ``datasets`` (a hub id, a folder written by ``save_to_disk``, a
folder of data files, or one parquet/json/jsonl/csv file), checked against its schema
(:data:`BENCHMARKS`) and turned into rows in the puzzle-row format of ``jrl_core.puzzles``, so that
``jrl_core.evaluate.evaluate`` scores them with the same rewards:

* the prompt is the benchmark's question text followed by the thinking mode's suffix
  (``jrl_core.modes``; Jigsaw-R1: ``"\\n\\n" + instruction + format line``, as the reference's
  ``generate_instruction`` does for these datasets), in chat form with one ``{"type": "image"}``
  slot per image;
* the answer type is ``"letter"`` for multiple choice (CV-Bench, MMVP, SAT), ``"digit"`` for
  Super-CLEVR counting and ``"point"`` for ScreenSpot (the centre of the predicted box must lie
  in the ground-truth box; paper_spec §1.4);
* the solution is normalised as the reference does (``"(A)"`` → ``"A"``; a count → its digits; a
  box → four pixel coordinates ``[x1, y1, x2, y2]``).

Schemas (column names the reference loader reads; ``zifuwanggg/Jigsaw-R1`` ``utils/utils.py``
``create_input_helper``, whose question/solution keys are confirmed there):

==============  ==========================  ================  ==============  ========
benchmark       default source              question column   answer column   type
==============  ==========================  ================  ==============  ========
cv_bench        nyu-visionx/CV-Bench        prompt            answer          letter
mmvp            jigsaw-r1/mmvp              prompt            answer          letter
sat_static      jigsaw-r1/sat_static        prompt            ground_truth    letter
super_clevr     jigsaw-r1/super_clevr       question          ground_truth    digit
screenspot      jigsaw-r1/screenspot        prompt            solution        point
screenspot_raw  rootsautomation/ScreenSpot  instruction       bbox            point
==============  ==========================  ================  ==============  ========

Every schema also needs an ``image`` column (a PIL image, ``{"bytes"|"path": …}``, raw bytes, a
path, base64, or a list of these for multi-image questions). Optional columns are kept when present
(``task`` for per-task breakdowns; CV-Bench also has ``idx``, ``type``, ``question``, ``choices``,
``filename``, ``source``). ``screenspot_raw`` is the original ScreenSpot layout (columns confirmed
by its dataset card: ``file_name, bbox, instruction, data_type, data_source, image``); its bbox is
read as normalised ``x1, y1, x2, y2`` when every value is ≤ 1 (as lmms-eval reads it), else as
pixels, and its prompt wording (:data:`SCREENSPOT_RAW_TEMPLATE`) is the workbook's, not the
paper's. No hub is reachable offline: download a benchmark elsewhere, ``save_to_disk`` it, and pass
the folder.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from jrl_core import answers
from jrl_core.evaluate import evaluate
from jrl_core.images import to_rgb
from jrl_core.modes import get_mode, mode_name
from jrl_core.rows import make_row

__all__ = [
    "BENCHMARKS",
    "TABLE2",
    "BenchmarkSchema",
    "BenchmarkUnavailableError",
    "SchemaError",
    "evaluate_downstream",
    "load_benchmark",
    "open_dataset",
    "rows_from_dataset",
]

#: Prompt of the ``screenspot_raw`` layout (the workbook's wording; the paper's ScreenSpot copy
#: carries its own ``prompt`` column).
SCREENSPOT_RAW_TEMPLATE = "Locate the element of this screenshot that the instruction refers to: {instruction}"


class SchemaError(ValueError):
    """A benchmark dataset whose columns or values do not match its schema (the message names the
    benchmark, what is wrong and the fix)."""


class BenchmarkUnavailableError(RuntimeError):
    """A benchmark could not be opened (no network for a hub id, a missing split)."""


@dataclass(frozen=True)
class BenchmarkSchema:
    """How one benchmark is read.

    Attributes:
        name: registry key (:data:`BENCHMARKS`).
        title: display name (a column of Jigsaw-R1 Table 2 or 8).
        hub_id: default ``datasets`` id (the reference's).
        question: column with the question text (options included, for multiple choice).
        solution: column with the answer.
        answer_type: ``"letter"``, ``"digit"`` or ``"point"`` (``jrl_core.answers``).
        solution_help: what a valid answer looks like (for error messages).
        optional: columns kept in the rows when present.
        template: format string applied to the question column (``{<question column>}``), or ""
            for the text as is.
        normalised_boxes: point answers may be normalised to [0, 1] (scaled by the image size).
        split: the reference's split.
        source: where the schema comes from.
    """

    name: str
    title: str
    hub_id: str
    question: str
    solution: str
    answer_type: str
    solution_help: str
    optional: tuple[str, ...] = ("task",)
    template: str = ""
    normalised_boxes: bool = False
    split: str = "test"
    source: str = "Jigsaw-R1 code utils/utils.py create_input_helper"
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def required(self) -> tuple[str, ...]:
        """Columns the dataset must have: ``image``, the question and the answer."""
        return ("image", self.question, self.solution)


_LETTER_HELP = "a choice letter such as '(A)' or 'A'"
_BOX_HELP = "a box x1,y1,x2,y2 in pixels (a list of four numbers or 'x1,y1,x2,y2')"

#: Every benchmark, by name.
BENCHMARKS: dict[str, BenchmarkSchema] = {
    "cv_bench": BenchmarkSchema(
        "cv_bench", "CV-Bench", "nyu-visionx/CV-Bench", "prompt", "answer", "letter", _LETTER_HELP,
        optional=("idx", "type", "task", "question", "choices", "filename", "source"),
    ),
    "mmvp": BenchmarkSchema("mmvp", "MMVP", "jigsaw-r1/mmvp", "prompt", "answer", "letter", _LETTER_HELP),
    "sat_static": BenchmarkSchema("sat_static", "SAT", "jigsaw-r1/sat_static", "prompt", "ground_truth",
                                  "letter", _LETTER_HELP),
    "super_clevr": BenchmarkSchema("super_clevr", "Super-CLEVR", "jigsaw-r1/super_clevr", "question",
                                   "ground_truth", "digit", "a non-negative whole number such as 3 or '3'"),
    "screenspot": BenchmarkSchema("screenspot", "ScreenSpot", "jigsaw-r1/screenspot", "prompt", "solution",
                                  "point", _BOX_HELP, optional=("task", "data_type", "data_source")),
    "screenspot_raw": BenchmarkSchema(
        "screenspot_raw", "ScreenSpot", "rootsautomation/ScreenSpot", "instruction", "bbox", "point",
        _BOX_HELP + ", or normalised to [0, 1]", optional=("data_type", "data_source", "file_name"),
        template=SCREENSPOT_RAW_TEMPLATE, normalised_boxes=True,
        source="rootsautomation/ScreenSpot dataset card (columns); bbox reading as in lmms-eval; prompt ours",
    ),
}
#: The four benchmarks of Jigsaw-R1 Table 2, in column order (AVG is their mean).
TABLE2: tuple[str, ...] = ("cv_bench", "mmvp", "sat_static", "super_clevr")

_DATA_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _schema(name: str) -> BenchmarkSchema:
    try:
        return BENCHMARKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.") from None


# ---------------------------------------------------------------- opening a dataset


def open_dataset(path_or_id: str | Path, split: str = "test", *, name: str = "dataset"):
    """Open one split as a ``datasets.Dataset``.

    Args:
        path_or_id: a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``; a
            folder of data files (split from the file names; a folder with one split is used
            whatever its name); one ``.parquet``/``.json``/``.jsonl``/``.csv`` file (its only split);
            or a hub id (needs network).
        split: the split to return.
        name: the benchmark name, for messages.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        BenchmarkUnavailableError: the split does not exist, or a hub id could not be loaded (the
            message says how to use a local copy). ValueError: a file of an unknown type.
    """
    import datasets

    path = Path(path_or_id).expanduser()
    if path.exists():
        if path.is_file():
            builder = _DATA_SUFFIXES.get(path.suffix.lower())
            if builder is None:
                raise ValueError(f"{name}: cannot read {path.name!r}; use a {', '.join(_DATA_SUFFIXES)} file, "
                                 "or a folder written by save_to_disk.")
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        if any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split in loaded:
                return loaded[split]
            if len(loaded) == 1:
                return next(iter(loaded.values()))
            raise BenchmarkUnavailableError(
                f"{name}: {path} has splits {sorted(loaded)}, not {split!r}; pass split= one of them.")
        return loaded
    try:
        return datasets.load_dataset(str(path_or_id), split=split)
    except Exception as err:  # network, auth, missing split: all mean "use a local copy"
        raise BenchmarkUnavailableError(
            f"{name}: could not load {str(path_or_id)!r} (split {split!r}) from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Offline, download it on a connected machine with "
            f"`datasets.load_dataset({str(path_or_id)!r}, split={split!r}).save_to_disk(FOLDER)`, copy FOLDER "
            "here and pass it as path_or_id."
        ) from err


# ---------------------------------------------------------------- values


def _image(value: Any, where: str, base: Path | None) -> Image.Image:
    """One image value as an RGB PIL image (PIL, {"bytes"|"path"}, bytes, path or base64)."""
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return _image(value["bytes"], where, base)
        if value.get("path"):
            return _image(str(value["path"]), where, base)
    if isinstance(value, (bytes, bytearray)):
        return to_rgb(Image.open(io.BytesIO(value)))
    if isinstance(value, str):
        for candidate in (Path(value).expanduser(), (base / value) if base else None):
            if candidate is not None and candidate.is_file():
                return to_rgb(Image.open(candidate))
        try:
            return to_rgb(Image.open(io.BytesIO(base64.b64decode(value, validate=True))))
        except (binascii.Error, ValueError, OSError):
            pass
    raise SchemaError(
        f"{where}: column 'image' holds {type(value).__name__} {str(value)[:60]!r}, not an image; expected a "
        "PIL image (datasets Image feature), {'bytes': ...}, raw bytes, an existing file path or base64."
    )


def _images(value: Any, where: str, base: Path | None) -> Image.Image | list[Image.Image]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise SchemaError(f"{where}: column 'image' is an empty list; every question needs an image.")
        images = [_image(v, where, base) for v in value]
        return images[0] if len(images) == 1 else images
    return _image(value, where, base)


def _letter(value: Any, where: str, schema: BenchmarkSchema, size: tuple[int, int]) -> str:
    text = str(value).strip().replace("(", "")
    if not text or text[0].upper() not in string.ascii_uppercase or (len(text) > 1 and text[1].isalpha()):
        raise SchemaError(f"{where}: {schema.solution}={value!r} is not {schema.solution_help}.")
    return text[0].upper()


def _digit(value: Any, where: str, schema: BenchmarkSchema, size: tuple[int, int]) -> str:
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return str(int(value))
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", text):
        raise SchemaError(f"{where}: {schema.solution}={value!r} is not {schema.solution_help}.")
    return str(int(text))


def _box(value: Any, where: str, schema: BenchmarkSchema, size: tuple[int, int]) -> list[float]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,;\[\]()]+", value) if v]
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        raise SchemaError(f"{where}: {schema.solution}={value!r} is not {schema.solution_help} with x2 >= x1, "
                          "y2 >= y1.")
    if schema.normalised_boxes and max(box) <= 1.0:
        w, h = size
        box = [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
    return box


def _n_choices(row: dict, text: str) -> int:
    """Number of lettered options: ``len(choices)`` when the row has that column, else the run of
    consecutive option markers ``(A)``, ``(B)``, … (either case) found in the question text."""
    choices = row.get("choices")
    if isinstance(choices, (list, tuple)) and len(choices) >= 2:
        return len(choices)
    found = {m.upper() for m in re.findall(r"\(([A-Za-z])\)", text)}
    count = 0
    while count < 26 and string.ascii_uppercase[count] in found:
        count += 1
    return count


#: Benchmark label readers by answer type: ``(value, where, schema, image size) -> solution`` (the
#: reference's normalisation: ``"(A)"`` → ``"A"``, a count → its digits, a box → pixels). The answer
#: types a benchmark may use are these keys.
_SOLUTIONS = {"letter": _letter, "digit": _digit, "point": _box}


def _random_rate(answer_type: str, row: dict, text: str, solution: Any, image: Any) -> float:
    """Random-guess accuracy of one question (``jrl_core.answers.random_rate``): 1/options for a
    multiple-choice answer (options from the ``choices`` column or the question text), the gt box's
    share of the image for a point (a uniformly random click), NaN for open counting."""
    first = image[0] if isinstance(image, list) else image
    n_options = (_n_choices(row, text) or None) if answers.get(answer_type).choice else None
    return answers.random_rate(answer_type, n_options=n_options, solution=solution, image_size=first.size)


# ---------------------------------------------------------------- rows


def _check_columns(schema: BenchmarkSchema, columns: Sequence[str], origin: str) -> None:
    missing = [c for c in schema.required if c not in columns]
    if not missing:
        return
    hint = ""
    if schema.name == "screenspot" and {"instruction", "bbox"} <= set(columns):
        hint = " This looks like the original ScreenSpot layout: use load_benchmark('screenspot_raw', ...)."
    raise SchemaError(
        f"{schema.name} ({schema.title}): the dataset from {origin} lacks column(s) {missing}; it has "
        f"{sorted(columns)}. Expected: 'image', {schema.question!r} (question text) and {schema.solution!r} "
        f"({schema.solution_help}). Fix: rename the columns (ds = ds.rename_column(old, new)) and save again, "
        f"or use the reference copy {schema.hub_id!r}.{hint}"
    )


def rows_from_dataset(schema: BenchmarkSchema | str, dataset, *, think: bool = False, mode: str | None = None,
                      limit: int | None = None, origin: str = "memory", base: Path | None = None) -> list[dict]:
    """Puzzle-format rows for a benchmark dataset (any ``datasets.Dataset``, or a list of dicts).

    Args:
        schema: a :class:`BenchmarkSchema` or its name.
        dataset: the rows of the benchmark.
        think: thinking prompt (Jigsaw-R1 thinking) or not; ignored when ``mode`` is given.
        mode: a ``jrl_core.modes.MODES`` name.
        limit: keep the first ``limit`` questions (the reference's ``dataset_size``).
        origin: where the data came from (for messages). base: folder for relative image paths.

    Returns:
        A list of dicts: ``image`` (RGB PIL image, or a list for multi-image questions), ``prompt``
        (``[{"role": "user", "content": [{"type": "image"}, …, {"type": "text", "text": question +
        mode suffix}]}]``), ``solution`` (letter ``"A"``-``"Z"``, digit string, or ``[x1, y1, x2, y2]``
        pixels), ``answer_type``, ``m`` = ``n`` = None (no grid), ``mode``, ``question_type``
        and ``benchmark`` (the benchmark name), ``task`` (the row's task, else the benchmark name),
        ``image_id``, ``random`` (random-guess accuracy of the question; NaN for counting).

    Raises:
        SchemaError: missing columns, or a value that is not an image / a valid answer (the message
            names the benchmark, the row and the expected format).
    """
    schema = _schema(schema) if isinstance(schema, str) else schema
    if hasattr(dataset, "column_names"):
        columns = list(dataset.column_names)
    else:
        columns = sorted({k for r in dataset for k in r}) if len(dataset) else list(schema.required)
    _check_columns(schema, columns, origin)
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}.")
        dataset = dataset.select(range(min(limit, len(dataset)))) if hasattr(dataset, "select") else dataset[:limit]
    thinking_mode = get_mode(mode_name(mode, think))
    out = []
    for i, row in enumerate(dataset):
        where = f"{schema.name} ({origin}) row {i}"
        answer_type = row.get("answer_type") or schema.answer_type
        if answer_type not in _SOLUTIONS:
            raise SchemaError(f"{where}: answer_type {answer_type!r} is not one of {', '.join(_SOLUTIONS)}.")
        image = _images(row["image"], where, base)
        first = image[0] if isinstance(image, list) else image
        raw = row[schema.question]
        if not isinstance(raw, str) or not raw.strip():
            raise SchemaError(f"{where}: {schema.question}={raw!r} is not a question text.")
        question = schema.template.format(**{schema.question: raw}) if schema.template else raw
        solution: Any = _SOLUTIONS[answer_type](row[schema.solution], where, schema, first.size)
        if answers.get(answer_type).choice:
            k = _n_choices(row, question)
            if k >= 2 and string.ascii_uppercase.index(solution) >= k:
                raise SchemaError(f"{where}: answer {solution!r} is not among the {k} options of the question.")
        record = make_row(
            image=image, text=question + thinking_mode.suffix(answer_type), solution=solution,
            answer_type=answer_type, mode=thinking_mode.name, question_type=schema.name,
            image_id=str(next((row[k] for k in ("image_id", "idx", "filename", "file_name")
                               if row.get(k) is not None), f"{schema.name}:{i}")),
            benchmark=schema.name, task=str(row.get("task") or schema.name),
            random=_random_rate(answer_type, row, question, solution, image))
        for col in schema.optional:
            if col in row and col not in record:
                record[col] = row[col]
        out.append(record)
    return out


def load_benchmark(name: str, path_or_id: str | Path | None = None, split: str | None = None, *,
                   limit: int | None = None, think: bool = False, mode: str | None = None) -> list[dict]:
    """Load a downstream benchmark as puzzle-format rows (Jigsaw-R1 §4.3 / paper_spec §1.4).

    Args:
        name: a key of :data:`BENCHMARKS` (``"cv_bench"``, ``"mmvp"``, ``"sat_static"``,
            ``"super_clevr"``, ``"screenspot"``, ``"screenspot_raw"``).
        path_or_id: a local copy (``save_to_disk`` folder, data-file folder or one file) or a hub
            id; default the reference's hub id (needs network).
        split: default the schema's (``"test"``, as the reference evaluates).
        limit: first ``limit`` questions only.
        think, mode: the thinking mode of the prompts (see :func:`rows_from_dataset`).

    Returns:
        The rows of :func:`rows_from_dataset`, ready for ``jrl_core.evaluate.evaluate``.

    Raises:
        ValueError: unknown benchmark. SchemaError: a malformed dataset. BenchmarkUnavailableError:
        the data cannot be opened.
    """
    schema = _schema(name)
    source = schema.hub_id if path_or_id is None else path_or_id
    split = split or schema.split
    dataset = open_dataset(source, split, name=name)
    path = Path(source).expanduser()
    base = (path if path.is_dir() else path.parent) if path.exists() else None
    return rows_from_dataset(schema, dataset, think=think, mode=mode, limit=limit, origin=str(source), base=base)


def evaluate_downstream(
    model,
    processor,
    benchmarks: Mapping[str, str | Path | None] | Sequence[str] = TABLE2,
    *,
    thinks: Sequence[bool | str] = (False,),
    split: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    max_new_tokens_think: int = 512,
    progress: bool = True,
    backend: str = "hf",
) -> pd.DataFrame:
    """Accuracy on the downstream benchmarks (Jigsaw-R1 Table 2, and Table 8 with ScreenSpot).

    Args:
        model, processor: as for ``jrl_core.evaluate.generate``.
        benchmarks: names (loaded from their default hub ids) or ``{name: local path or hub id}``.
        thinks: thinking modes (bools or mode names); one block of rows per mode.
        split, limit: passed to :func:`load_benchmark`.
        batch_size, backend: passed to ``evaluate``.
        max_new_tokens: non-thinking cap; None = the answer type's (``jrl_core.answers.max_new_tokens``).
        max_new_tokens_think: cap for thinking modes (paper: 512).

    Returns:
        One row per (benchmark, mode), plus a ``benchmark="AVG"`` row per mode with the mean
        accuracy of the :data:`TABLE2` benchmarks evaluated (the paper's AVG column; its interval
        columns are NaN). Columns: ``benchmark``, ``title``, ``think``, ``mode``, ``n``, ``accuracy``
        (in [0, 1]), ``ci_low``, ``ci_high`` (Wilson 95%), ``random`` (mean random-guess accuracy;
        NaN for counting), ``valid`` (format share).

    Raises:
        as :func:`load_benchmark`.
    """
    sources = dict(benchmarks) if isinstance(benchmarks, Mapping) else {b: None for b in benchmarks}
    records = []
    for think in thinks:
        mode = think if isinstance(think, str) else mode_name(None, think)
        thinking_mode = get_mode(mode)
        block = []
        for name, source in sources.items():
            rows = load_benchmark(name, source, split, limit=limit, mode=mode)
            if not rows:
                continue
            cap = max_new_tokens_think if thinking_mode.think else (
                max_new_tokens if max_new_tokens is not None else answers.max_new_tokens(rows[0]["answer_type"]))
            res = evaluate(model, processor, rows, batch_size=batch_size, max_new_tokens=cap, progress=progress,
                           desc=f"{name} {mode}", backend=backend)
            block.append({"benchmark": name, "title": BENCHMARKS[name].title, "think": thinking_mode.think,
                          "mode": mode, "n": res.n, "accuracy": res.accuracy, "ci_low": res.ci95[0],
                          "ci_high": res.ci95[1], "random": res.random, "valid": res.valid})
        in_avg = [r for r in block if r["benchmark"] in TABLE2]
        if in_avg:
            block.append({"benchmark": "AVG", "title": "AVG", "think": thinking_mode.think, "mode": mode,
                          "n": sum(r["n"] for r in in_avg),
                          "accuracy": sum(r["accuracy"] for r in in_avg) / len(in_avg),
                          "ci_low": float("nan"), "ci_high": float("nan"), "random": float("nan"),
                          "valid": sum(r["valid"] for r in in_avg) / len(in_avg)})
        records.extend(block)
    return pd.DataFrame.from_records(records)

