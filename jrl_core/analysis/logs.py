"""Loaders of a run's outputs for the analysis: the trainer's completion log and the evaluation tables.

The raw records come from their owner, ``jrl_core.runs`` (file name :data:`jrl_core.runs.COMPLETION_LOG`,
reader :func:`jrl_core.runs.iter_completion_records`); this module shapes them into frames: rewards
flattened to ``reward_<name>`` columns, a ``size`` column (``"mxn"``), a ``source`` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from jrl_core import runs
from jrl_core.analysis.frames import missing
from jrl_core.puzzles import ANSWER_TYPE
from jrl_core.rewards import completion_text
from jrl_core.rows import LOGGED_COLUMNS

__all__ = ["load_completion_log", "load_eval_outputs"]

#: Columns every completion-log frame has (NaN where a record lacks them), in this order.
_LOG_COLUMNS = ("step", "completion", "advantage", "length_tokens", "length_chars", *LOGGED_COLUMNS)


def _size(df: pd.DataFrame) -> pd.Series:
    def one(m: Any, n: Any) -> Any:
        if missing(m) or missing(n) or m == "" or n == "":
            return None
        return f"{int(m)}x{int(n)}"

    return pd.Series([one(m, n) for m, n in zip(df["m"], df["n"], strict=True)], index=df.index, dtype=object)


def _files(run_dir: str | Path, pattern: str, what: str) -> tuple[Path, list[Path]]:
    root = Path(run_dir)
    if root.is_file():
        return root.parent, [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: {root} does not exist; pass a run directory (or one of its files).")
    files = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not files:
        raise FileNotFoundError(f"{what}: no {pattern} under {root}; is this the right run directory?")
    return root, files


def load_completion_log(run_dir: str | Path) -> pd.DataFrame:
    """Every rollout logged by the trainer under ``run_dir`` (``<run_dir>/**/completions.jsonl``,
    :data:`jrl_core.runs.COMPLETION_LOG`; a path to one such file also works).

    Each record (read by :func:`jrl_core.runs.iter_completion_records`) is one JSON object: ``step``
    (int), ``completion`` (str; TRL's conversational form is turned into text), ``rewards`` ({name:
    float}), ``advantage``, ``length_tokens``, ``length_chars`` and the row's
    ``jrl_core.rows.LOGGED_COLUMNS`` (``prompt_id``, ``solution``, ``answer_type``, ``m``, ``n``,
    ``question_type``, ``mode``). Only ``completion`` is required; absent keys give NaN; keys of older
    logs (``think``) are kept. Blank lines and a torn last line (a run killed mid-write) are skipped.

    Returns:
        One row per rollout, files in sorted path order: the logged keys, ``rewards`` flattened to
        ``reward_<name>`` columns, ``size`` (``"mxn"``, when m and n are known) and ``source`` (the
        log's folder relative to ``run_dir``, ``"."`` at the top). Files with no records give an empty
        frame with the schema's columns.

    Raises:
        FileNotFoundError: ``run_dir`` missing, or no completions.jsonl under it.
        ValueError: a malformed line before the last (not JSON, not an object), a record without
            ``completion``, ``rewards`` not an object; the message names the file and the line number.
    """
    root, files = _files(run_dir, runs.COMPLETION_LOG, "load_completion_log")
    records: list[dict] = []
    for path in files:
        source = path.parent.relative_to(root).as_posix() if path.parent != root else "."
        for lineno, record in runs.iter_completion_records(path):
            where = f"{path}, line {lineno}"
            if "completion" not in record:
                raise ValueError(f"{where}: no 'completion' key (keys: {', '.join(record)}).")
            scores = record.pop("rewards", None) or {}
            if not isinstance(scores, dict):
                raise ValueError(f"{where}: 'rewards' must be an object {{name: float}}, got {scores!r:.80}.")
            record["completion"] = completion_text(record["completion"])
            for name, value in scores.items():
                record[f"reward_{name}"] = value
            record["source"] = source
            records.append(record)
    df = pd.DataFrame.from_records(records)
    for column in (*_LOG_COLUMNS, "source"):
        if column not in df.columns:
            df[column] = pd.Series(dtype=object)
    df["size"] = _size(df)
    first = [c for c in (*_LOG_COLUMNS, "size", "source") if c in df.columns]
    reward_cols = sorted(c for c in df.columns if c.startswith("reward_"))
    rest = [c for c in df.columns if c not in first and c not in reward_cols]
    return df[first + reward_cols + rest]


#: Text columns of an evaluation CSV, read as strings (a letter "A", a grid "2 1", "" kept as is).
_EVAL_TEXT = ("image_id", "question_type", "solution", "completion", "letter")


def load_eval_outputs(run_dir: str | Path, pattern: str = "eval_*.csv") -> pd.DataFrame:
    """Every evaluation table under ``run_dir`` (``jrl_core.evaluate.evaluate``'s ``table`` saved as
    ``eval_*.csv``; columns image_id, m, n, question_type, solution, completion, score, correct,
    format, letter). Searched recursively; a path to one CSV also works.

    Returns:
        The rows of all files (sorted path order) with added ``source`` (the file's path relative to
        ``run_dir`` without ``.csv``: its stem for top-level files, e.g. ``"eval_after"``), ``size``
        (``"mxn"``) and ``answer_type`` (from ``question_type`` via ``puzzles.ANSWER_TYPE`` when
        absent; None for an unknown type). Text columns stay strings ("" not NaN).

    Raises:
        FileNotFoundError: ``run_dir`` missing or no matching file.
        ValueError: an empty file or one without ``completion``, ``m`` or ``n``; the message names it.
    """
    root, files = _files(run_dir, pattern, "load_eval_outputs")
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path, keep_default_na=False, dtype=dict.fromkeys(_EVAL_TEXT, str))
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path} is empty; expected a CSV written from evaluate(...).table.") from None
        missing = [c for c in ("completion", "m", "n") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks columns {missing} (has {', '.join(frame.columns)}); expected evaluate(...).table.")
        frame.insert(0, "source", path.relative_to(root).with_suffix("").as_posix())
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    for column in ("m", "n"):
        df[column] = pd.to_numeric(df[column], errors="coerce")
    for column in ("score", "correct", "format"):
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce")
    df["size"] = _size(df)
    if "answer_type" not in df.columns and "question_type" in df.columns:
        df["answer_type"] = df["question_type"].map(ANSWER_TYPE)
    return df
