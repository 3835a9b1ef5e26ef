"""Reasoning analysis of completions: keywords, judged behaviours, think/answer consistency, lengths.

What Jigsaw-R1 §5 (RQ3/RQ4, App. H, App. J; Figs. 2-5) and Think-or-Not-Think §2.4 (Fig. 2) measure
on model outputs, computed from any run directory (protocol §8):

* **Keyword detectors** (Jigsaw-R1 App. H.1; Fig. 3 Middle/Right, Fig. 4): :class:`KeywordSet`,
  :data:`BACKTRACKING`, :data:`BACKWARD_CHAINING`, and VisualThinker-R1-Zero's "aha" list
  :data:`VISUALTHINKER`. Frequency = share of completions with at least one hit.
* **The four behaviours** of Gandhi et al. (2025) (verification, backtracking, subgoal setting,
  backward chaining; Jigsaw-R1 App. H.2, Fig. 5) through a pluggable :class:`Judge`: any callable
  ``judge(completion, question=None) -> {behaviour: bool | count}``. :class:`OpenAIJudge` (an
  OpenAI-compatible endpoint, ``urllib`` only) and :class:`HFJudge` (a local transformers model) use
  the repo's prompt ``jrl_core/prompts/behaviour_judge.md`` (the papers' prompts are not published
  for puzzles). Off by default.
* **Think/answer consistency** (Jigsaw-R1 Finding 3.3, Fig. 3 Left; Think-or-Not-Think Fig. 2): the
  answer stated inside ``<think>`` (by rule, :func:`reasoning_answer`) against the ``<answer>``.
* **Completion length** (Jigsaw-R1 Fig. 2 Right): characters and tokens, mean/median/p90.

Inputs: :func:`load_completion_log` (the trainer's ``<run_dir>/**/completions.jsonl``) and
:func:`load_eval_outputs` (``eval_*.csv`` of ``jrl_core.evaluate``); :func:`analyse` gives one row per
group (training step, puzzle size ``"2x1"``, source file…). No plotting here.

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

import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from jrl_core import rewards
from jrl_core.puzzles import ANSWER_TYPE

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
    "judge_frequencies",
    "judge_table",
    "keyword_frequencies",
    "keyword_sets",
    "keyword_table",
    "length_stats",
    "length_table",
    "load_completion_log",
    "load_eval_outputs",
    "load_judge_prompt",
    "normalise_verdict",
    "parse_judge_reply",
    "reasoning_answer",
    "reasoning_text",
]

# ---------------------------------------------------------------- keyword detectors


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


def _texts(completions: Any) -> pd.Series:
    """Completion texts as a str Series (DataFrame → its "completion" column, index kept)."""
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
    return series.map(lambda c: "" if c is None or (isinstance(c, float) and math.isnan(c)) else rewards.completion_text(c))


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
    texts = _texts(completions)
    out = pd.DataFrame(index=texts.index)
    for kw in keyword_sets(keywords):
        out[kw.column] = texts.map(kw.matches).astype(bool)
        if counts:
            out[f"{kw.column}_count"] = texts.map(lambda t, kw=kw: sum(kw.hits(t).values())).astype(int)
    return out


def _group_keys(df: pd.DataFrame, by: str | Sequence[str] | None, index: pd.Index) -> list[pd.Series]:
    """Group keys as Series on ``index`` (rows of ``df`` in order; robust to a duplicated index)."""
    if by is None:
        return [pd.Series("all", index=index, name="group")]
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"cannot group by {missing}: no such column (columns: {', '.join(map(str, df.columns))}). Training logs "
            "have 'step' and 'size'; eval outputs have 'source' and 'size'; by=None gives one row."
        )
    return [pd.Series(df[c].to_numpy(), index=index, name=c) for c in cols]


def _grouped_mean(values: pd.DataFrame, df: pd.DataFrame, by: str | Sequence[str] | None) -> pd.DataFrame:
    keys = _group_keys(df, by, values.index)
    grouped = values.astype(float).groupby(keys, sort=True, dropna=False)
    out = grouped.mean()
    out.insert(0, "n", grouped.size().astype(int))
    return out


def keyword_frequencies(completions: pd.DataFrame, keywords: KeywordSpec = None,
                        by: str | Sequence[str] | None = "step") -> pd.DataFrame:
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
    return _grouped_mean(keyword_table(completions, keywords), completions, by)


# ---------------------------------------------------------------- judged behaviours

#: The four cognitive behaviours of Gandhi et al. (2025), as judged in Jigsaw-R1 App. H.2 / Fig. 5.
BEHAVIOURS = ("verification", "backtracking", "subgoal_setting", "backward_chaining")
_PROMPT_FILE = "behaviour_judge.md"


@runtime_checkable
class Judge(Protocol):
    """Anything that judges one completion: ``judge(completion, question=None) -> {behaviour: value}``.

    The mapping has the keys of :data:`BEHAVIOURS`; a value is a bool (present or not) or a count
    (int ≥ 0). A plain function with that signature is a Judge.
    """

    def __call__(self, completion: str, question: str | None = None) -> Mapping[str, bool | int]: ...


def _behaviour_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value >= 0 and value == int(value) else None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("yes", "true", "present"):
            return 1
        if word in ("no", "false", "absent", "none"):
            return 0
        if word.isdigit():
            return int(word)
    return None


def normalise_verdict(verdict: Any, source: str = "judge") -> dict[str, int]:
    """A judge's answer as counts ``{behaviour: int >= 0}`` for each of :data:`BEHAVIOURS`.

    Keys are matched case-insensitively with spaces/hyphens read as ``_`` ("Subgoal setting" →
    ``subgoal_setting``); extra keys are ignored. Values: bool → 0/1; a non-negative integer (or
    integral float) as is; "yes"/"true"/"present" → 1, "no"/"false"/"absent"/"none" → 0; digit strings.

    Raises:
        ValueError: not a mapping, a behaviour missing, or a value that is none of the above; the
            message names ``source`` and shows what was received.
    """
    if not isinstance(verdict, Mapping):
        raise ValueError(f"{source} returned {type(verdict).__name__} {verdict!r:.200}; expected a mapping behaviour -> bool/count.")
    values = {_behaviour_key(k): v for k, v in verdict.items()}
    missing = [b for b in BEHAVIOURS if b not in values]
    if missing:
        raise ValueError(f"{source} gave no value for {missing}; got keys {sorted(values)}. It must answer all of {list(BEHAVIOURS)}.")
    out = {}
    for behaviour in BEHAVIOURS:
        count = _count(values[behaviour])
        if count is None:
            raise ValueError(f"{source}: {behaviour} = {values[behaviour]!r} is not a bool, a count >= 0 or yes/no.")
        out[behaviour] = count
    return out


def parse_judge_reply(text: str, source: str = "judge") -> dict[str, int]:
    """Read a judge model's reply: the LAST JSON object in ``text`` with all four behaviour keys (so an
    echoed example followed by the real answer gives the answer), tolerating code fences and prose
    around it; then :func:`normalise_verdict`.

    Raises:
        ValueError: no JSON object in the reply, or none with the behaviours; the message quotes the
            start of the reply.
    """
    decoder = json.JSONDecoder()
    objects = []
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    if not objects:
        raise ValueError(f"{source}: no JSON object in the reply {text[:300]!r}; the prompt asks for one JSON object.")
    complete = [o for o in objects if all(b in {_behaviour_key(k) for k in o} for b in BEHAVIOURS)]
    return normalise_verdict((complete or objects)[-1], source)


def load_judge_prompt(path: str | Path | None = None) -> str:
    """The behaviour-judge prompt template (default: ``jrl_core/prompts/behaviour_judge.md``, the
    workbook's own prompt; Jigsaw-R1 App. H.2 used Gandhi et al.'s unpublished-for-puzzles prompts).

    A leading HTML comment (provenance notes) is removed. The template must contain the placeholders
    ``{{question}}`` and ``{{completion}}``.

    Raises:
        FileNotFoundError: the file does not exist; ValueError: a placeholder is missing.
    """
    if path is None:
        text = resources.files("jrl_core").joinpath("prompts", _PROMPT_FILE).read_text(encoding="utf-8")
        where = f"jrl_core/prompts/{_PROMPT_FILE}"
    else:
        where = str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"judge prompt {where} does not exist.")
        text = Path(path).read_text(encoding="utf-8")
    text = re.sub(r"\A\s*<!--.*?-->\s*", "", text, count=1, flags=re.DOTALL)
    for placeholder in ("{{question}}", "{{completion}}"):
        if placeholder not in text:
            raise ValueError(f"judge prompt {where} lacks the placeholder {placeholder}.")
    return text


def fill_judge_prompt(template: str, completion: str, question: str | None = None) -> str:
    """Replace ``{{completion}}`` and ``{{question}}`` (None → "") literally, in one pass (braces and
    placeholders inside the completion are left alone)."""
    values = {"completion": completion, "question": question or ""}
    return re.sub(r"\{\{(question|completion)\}\}", lambda m: values[m.group(1)], template)


@dataclass
class OpenAIJudge:
    """A :class:`Judge` calling an OpenAI-compatible ``POST {base_url}/chat/completions`` with ``urllib``
    (OpenAI, vLLM, llama.cpp, Ollama's /v1…), prompt from :func:`load_judge_prompt`.

    Attributes:
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://localhost:8000/v1"``; a URL that
            already ends with ``/chat/completions`` is used as is.
        model: the served model name (Jigsaw-R1 used ``"gpt-4.1"``).
        api_key: sent as ``Authorization: Bearer …`` when given (never printed in the repr).
        prompt: the template (None → the repo's prompt file).
        temperature, max_tokens, timeout: request settings (greedy by default; seconds).

    Calling it returns ``{behaviour: count}`` (:func:`parse_judge_reply`).

    Raises (on call):
        RuntimeError: HTTP error or unreachable endpoint (status, URL and the start of the body);
        ValueError: a response without ``choices[0].message.content`` or an unparsable answer.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    prompt: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 256
    timeout: float = 120.0

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def request(self, completion: str, question: str | None = None) -> urllib.request.Request:
        """The HTTP request for one completion (JSON body: model, one user message, temperature,
        max_tokens)."""
        template = self.prompt if self.prompt is not None else load_judge_prompt()
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": fill_judge_prompt(template, completion, question)}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")

    def __call__(self, completion: str, question: str | None = None) -> dict[str, int]:
        req = self.request(completion, question)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace") if err.fp is not None else ""
            raise RuntimeError(
                f"judge request to {self.url} failed with HTTP {err.code}: {detail!r}. Check base_url (up to /v1), "
                f"the model name {self.model!r} and api_key."
            ) from None
        except urllib.error.URLError as err:
            raise RuntimeError(f"could not reach the judge at {self.url}: {err.reason}. Is the server running?") from None
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError(
                f"unexpected response from {self.url}: {raw[:300]!r}; expected an OpenAI chat completion "
                "with choices[0].message.content."
            ) from None
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        return parse_judge_reply(str(content or ""), source=f"judge {self.model!r} at {self.url}")


class HFJudge:
    """A :class:`Judge` running a local transformers causal LM (greedy), loaded on first call
    (``transformers`` imported lazily, ``trust_remote_code=False``). The model's chat template is used
    when it has one, else the raw prompt.

    Args:
        model_path: a local folder or hub id readable by ``AutoModelForCausalLM``.
        prompt: the template (None → :func:`load_judge_prompt`).
        max_new_tokens: generation budget for the JSON answer.
        device: e.g. ``"cuda"``; None keeps transformers' default placement.
        dtype: passed to ``from_pretrained`` (``"auto"``).

    Raises (on call):
        OSError from transformers when the model cannot be loaded; ValueError for an unparsable answer.
    """

    def __init__(self, model_path: str | Path, *, prompt: str | None = None, max_new_tokens: int = 256,
                 device: str | None = None, dtype: str = "auto") -> None:
        self.model_path = str(model_path)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.dtype = dtype
        self._model = None
        self._tokenizer = None

    def __repr__(self) -> str:
        return f"HFJudge({self.model_path!r}, loaded={self._model is not None})"

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, trust_remote_code=False, dtype=self.dtype)
        if self.device is not None:
            model = model.to(self.device)
        self._model = model.eval()

    def __call__(self, completion: str, question: str | None = None) -> dict[str, int]:
        if self._model is None:
            self._load()
        import torch

        tok, model = self._tokenizer, self._model
        text = fill_judge_prompt(self.prompt if self.prompt is not None else load_judge_prompt(), completion, question)
        if getattr(tok, "chat_template", None):
            inputs = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             return_dict=True, return_tensors="pt")
        else:
            inputs = tok(text, return_tensors="pt")
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        reply = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return parse_judge_reply(reply, source=f"HFJudge({self.model_path})")


def judge_table(completions: Any, judge: Judge, *, question_column: str = "question",
                on_error: str = "raise") -> pd.DataFrame:
    """Judge every completion: one row per completion, one int column (count ≥ 0) per behaviour of
    :data:`BEHAVIOURS` (Jigsaw-R1 App. H.2).

    Args:
        completions: a frame with ``completion`` (and optionally ``question_column``), a Series or a
            list of texts.
        judge: a :class:`Judge` (e.g. :class:`OpenAIJudge`, :class:`HFJudge`, or a function).
        question_column: the column passed as ``question`` when present.
        on_error: ``"raise"`` (default) or ``"skip"`` (a failing completion gets NaN in every column).

    Raises:
        ValueError: bad ``on_error``, missing ``completion`` column, an invalid verdict; whatever the
            judge raises when ``on_error="raise"``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
    texts = _texts(completions)
    questions: Iterable[Any]
    if isinstance(completions, pd.DataFrame) and question_column in completions.columns:
        questions = completions[question_column].tolist()
    else:
        questions = [None] * len(texts)
    rows = []
    for text, question in zip(texts.tolist(), questions, strict=True):
        try:
            q = None if question is None or (isinstance(question, float) and math.isnan(question)) else str(question)
            rows.append(normalise_verdict(judge(text, q), source=repr(judge)[:80]))
        except Exception:
            if on_error == "raise":
                raise
            rows.append(dict.fromkeys(BEHAVIOURS, math.nan))
    return pd.DataFrame(rows, index=texts.index, columns=list(BEHAVIOURS))


def judge_frequencies(completions: Any, judge: Judge, by: str | Sequence[str] | None = None,
                      **kwargs: Any) -> pd.DataFrame:
    """Share of completions in which the judge finds each behaviour (count > 0), per group
    (Jigsaw-R1 App. H.2, Fig. 5: ``by="step"``).

    Args:
        completions: a frame with ``completion`` and the ``by`` column(s), or a list of texts (then
            ``by`` must be None).
        judge: a :class:`Judge`.
        by: column name(s), or None for one row (index ``"all"``).
        **kwargs: passed to :func:`judge_table` (``question_column``, ``on_error``).

    Returns:
        Index: group values; columns ``n`` and one float in [0, 1] per behaviour (skipped failures,
        NaN, are left out of the share).

    Raises:
        ValueError: as :func:`judge_table`; ``by`` given without a frame.
    """
    frame = completions if isinstance(completions, pd.DataFrame) else None
    if frame is None:
        if by is not None:
            raise ValueError("judge_frequencies: 'by' needs a DataFrame with that column; a plain list has no columns.")
        frame = pd.DataFrame({"completion": _texts(completions)})
    table = judge_table(frame, judge, **kwargs)
    present = table.gt(0).astype(float).where(table.notna())
    return _grouped_mean(present, frame, by)


# ---------------------------------------------------------------- think/answer consistency

#: Values of :func:`consistency`.
CONSISTENCY = ("consistent", "inconsistent", "undetermined")

_REASONING_RE = re.compile(r"<(think|reason)>(.*?)</\1>", re.DOTALL)
_ANSWER_TAG_RE = re.compile(r"<answer>.*?</answer>", re.DOTALL)
_ANSWER_PHRASE = (
    r"(?i:\banswers?)\s*(?:(?i:is|would\s+be|should\s+be|must\s+be|will\s+be)\b)?\s*[:=]?\s*"
)
_LETTER_PHRASE_RE = re.compile(_ANSWER_PHRASE + r"(?:(?i:option|choice)\s+)?[(\[*]*\s*([A-Z])(?![A-Za-z0-9'’])")
_LETTER_PAREN_RE = re.compile(r"\(\s*([A-Z])\s*\)")
_LETTER_ALONE_RE = re.compile(r"(?<![A-Za-z0-9'’])([A-Z])(?![A-Za-z0-9'’])")
_CHOICE_LABEL_RE = re.compile(r"^[ \t>*\-]*\(\s*[A-Z]\s*\)", re.MULTILINE)
_DIGIT_PHRASE_RE = re.compile(_ANSWER_PHRASE + r"(?:(?i:position|index|patch)\s+)?[(\[*]*\s*([0-9]+)(?![0-9A-Za-z])")
_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?![A-Za-z0-9])")
_GRID_GAP_RE = re.compile(r"[\s,;`|\[\]()]*")
_BOX_ALL_RE = re.compile(r"[0-9]+,\s*[0-9]+,\s*[0-9]+,\s*[0-9]+")


def reasoning_text(text: str) -> str | None:
    """The reasoning block of a completion: the content of the first ``<think>…</think>`` (or
    ``<reason>…</reason>``, Think-After-Answer); for base-model completions whose prompt ended with
    ``<think>`` (protocol §3), the text before a ``</think>`` that has no opening tag. None when there
    is no closed reasoning block (non-thinking outputs, truncated thinking)."""
    match = _REASONING_RE.search(text)
    if match:
        return match.group(2)
    end = text.find("</think>")
    if end >= 0 and "<think>" not in text[:end]:
        return text[:end]
    return None


def answer_tag_answer(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> Any:
    """The ``<answer>`` answer as the rewards read it (protocol §4: first ``<answer>`` block via
    ``rewards.extract_answer``, then ``rewards.parse_letter`` / ``parse_digit`` / ``parse_grid`` /
    ``parse_box``), or None when there is no ``<answer>…</answer>`` or it does not parse.

    Returns:
        letter: "A"-"Z"; digit: int; grid: list of m·n ints; box/point: [x1, y1, x2, y2] floats.

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    _check_type(answer_type, m, n)
    if not _ANSWER_TAG_RE.search(text):
        return None
    content = rewards.extract_answer(text, think=True)
    return _parse_value(content, answer_type, m, n)


def _check_type(answer_type: str, m: Any, n: Any) -> None:
    if answer_type not in rewards.ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; use one of {', '.join(rewards.ANSWER_TYPES)}.")
    if answer_type == "grid" and (_missing(m) or _missing(n)):
        raise ValueError("a grid answer needs the grid size: pass m and n (rows, columns).")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parse_value(content: str, answer_type: str, m: Any, n: Any) -> Any:
    if answer_type == "letter":
        return rewards.parse_letter(content)
    if answer_type == "digit":
        return rewards.parse_digit(content)
    if answer_type == "grid":
        return rewards.parse_grid(content, int(m), int(n))
    return rewards.parse_box(content)


def _sentence_start(text: str, pos: int) -> bool:
    before = text[max(0, pos - 40):pos].rstrip(" \t*\"'")
    return (pos <= 40 and before == "") or (before != "" and before[-1] in ".!?:\n")


def _reasoning_letter(think: str) -> str | None:
    phrases = _LETTER_PHRASE_RE.findall(think)
    if phrases:
        return phrases[-1]
    labels = [(mt.start(), mt.end()) for mt in _CHOICE_LABEL_RE.finditer(think)]

    def in_label(pos: int) -> bool:
        return any(start <= pos < end for start, end in labels)

    parens = [mt.group(1) for mt in _LETTER_PAREN_RE.finditer(think) if not in_label(mt.start())]
    if parens:
        return parens[-1]
    for mt in reversed(list(_LETTER_ALONE_RE.finditer(think))):
        letter, after = mt.group(1), think[mt.end():mt.end() + 2]
        if in_label(mt.start()):
            continue
        lower_word_next = len(after) == 2 and after[0].isspace() and after[1].islower()
        if letter == "I" and lower_word_next:  # the pronoun: "I think"
            continue
        if letter == "A" and lower_word_next and _sentence_start(think, mt.start()):  # the article: "A patch …"
            continue
        return letter
    return None


def _reasoning_grid(think: str, m: int, n: int) -> list[int] | None:
    size = m * n
    runs: list[list[str]] = []
    prev_end = None
    for mt in _NUMBER_RE.finditer(think):
        if prev_end is not None and _GRID_GAP_RE.fullmatch(think, prev_end, mt.start()):
            runs[-1].append(mt.group(0))
        else:
            runs.append([mt.group(0)])
        prev_end = mt.end()
    for run in reversed(runs):
        if len(run) == size:
            grid = rewards.parse_grid(" ".join(run), m, n)
            if grid is not None:
                return grid
    return None


def reasoning_answer(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> Any:
    """The answer stated inside the reasoning block (:func:`reasoning_text`), by rule (protocol §8;
    Jigsaw-R1 Finding 3.3 and Think-or-Not-Think §2.4 used an LLM for this; the rules are ours).

    Rules per answer type (the LAST occurrence wins within each rule; rules in precedence order):

    * letter: (1) an answer phrase — "answer", "answers", optionally followed by "is", "would be",
      "should be", "must be", "will be", then optional ":"/"=", optional "option"/"choice", optional
      "(", "[" or "**", then a capital letter not followed by a letter/digit/apostrophe ("the answer is
      (B)", "Answer: C", "answer would be option **D**"); (2) a parenthesised capital "(X)", except a
      choice label "(X)" at the start of a line (a restated choice list); (3) a standalone capital
      letter (no letter, digit or apostrophe on either side), except in a line-start choice label, the
      pronoun "I" before a lowercase word ("I think") and the article "A" at a sentence start before a
      lowercase word ("A patch shows …").
    * digit: (1) an answer phrase as above followed by optional "position"/"index"/"patch" and an
      integer ("the answer is position 3"); (2) the last standalone integer (no letter or digit on
      either side, so "2x1" and "3rd" are not numbers).
    * grid: the last run of exactly m·n standalone integers, each in [1, m·n] (``rewards.parse_grid``),
      separated only by whitespace, ",", ";", "`", "|", brackets or parentheses ("2 1\\n3 4",
      "[[2, 1], [3, 4]]", a markdown table row by row). Runs of another length are ignored.
    * box/point: the last ``int, int, int, int``.

    Returns:
        The value in the form of :func:`answer_tag_answer`, or None when there is no reasoning block
        or no answer in it.

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    _check_type(answer_type, m, n)
    think = reasoning_text(text)
    if think is None:
        return None
    if answer_type == "letter":
        return _reasoning_letter(think)
    if answer_type == "digit":
        phrases = _DIGIT_PHRASE_RE.findall(think)
        numbers = phrases or _NUMBER_RE.findall(think)
        return rewards.parse_digit(numbers[-1]) if numbers else None
    if answer_type == "grid":
        return _reasoning_grid(think, int(m), int(n))
    boxes = _BOX_ALL_RE.findall(think)
    return rewards.parse_box(boxes[-1]) if boxes else None


def consistency(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> str:
    """Whether the answer stated in the reasoning agrees with the ``<answer>`` answer (Jigsaw-R1
    Finding 3.3 / Fig. 3 Left; Think-or-Not-Think Fig. 2, "consistency with answer tag: Yes/No/None").

    Returns:
        ``"consistent"`` (equal values: same letter, number, grid or box), ``"inconsistent"``, or
        ``"undetermined"`` when either side has no answer: no reasoning block or no answer found in it
        (:func:`reasoning_answer`; Think-or-Not-Think's "None"), or no parsable ``<answer>``
        (:func:`answer_tag_answer`).

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    think_value = reasoning_answer(text, answer_type, m, n)
    tag_value = answer_tag_answer(text, answer_type, m, n)
    if think_value is None or tag_value is None:
        return "undetermined"
    return "consistent" if think_value == tag_value else "inconsistent"


def _score_value(value: Any, solution: Any, answer_type: str, m: Any, n: Any) -> float:
    """Exact correctness of an extracted value (letter/digit/grid: 0 or 1; box: IoU; point: centre in
    box); NaN for a missing value or solution."""
    if value is None or _missing(solution):
        return math.nan
    text = str(solution).strip()
    if answer_type == "letter":
        return float(value == text.upper())
    if answer_type == "digit":
        return float(text.isdigit() and value == int(text))
    if answer_type == "grid":
        gt = list(solution) if isinstance(solution, (list, tuple)) else rewards.parse_grid(text, int(m), int(n))
        if gt is None:
            raise ValueError(f"solution {solution!r} is not a {m}x{n} grid of position indices.")
        return rewards.score_grid(value, gt, int(m), int(n), "binary")
    gt_box = rewards.parse_box(text) if isinstance(solution, str) else [float(v) for v in solution]
    if gt_box is None:
        raise ValueError(f"solution {solution!r} is not a box 'x1,y1,x2,y2'.")
    return rewards.box_iou(value, gt_box) if answer_type == "box" else rewards.point_in_box(value, gt_box)


def _fmt(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(int(v)) if float(v).is_integer() else str(v) for v in value)
    return str(value)


def _with_answer_type(df: pd.DataFrame) -> pd.DataFrame:
    if "answer_type" in df.columns:
        return df
    if "question_type" in df.columns:
        return df.assign(answer_type=df["question_type"].map(ANSWER_TYPE))
    raise ValueError(
        "the frame has neither 'answer_type' nor 'question_type'; consistency needs the answer type "
        f"(one of {', '.join(rewards.ANSWER_TYPES)}) per completion."
    )


def consistency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-completion consistency between the reasoning and the ``<answer>`` (see :func:`consistency`).

    Args:
        df: columns ``completion``, ``answer_type`` (or ``question_type``, mapped with
            ``puzzles.ANSWER_TYPE``), ``m`` and ``n`` (grids), optionally ``solution``.

    Returns:
        Index of ``df``; columns ``reasoning_answer`` and ``tag_answer`` (str or None; grids as
        space-separated indices), ``consistency`` (one of :data:`CONSISTENCY`; ``"undetermined"`` for a
        row with an unknown answer type), and with ``solution``: ``reasoning_score`` and
        ``answer_score`` (exact correctness in [0, 1]: letter/digit/grid 0 or 1, box IoU, point 0/1;
        NaN where that side has no answer).

    Raises:
        ValueError: missing columns; a grid row without m/n; a malformed solution.
    """
    df = _with_answer_type(df)
    texts = _texts(df)
    has_solution = "solution" in df.columns
    none = [None] * len(df)
    columns = zip(texts.tolist(), df["answer_type"].tolist(), *(df[c].tolist() if c in df.columns else none
                                                                 for c in ("m", "n", "solution")), strict=True)
    rows = []
    for text, answer_type, m, n, solution in columns:
        if answer_type not in rewards.ANSWER_TYPES:
            think_value = tag_value = None
        else:
            think_value = reasoning_answer(text, answer_type, m, n)
            tag_value = answer_tag_answer(text, answer_type, m, n)
        status = ("undetermined" if think_value is None or tag_value is None
                  else "consistent" if think_value == tag_value else "inconsistent")
        out = {"reasoning_answer": _fmt(think_value), "tag_answer": _fmt(tag_value), "consistency": status}
        if has_solution:
            known = answer_type in rewards.ANSWER_TYPES
            out["reasoning_score"] = _score_value(think_value, solution, answer_type, m, n) if known else math.nan
            out["answer_score"] = _score_value(tag_value, solution, answer_type, m, n) if known else math.nan
        rows.append(out)
    columns = ["reasoning_answer", "tag_answer", "consistency"] + (["reasoning_score", "answer_score"] if has_solution else [])
    return pd.DataFrame(rows, index=texts.index, columns=columns)


def _consistency_values(table: pd.DataFrame) -> pd.DataFrame:
    status = table["consistency"]
    determined = status != "undetermined"
    values = pd.DataFrame({
        "consistent_share": (status == "consistent").astype(float).where(determined),
        "undetermined_share": (~determined).astype(float),
    }, index=table.index)
    if "answer_score" in table.columns:
        values["accuracy_consistent"] = table["answer_score"].where(status == "consistent")
        values["accuracy_inconsistent"] = table["answer_score"].where(status == "inconsistent")
        values["reasoning_accuracy_inconsistent"] = table["reasoning_score"].where(status == "inconsistent")
    return values


def consistency_summary(df: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Consistency per group (Jigsaw-R1 Fig. 3 Left; Think-or-Not-Think Fig. 2 (a) and (b)).

    Args:
        df: a frame for :func:`consistency_table` (or one that already has its columns), with the
            ``by`` column(s).
        by: column name(s), or None for one row (index ``"all"``).

    Returns:
        Index: group values; columns ``n``; ``consistent_share`` (consistent / determined, in [0, 1];
        NaN when none is determined; 1 − it is the inconsistency rate of Think-or-Not-Think Fig. 2a);
        ``undetermined_share`` (of all); and when ``solution`` is known: ``accuracy_consistent`` and
        ``accuracy_inconsistent`` (mean ``<answer>`` correctness among consistent / inconsistent
        completions) and ``reasoning_accuracy_inconsistent`` (mean correctness of the reasoning's
        answer among inconsistent ones; Fig. 2b's think-tag accuracy). NaN for an empty subset.

    Raises:
        ValueError: as :func:`consistency_table`; a missing ``by`` column.
    """
    table = df if "consistency" in df.columns else consistency_table(df)
    return _grouped_mean(_consistency_values(table), df, by)


# ---------------------------------------------------------------- lengths

TokenCounter = Callable[[str], Any]


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
        texts = _texts(df)
        out["length_chars"] = texts.str.len()
    if "length_tokens" in df.columns:
        out["length_tokens"] = pd.to_numeric(df["length_tokens"], errors="coerce")
    elif tokenizer is not None:
        texts = _texts(df) if texts is None else texts
        out["length_tokens"] = texts.map(lambda t: _token_count(tokenizer, t))
    return out


def length_stats(df: pd.DataFrame, by: str | Sequence[str] | None = "step",
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
    grouped = lengths.groupby(_group_keys(df, by, lengths.index), sort=True, dropna=False)
    out = pd.DataFrame({"n": grouped.size().astype(int)})
    for column, prefix in (("length_chars", "chars"), ("length_tokens", "tokens")):
        if column in lengths.columns:
            out[f"{prefix}_mean"] = grouped[column].mean()
            out[f"{prefix}_median"] = grouped[column].median()
            out[f"{prefix}_p90"] = grouped[column].quantile(0.9)
    return out


# ---------------------------------------------------------------- loaders

#: The trainer's per-rollout log file name (searched recursively under a run directory).
COMPLETION_LOG = "completions.jsonl"
_LOG_COLUMNS = ("step", "prompt_id", "completion", "advantage", "length_tokens", "length_chars", "solution",
                "answer_type", "m", "n", "think", "question_type", "mode")


def _size(df: pd.DataFrame) -> pd.Series:
    def one(m: Any, n: Any) -> Any:
        if _missing(m) or _missing(n) or m == "" or n == "":
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
    """Every rollout logged by the trainer under ``run_dir`` (``<run_dir>/**/completions.jsonl``; a path
    to one such file also works).

    Each line is one JSON object: ``step`` (int), ``prompt_id``, ``completion`` (str; TRL's
    conversational form is turned into text), ``rewards`` ({name: float}), ``advantage``,
    ``length_tokens``, ``length_chars``, ``solution``, ``answer_type``, ``m``, ``n``, ``think``,
    ``question_type``, ``mode``. Only ``completion`` is required; absent keys give NaN. Blank lines are
    skipped.

    Returns:
        One row per rollout, files in sorted path order: the logged keys, ``rewards`` flattened to
        ``reward_<name>`` columns, ``size`` (``"mxn"``, when m and n are known) and ``source`` (the
        log's folder relative to ``run_dir``, ``"."`` at the top). Files with no records give an empty
        frame with the schema's columns.

    Raises:
        FileNotFoundError: ``run_dir`` missing, or no completions.jsonl under it.
        ValueError: a malformed line (not JSON, not an object, no ``completion``, ``rewards`` not an
            object); the message names the file and the line number.
    """
    root, files = _files(run_dir, COMPLETION_LOG, "load_completion_log")
    records: list[dict] = []
    for path in files:
        source = path.parent.relative_to(root).as_posix() if path.parent != root else "."
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{where}: malformed JSON ({err.msg}, column {err.colno}): {line.strip()[:80]!r}. Each line must be one "
                        "JSON object; a cut last line means the trainer was still writing (read again after the step)."
                    ) from None
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
                if "completion" not in record:
                    raise ValueError(f"{where}: no 'completion' key (keys: {', '.join(record)}).")
                scores = record.pop("rewards", None) or {}
                if not isinstance(scores, dict):
                    raise ValueError(f"{where}: 'rewards' must be an object {{name: float}}, got {scores!r:.80}.")
                record["completion"] = rewards.completion_text(record["completion"])
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


# ---------------------------------------------------------------- one call


def analyse(df: pd.DataFrame, by: str | Sequence[str] | None = "step", keywords: KeywordSpec = None,
            judge: Judge | None = None, *, tokenizer: TokenCounter | None = None,
            consistency: bool = True) -> pd.DataFrame:
    """Everything above, one row per group (Jigsaw-R1 Figs. 2-5; Think-or-Not-Think Fig. 2).

    Args:
        df: from :func:`load_completion_log` or :func:`load_eval_outputs` (any frame with
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
        values = values.join(_consistency_values(consistency_table(df)))
    if judge is not None:
        table = judge_table(df, judge)
        values = values.join(table.gt(0).astype(float).where(table.notna()).add_prefix("judge_"))
    result = _grouped_mean(values, df, by)
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
