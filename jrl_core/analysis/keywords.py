"""Keyword detectors of reasoning patterns (Jigsaw-R1 App. H.1; Fig. 3 Middle/Right, Fig. 4).

:class:`KeywordSet`, :data:`BACKTRACKING`, :data:`BACKWARD_CHAINING`, and VisualThinker-R1-Zero's "aha"
list :data:`VISUALTHINKER`. Frequency = share of completions with at least one hit.

Keyword matching rules (all :class:`KeywordSet` lists)
------------------------------------------------------
1. Case-insensitive (``"ReCheck"`` matches ``recheck``).
2. A keyword must start a word: the character before it is not a letter or digit (Unicode-aware), so
   ``"unrecheckable"`` does not match ``recheck`` while ``"pre-check"``, ``"(recheck"`` and
   ``"_recheck"`` do.
3. A keyword is a word *prefix*: anything may follow it (``recheck`` matches ``"rechecked"``,
   ``"rechecking"``; the stem ``possibl`` matches ``"possible"``, ``"possibly"``). Hence the paper's
   ``reevaluate`` matches ``"reevaluated"`` but not ``"reevaluating"`` (its stem differs), and
   ``"work backwards"`` matches ``"work backwards"`` / ``"work backwardsly"`` but neither
   ``"worked backwards"``, ``"working backwards"`` nor ``"work backward"`` — the lists are used as
   published; define a :class:`KeywordSet` with stems (``"reevaluat"``, ``"work backward"``) to
   count those.
4. A space inside a keyword matches any run of whitespace (``"work\\nbackwards"`` matches).
5. Hyphens (``KeywordSet.hyphens=True``, the default): one optional hyphen is allowed between any two
   letters of a keyword, so ``"re-check"``, ``"Re-evaluate"``, ``"re-examine"`` count as the
   keyword. The paper's own backtracking example is written "re-evaluating" (Jigsaw-R1 §5), so
   completions do hyphenate; the paper's matching code is not published. Set ``hyphens=False`` for
   the literal spelling only.
6. The misspelling ``"reexmamine"`` of App. H.1 is kept in :data:`BACKTRACKING` beside the correct
   ``"reexamine"``, so the published list is a subset of ours.
7. The whole completion text is searched (think, answer and anything outside tags).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd

from jrl_core.analysis.frames import By, completion_texts, grouped_mean

__all__ = [
    "BACKTRACKING",
    "BACKWARD_CHAINING",
    "DEFAULT_KEYWORDS",
    "JIGSAW_R1_KEYWORDS",
    "KEYWORD_SETS",
    "KeywordSet",
    "KeywordSpec",
    "VISUALTHINKER",
    "group_keyword_rates",
    "keyword_frequencies",
    "keyword_sets",
    "keyword_table",
    "keyword_trend",
]


@lru_cache(maxsize=256)
def _keyword_regex(word: str, hyphens: bool) -> re.Pattern:
    parts = []
    for token in word.lower().split():
        pattern = re.escape(token[0])
        for prev, char in zip(token, token[1:], strict=False):
            if hyphens and prev.isalpha() and char.isalpha():
                pattern += "-?"
            pattern += re.escape(char)
        parts.append(pattern)
    return re.compile(r"(?<![^\W_])" + r"\s+".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class KeywordSet:
    """A named list of keywords whose presence marks a reasoning pattern (Jigsaw-R1 App. H.1).

    Matching follows the module's rules (case-insensitive, word start, word prefix, whitespace runs,
    optional hyphens between letters); see the module docstring.

    Attributes:
        name: short identifier used in column names (``kw_<name>``); letters, digits, underscores.
        words: the keywords (a list is accepted and stored as a tuple); each starts with a letter or
            digit, e.g. ``"recheck"``, ``"work backwards"``, the stem ``"possibl"``.
        hyphens: allow one optional ``-`` between two letters of a keyword (``"re-check"``).
        source: where the list comes from.

    Raises:
        ValueError: empty or malformed name or words.
    """

    name: str
    words: tuple[str, ...]
    hyphens: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ValueError(f"KeywordSet name {self.name!r} must be letters, digits or '_' (it becomes a column name).")
        if isinstance(self.words, str):
            raise ValueError(f"KeywordSet {self.name!r}: words must be a list of keywords, not the string {self.words!r}.")
        words = tuple(self.words)
        if not words:
            raise ValueError(f"KeywordSet {self.name!r} has no words.")
        for word in words:
            if not isinstance(word, str) or not word.strip() or not word.strip()[0].isalnum():
                raise ValueError(f"KeywordSet {self.name!r}: keyword {word!r} must be text starting with a letter or digit.")
        object.__setattr__(self, "words", tuple(w.strip() for w in words))

    def hits(self, text: str) -> dict[str, int]:
        """Number of matches of each keyword in ``text``: ``{word: count >= 0}``, in ``words`` order."""
        return {w: len(_keyword_regex(w, self.hyphens).findall(text)) for w in self.words}

    def matches(self, text: str) -> bool:
        """Whether ``text`` contains at least one keyword of the set."""
        return any(_keyword_regex(w, self.hyphens).search(text) for w in self.words)

    @property
    def column(self) -> str:
        """The column name used for this set in tables: ``kw_<name>``."""
        return f"kw_{self.name}"


#: Backtracking keywords of Jigsaw-R1 App. H.1, with the paper's misspelling "reexmamine" kept.
BACKTRACKING = KeywordSet(
    "backtracking", ("recheck", "reverify", "reevaluate", "reexamine", "reexmamine"),
    source="Jigsaw-R1 App. H.1 (backtracking; 'reexmamine' as spelled in the paper)",
)
#: Backward-chaining keyword of Jigsaw-R1 App. H.1.
BACKWARD_CHAINING = KeywordSet("backward_chaining", ("work backwards",), source="Jigsaw-R1 App. H.1 (backward chaining)")
#: Both App. H.1 lists as one set (Fig. 3 Middle/Right plot "keyword frequency").
JIGSAW_R1_KEYWORDS = KeywordSet(
    "jigsaw_r1", BACKTRACKING.words + BACKWARD_CHAINING.words, source="Jigsaw-R1 App. H.1 (both lists)",
)
#: VisualThinker-R1-Zero's "aha moment" words; broad ("wait", "check"), hence false positives from image
#: descriptions, which is why Jigsaw-R1 hand-picked narrower ones.
VISUALTHINKER = KeywordSet(
    "visualthinker", ("aha", "check", "possibl", "verify", "wait", "yet"),
    source="VisualThinker-R1-Zero (Zhou et al., 2025) keyword list",
)
#: Every named set, by name.
KEYWORD_SETS: dict[str, KeywordSet] = {s.name: s for s in (BACKTRACKING, BACKWARD_CHAINING, JIGSAW_R1_KEYWORDS, VISUALTHINKER)}
#: The sets :func:`analyse` reports by default (Jigsaw-R1 App. H.1).
DEFAULT_KEYWORDS: tuple[KeywordSet, ...] = (BACKTRACKING, BACKWARD_CHAINING)

KeywordSpec = KeywordSet | str | Mapping[str, Sequence[str]] | Sequence[Any] | None


def keyword_sets(keywords: KeywordSpec = None) -> tuple[KeywordSet, ...]:
    """Normalise a keyword specification to a tuple of :class:`KeywordSet`.

    Args:
        keywords: None (→ :data:`DEFAULT_KEYWORDS`), a :class:`KeywordSet`, a name in
            :data:`KEYWORD_SETS`, a mapping ``{name: [words]}``, or a list of any of these.

    Returns:
        The sets, in order (possibly empty for an empty list).

    Raises:
        ValueError: unknown name (the message lists the known ones), malformed set, duplicate names.
    """
    if keywords is None:
        return DEFAULT_KEYWORDS
    if isinstance(keywords, (KeywordSet, str)):
        items: list[Any] = [keywords]
    elif isinstance(keywords, Mapping):
        items = [KeywordSet(name, tuple(words)) for name, words in keywords.items()]
    else:
        items = list(keywords)
    out: list[KeywordSet] = []
    for item in items:
        if isinstance(item, KeywordSet):
            out.append(item)
        elif isinstance(item, str):
            if item not in KEYWORD_SETS:
                raise ValueError(f"unknown keyword set {item!r}; known: {', '.join(KEYWORD_SETS)}, or pass a KeywordSet.")
            out.append(KEYWORD_SETS[item])
        elif isinstance(item, Mapping):
            out.extend(keyword_sets(item))
        else:
            raise ValueError(f"keyword set {item!r} is not a KeywordSet, a set name or a {{name: [words]}} mapping.")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"keyword set names must be distinct (they become columns); got {names}.")
    return tuple(out)




def keyword_table(completions: Any, keywords: KeywordSpec = None, *, counts: bool = False) -> pd.DataFrame:
    """Per-completion keyword presence (Jigsaw-R1 App. H.1).

    Args:
        completions: a DataFrame with a ``completion`` column, a Series or a list of texts (TRL's
            conversational form is read with ``rewards.completion_text``; None/NaN count as "").
        keywords: see :func:`keyword_sets` (default: backtracking and backward chaining).
        counts: also give ``kw_<name>_count``, the total number of keyword matches (int ≥ 0).

    Returns:
        One row per completion (index kept from a frame/Series), one bool column ``kw_<name>`` per set.

    Raises:
        ValueError: no ``completion`` column, bad keyword specification.
    """
    texts = completion_texts(completions)
    out = pd.DataFrame(index=texts.index)
    for kw in keyword_sets(keywords):
        out[kw.column] = texts.map(kw.matches).astype(bool)
        if counts:
            out[f"{kw.column}_count"] = texts.map(lambda t, kw=kw: sum(kw.hits(t).values())).astype(int)
    return out



def keyword_frequencies(completions: pd.DataFrame, keywords: KeywordSpec = None,
                        by: By = "step") -> pd.DataFrame:
    """Keyword frequency per group: the share of completions with at least one keyword of each set
    (Jigsaw-R1 App. H.1; Fig. 3 Middle ``by="step"``, Fig. 3 Right ``by="size"``).

    Args:
        completions: a frame with ``completion`` and the ``by`` column(s).
        keywords: see :func:`keyword_sets`.
        by: column name(s) to group by, or None for one row (index ``"all"``).

    Returns:
        Index: the group values (sorted); columns ``n`` (int) and ``kw_<name>`` (float in [0, 1]).

    Raises:
        ValueError: missing ``completion`` or ``by`` column, bad keyword specification.
    """
    return grouped_mean(keyword_table(completions, keywords), completions, by)


def group_keyword_rates(log: pd.DataFrame, keywords: KeywordSpec = JIGSAW_R1_KEYWORDS, *, steps=None) -> pd.Series:
    """Keyword frequency per prompt group of a completion log: the share of a group's G completions with at
    least one keyword of the (single) set — the independent unit of a GRPO log, since a group's completions
    share one prompt (used by :func:`keyword_trend` and ``stats.rate_contrast``).

    Args:
        log: ``analysis.load_completion_log`` output (``step``, ``prompt_id``, ``completion``).
        keywords: one keyword set (default: both Jigsaw-R1 App. H.1 lists as one set).
        steps: optional collection of steps to keep.
    Returns:
        Values in [0, 1], one per (step, prompt_id) group, indexed by the pair.
    Raises:
        ValueError: a missing column or prompt id, or a specification of more than one set.
    """
    sets = keyword_sets(keywords)
    if len(sets) != 1:
        raise ValueError(f"group_keyword_rates counts one keyword set, got {[k.name for k in sets]}; pass one "
                         "(e.g. 'jigsaw_r1').")
    missing = [c for c in ("step", "prompt_id", "completion") if c not in log.columns]
    if missing:
        raise ValueError(f"group_keyword_rates: the log has no column(s) {missing}; pass "
                         "analysis.load_completion_log(run_dir).")
    lost = log["prompt_id"].isna()
    if lost.any():
        raise ValueError(f"group_keyword_rates: {int(lost.sum())} of {len(log)} completions have no prompt_id (a log "
                         "written before prompt ids were recorded?); rates per prompt group need them: rerun the "
                         "training, or count per completion with keyword_frequencies.")
    if steps is not None:
        log = log[log["step"].isin(list(steps))]
    hits = keyword_table(log, sets)[sets[0].column].astype(float)
    return hits.groupby([log["step"], log["prompt_id"]]).mean()


def keyword_trend(logs: Mapping[Any, pd.DataFrame], keywords: KeywordSpec = JIGSAW_R1_KEYWORDS, *,
                  fraction: float = 1 / 3, direction: int = 1) -> dict:
    """Does keyword frequency rise with the training step (Jigsaw-R1 Finding 4, Fig. 3 middle)? For each run,
    the prompt groups of its last ``fraction`` of steps against those of its first ``fraction``, with
    ``jrl_core.stats.rate_contrast`` (bootstrap over runs and groups) and its pre-registered verdict.

    Args:
        logs: run (seed) -> completion log (``analysis.load_completion_log``).
        keywords: one keyword set; fraction: the share of steps in each window, in (0, 0.5].
        direction: 1 for "late exceeds early" (the paper's claim).
    Returns:
        ``stats.rate_contrast``'s dict (a = late steps, b = early steps; rates in [0, 1]) plus ``"windows"``:
        ``{seed: {"early": [steps], "late": [steps]}}``.
    Raises:
        ValueError: ``fraction`` out of range, or a run with fewer than 2 logged steps.
    """
    import math

    from jrl_core import stats

    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction={fraction}: give a share of the steps in (0, 0.5], e.g. 1/3.")
    late, early, windows = {}, {}, {}
    for s, log in logs.items():
        steps = sorted(pd.unique(log["step"]))
        if len(steps) < 2:
            raise ValueError(f"keyword_trend: run {s!r} logged {len(steps)} step(s); a trend needs at least 2.")
        k = max(1, math.floor(len(steps) * fraction))
        windows[s] = {"early": [int(x) for x in steps[:k]], "late": [int(x) for x in steps[-k:]]}
        late[s] = group_keyword_rates(log, keywords, steps=windows[s]["late"]).to_numpy()
        early[s] = group_keyword_rates(log, keywords, steps=windows[s]["early"]).to_numpy()
    return {**stats.rate_contrast(late, early, direction=direction), "windows": windows}
