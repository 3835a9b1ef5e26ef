"""The four cognitive behaviours judged by a model (Jigsaw-R1 App. H.2, Fig. 5; Gandhi et al., 2025).

Verification, backtracking, subgoal setting and backward chaining, through a pluggable :class:`Judge`:
any callable ``judge(completion, question=None) -> {behaviour: bool | count}``. :class:`OpenAIJudge`
(an OpenAI-compatible endpoint, ``urllib`` only) and :class:`HFJudge` (a local transformers model) use
the repo's prompt ``jrl_core/prompts/behaviour_judge.md`` (the papers' prompts are not published for
puzzles). Off by default in :func:`jrl_core.analysis.analyse`.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from jrl_core.analysis.frames import By, completion_texts, grouped_mean

__all__ = [
    "BEHAVIOURS",
    "HFJudge",
    "Judge",
    "OpenAIJudge",
    "fill_judge_prompt",
    "judge_frequencies",
    "judge_table",
    "load_judge_prompt",
    "normalise_verdict",
    "parse_judge_reply",
]

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
    texts = completion_texts(completions)
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


def judge_frequencies(completions: Any, judge: Judge, by: By = None,
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
        frame = pd.DataFrame({"completion": completion_texts(completions)})
    table = judge_table(frame, judge, **kwargs)
    present = table.gt(0).astype(float).where(table.notna())
    return grouped_mean(present, frame, by)
