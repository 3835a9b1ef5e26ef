"""One call over a frame of completions: every analysis, one row per group (Jigsaw-R1 Figs. 2-5;
Think-or-Not-Think Fig. 2), and the scalar metrics a run record keeps."""

from __future__ import annotations

import pandas as pd

from jrl_core.analysis.agreement import consistency_table, consistency_values
from jrl_core.analysis.frames import By, grouped_mean
from jrl_core.analysis.judges import Judge, judge_table
from jrl_core.analysis.keywords import KeywordSpec, keyword_table
from jrl_core.analysis.lengths import TokenCounter, length_stats

__all__ = ["analyse", "summary_metrics"]


def analyse(df: pd.DataFrame, by: By = "step", keywords: KeywordSpec = None,
            judge: Judge | None = None, *, tokenizer: TokenCounter | None = None,
            consistency: bool = True) -> pd.DataFrame:
    """Everything above, one row per group (Jigsaw-R1 Figs. 2-5; Think-or-Not-Think Fig. 2).

    Args:
        df: from ``load_completion_log`` or ``load_eval_outputs`` (any frame with
            ``completion`` and the ``by`` columns).
        by: grouping column(s): ``"step"`` (training), ``"size"`` (puzzle size ``"2x1"``), ``"source"``
            (eval file), a list, or None for one row.
        keywords: keyword sets (:func:`keyword_sets`; default App. H.1's two lists).
        judge: a :class:`Judge` to add the four behaviours (off by default: it calls a model per
            completion).
        tokenizer: to count tokens when there is no ``length_tokens`` column.
        consistency: add the consistency columns (needs ``answer_type`` or ``question_type``; skipped
            silently when neither exists).

    Returns:
        Index: group values. Columns: ``n``; ``accuracy`` (mean ``reward_accuracy``, else mean
        ``score``; omitted when neither exists) and ``format`` (mean ``reward_format`` / ``format``);
        ``kw_<name>`` per keyword set (share in [0, 1]); the :func:`consistency_summary` columns; the
        :func:`length_stats` columns; with a judge, ``judge_<behaviour>`` shares in [0, 1].

    Raises:
        ValueError: missing ``completion`` or ``by`` column; errors of the parts.
    """
    df = df.reset_index(drop=True)
    values = pd.DataFrame(index=df.index)
    for out, candidates in (("accuracy", ("reward_accuracy", "score")), ("format", ("reward_format", "format"))):
        column = next((c for c in candidates if c in df.columns), None)
        if column is not None:
            values[out] = pd.to_numeric(df[column], errors="coerce")
    values = values.join(keyword_table(df, keywords))
    if consistency and ("answer_type" in df.columns or "question_type" in df.columns):
        values = values.join(consistency_values(consistency_table(df)))
    if judge is not None:
        table = judge_table(df, judge)
        values = values.join(table.gt(0).astype(float).where(table.notna()).add_prefix("judge_"))
    result = grouped_mean(values, df, by)
    lengths = length_stats(df, by, tokenizer).drop(columns="n")
    return result.join(lengths)


def summary_metrics(by_step: pd.DataFrame, by_size: pd.DataFrame | None = None) -> dict:
    """Scalar metrics of an :func:`analyse` result for a run record: accuracy, consistency and mean
    token length at the first and last step, and each keyword frequency per training size
    (``kw_<set>_by_size_<mxn>``). Values in [0, 1] except lengths (tokens); NaN where not measured."""
    first, last = by_step.iloc[0], by_step.iloc[-1]
    out = {}
    for col, name in (("accuracy", "accuracy"), ("consistent_share", "consistency"), ("tokens_mean", "tokens")):
        out[f"{name}_first_step"] = float(first.get(col, float("nan")))
        out[f"{name}_last_step"] = float(last.get(col, float("nan")))
    if by_size is not None:
        for size, row in by_size.iterrows():
            out.update({f"{c}_by_size_{size}": float(row[c]) for c in by_size if c.startswith("kw_")})
    return out
