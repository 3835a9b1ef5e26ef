"""Shared plumbing of the analysis modules: completion texts from any input, group keys, grouped means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from jrl_core.rewards import completion_text

__all__ = ["completion_texts", "group_keys", "grouped_mean", "missing"]

By = str | Sequence[str] | None
"""Grouping column name(s), or None for one group (index ``"all"``)."""


def missing(value: Any) -> bool:
    """Whether a frame cell holds no value: None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def completion_texts(completions: Any) -> pd.Series:
    """Completion texts as a str Series.

    Args:
        completions: a DataFrame (its ``completion`` column, index kept), a Series, or a list of
            completions; TRL's conversational form is read with ``rewards.completion_text``; None/NaN
            become ``""``.

    Raises:
        ValueError: a frame without a ``completion`` column, or a single string instead of a list.
    """
    if isinstance(completions, pd.DataFrame):
        if "completion" not in completions.columns:
            raise ValueError(
                f"the frame has no 'completion' column (columns: {', '.join(map(str, completions.columns))}); "
                "load it with load_completion_log or load_eval_outputs."
            )
        series = completions["completion"]
    elif isinstance(completions, pd.Series):
        series = completions
    elif isinstance(completions, str):
        raise ValueError("pass a list of completions, not one string (wrap it: [text]).")
    else:
        series = pd.Series(list(completions), dtype=object)
    return series.map(lambda c: "" if missing(c) else completion_text(c))


def group_keys(df: pd.DataFrame, by: By, index: pd.Index) -> list[pd.Series]:
    """Group keys as Series on ``index`` (rows of ``df`` in order; robust to a duplicated index).

    Raises:
        ValueError: a ``by`` column that ``df`` lacks (the message lists the columns it has).
    """
    if by is None:
        return [pd.Series("all", index=index, name="group")]
    cols = [by] if isinstance(by, str) else list(by)
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(
            f"cannot group by {absent}: no such column (columns: {', '.join(map(str, df.columns))}). Training logs "
            "have 'step' and 'size'; eval outputs have 'source' and 'size'; by=None gives one row."
        )
    return [pd.Series(df[c].to_numpy(), index=index, name=c) for c in cols]


def grouped_mean(values: pd.DataFrame, df: pd.DataFrame, by: By) -> pd.DataFrame:
    """Mean of each column of ``values`` per group of ``df`` (same rows), NaN skipped.

    Returns:
        Index: the group values (sorted); columns ``n`` (rows per group, int) then those of ``values``
        (floats).

    Raises:
        ValueError: as :func:`group_keys`.
    """
    keys = group_keys(df, by, values.index)
    grouped = values.astype(float).groupby(keys, sort=True, dropna=False)
    out = grouped.mean()
    out.insert(0, "n", grouped.size().astype(int))
    return out
