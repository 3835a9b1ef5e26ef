"""Reasoning analysis of completions: keywords, judged behaviours, think/answer consistency, lengths.

What Jigsaw-R1 §5 (RQ3/RQ4, App. H, App. J; Figs. 2-5) and Think-or-Not-Think §2.4 (Fig. 2) measure
on model outputs, computed from any run directory (protocol §8). One module per concept:

* :mod:`~jrl_core.analysis.keywords` — keyword detectors (Jigsaw-R1 App. H.1; Fig. 3 Middle/Right,
  Fig. 4): :class:`KeywordSet`, :data:`BACKTRACKING`, :data:`BACKWARD_CHAINING`, :data:`VISUALTHINKER`;
  the matching rules are in that module's docstring.
* :mod:`~jrl_core.analysis.judges` — the four behaviours of Gandhi et al. (2025) through a pluggable
  :class:`Judge` (Jigsaw-R1 App. H.2, Fig. 5): :class:`OpenAIJudge`, :class:`HFJudge`. Off by default.
* :mod:`~jrl_core.analysis.agreement` — think/answer consistency: the answer stated in the reasoning
  against the ``<answer>`` (Jigsaw-R1 Finding 3.3, Fig. 3 Left; Think-or-Not-Think Fig. 2). (Not named
  ``consistency``: that name is its main function, :func:`consistency`.)
* :mod:`~jrl_core.analysis.lengths` — completion length in characters and tokens (Jigsaw-R1 Fig. 2
  Right).
* :mod:`~jrl_core.analysis.logs` — inputs: :func:`load_completion_log` (the trainer's
  ``<run_dir>/**/completions.jsonl``, read through ``jrl_core.runs``) and :func:`load_eval_outputs`
  (``eval_*.csv`` of ``jrl_core.evaluate``).
* :mod:`~jrl_core.analysis.summary` — :func:`analyse` (one row per group: training step, puzzle size
  ``"2x1"``, source file…) and :func:`summary_metrics`.

No plotting here. Every public name of the submodules is importable from ``jrl_core.analysis``.
"""

from jrl_core.analysis.agreement import (
    CONSISTENCY,
    answer_tag_answer,
    consistency,
    consistency_summary,
    consistency_table,
    reasoning_answer,
    reasoning_text,
)
from jrl_core.analysis.judges import (
    BEHAVIOURS,
    HFJudge,
    Judge,
    OpenAIJudge,
    fill_judge_prompt,
    judge_frequencies,
    judge_table,
    load_judge_prompt,
    normalise_verdict,
    parse_judge_reply,
)
from jrl_core.analysis.keywords import (
    BACKTRACKING,
    BACKWARD_CHAINING,
    DEFAULT_KEYWORDS,
    JIGSAW_R1_KEYWORDS,
    KEYWORD_SETS,
    VISUALTHINKER,
    KeywordSet,
    group_keyword_rates,
    keyword_frequencies,
    keyword_sets,
    keyword_table,
    keyword_trend,
)
from jrl_core.analysis.lengths import length_stats, length_table
from jrl_core.analysis.logs import load_completion_log, load_eval_outputs
from jrl_core.analysis.summary import analyse, summary_metrics

__all__ = [
    "BACKTRACKING",
    "BACKWARD_CHAINING",
    "BEHAVIOURS",
    "CONSISTENCY",
    "DEFAULT_KEYWORDS",
    "HFJudge",
    "JIGSAW_R1_KEYWORDS",
    "Judge",
    "KEYWORD_SETS",
    "KeywordSet",
    "OpenAIJudge",
    "VISUALTHINKER",
    "analyse",
    "answer_tag_answer",
    "consistency",
    "consistency_summary",
    "consistency_table",
    "fill_judge_prompt",
    "group_keyword_rates",
    "judge_frequencies",
    "judge_table",
    "keyword_frequencies",
    "keyword_sets",
    "keyword_table",
    "keyword_trend",
    "length_stats",
    "length_table",
    "load_completion_log",
    "load_eval_outputs",
    "load_judge_prompt",
    "normalise_verdict",
    "parse_judge_reply",
    "reasoning_answer",
    "reasoning_text",
    "summary_metrics",
]
