"""Completion length in characters and tokens (Jigsaw-R1 Fig. 2 Right, Fig. 4, App. J.2;
Think-or-Not-Think Fig. 6): per completion, and mean/median/p90 per group."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from jrl_core.analysis.frames import By, completion_texts, group_keys

__all__ = ["TokenCounter", "length_stats", "length_table"]

TokenCounter = Callable[[str], Any]
"""``tokenizer(text)`` returning an int, a token list, or a mapping/encoding with ``input_ids`` (a Hugging
Face tokenizer works)."""


def _token_count(tokenizer: TokenCounter, text: str) -> int:
    result = tokenizer(text)
    if isinstance(result, int):
        return result
    if isinstance(result, Mapping) or hasattr(result, "input_ids"):
        result = result["input_ids"]
    return len(result)


def length_table(df: pd.DataFrame, tokenizer: TokenCounter | None = None) -> pd.DataFrame:
    """Per-completion length (Jigsaw-R1 Fig. 2 Right; Think-or-Not-Think Fig. 6).

    Args:
        df: a frame with ``completion`` and optionally ``length_chars`` / ``length_tokens`` (as the
            trainer logs them; used when present).
        tokenizer: used only when ``length_tokens`` is absent: ``tokenizer(text)`` returning an int, a
            token list, or a mapping/encoding with ``input_ids`` (a Hugging Face tokenizer works).

    Returns:
        Index of ``df``; ``length_chars`` (int ≥ 0) and, when known, ``length_tokens``.

    Raises:
        ValueError: no ``completion`` column (and no ``length_chars``).
    """
    out = pd.DataFrame(index=df.index)
    texts = None
    if "length_chars" in df.columns:
        out["length_chars"] = pd.to_numeric(df["length_chars"], errors="coerce")
    else:
        texts = completion_texts(df)
        out["length_chars"] = texts.str.len()
    if "length_tokens" in df.columns:
        out["length_tokens"] = pd.to_numeric(df["length_tokens"], errors="coerce")
    elif tokenizer is not None:
        texts = completion_texts(df) if texts is None else texts
        out["length_tokens"] = texts.map(lambda t: _token_count(tokenizer, t))
    return out


def length_stats(df: pd.DataFrame, by: By = "step",
                 tokenizer: TokenCounter | None = None) -> pd.DataFrame:
    """Completion length per group: mean, median and 90th percentile (linear interpolation) of the
    characters and, when known, tokens (Jigsaw-R1 Fig. 2 Right, Fig. 4; App. J.2).

    Returns:
        Index: group values; columns ``n``, ``chars_mean``, ``chars_median``, ``chars_p90`` and, with
        tokens, ``tokens_mean``, ``tokens_median``, ``tokens_p90`` (floats ≥ 0).

    Raises:
        ValueError: as :func:`length_table`; a missing ``by`` column.
    """
    lengths = length_table(df, tokenizer).astype(float)
    grouped = lengths.groupby(group_keys(df, by, lengths.index), sort=True, dropna=False)
    out = pd.DataFrame({"n": grouped.size().astype(int)})
    for column, prefix in (("length_chars", "chars"), ("length_tokens", "tokens")):
        if column in lengths.columns:
            out[f"{prefix}_mean"] = grouped[column].mean()
            out[f"{prefix}_median"] = grouped[column].median()
            out[f"{prefix}_p90"] = grouped[column].quantile(0.9)
    return out
