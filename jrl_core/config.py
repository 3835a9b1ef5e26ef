"""Experiment configuration: the :class:`Experiment` recipe, YAML recipes and ``--set`` overrides.

An :class:`Experiment` names everything a training comparison varies (Jigsaw-R1 §4-5, No-Thinking-RL,
OThink-MR1): the model, the photos, the puzzle sizes or curriculum, the question type, the thinking mode,
the rewards and their weights, the algorithm (GRPO, SFT, or SFT then GRPO: the cold start of Finding 5),
the GRPO and SFT settings, the KL schedule (constant β or GRPO-D), LoRA, and the seed. Recipes are YAML
files under ``recipes/`` holding any subset of the fields (``recipes/nano/*.yaml`` for 2 CPU cores,
``recipes/paper/*.yaml`` for protocol §6 on GPUs); ``load_recipe("paper/qwen2.5-vl-3b_2x1_pair_nothink",
overrides=["grpo.steps=10"])`` reads one. :mod:`jrl_core.experiment` runs it.

Configuration is resolved once, at construction: every field and every key of the six sections
(``grpo``, ``sft``, ``kl_schedule``, ``lora``, ``nano``, ``trainer``) is checked for type and range
against the dataclass it configures (:class:`jrl_core.train.GRPOSettings`, ``SFTSettings``,
``LoraSettings``, :class:`jrl_core.nano.NanoConfig`, ``trl.GRPOConfig``), and the typed result is kept
as the experiment's :class:`Plan` (``exp.plan``), which the runner reads. A bad value raises
:class:`RecipeError` (a ``ValueError``) naming the field, the value, what is allowed and an example fix,
before any model is loaded. :func:`check_model_reachable` is the matching pre-flight for the ``model``
field (no network, no local folder, no cached copy: fail in seconds, not after minutes of retries).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import enum
import math
import os
import re
import threading
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from transformers import SchedulerType

from jrl_core import perception, schedules, train
from jrl_core.modes import MODES, get_mode
from jrl_core.nano import NanoConfig
from jrl_core.puzzles import QUESTION_TYPES, PuzzleSpec
from jrl_core.rewards import REWARDS

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
"""Where recipe names (``"nano/rq1_2x1_pair"``) resolve to ``recipes/<name>.yaml``."""

ALGORITHMS = ("grpo", "sft", "sft_grpo")
"""``Experiment.algorithm`` values: RL, supervised, or an SFT cold start followed by GRPO."""
SCALES = ("nano", "paper")
"""``Experiment.scale`` values: which GRPO preset (``train.NANO`` / ``train.PAPER``) ``grpo`` overrides."""
SFT_DATA = ("auto", "gold", "rejection")
"""``Experiment.sft_data`` values."""
DTYPES = ("auto", "bf16", "fp32", "fp16")
"""``Experiment.dtype`` values (the dtypes :func:`jrl_core.nano.load_model` accepts)."""
KL_KINDS = ("grpo_d",)
"""``kl_schedule.kind`` values (an empty ``kl_schedule`` is a constant β)."""
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
"""``grpo.loss_type`` values: the ones ``trl.GRPOConfig.loss_type`` documents (TRL 1.16)."""
SCALE_REWARDS = ("group", "batch", "none")
"""``grpo.scale_rewards`` values (``trl.GRPOConfig.scale_rewards``)."""
SECTIONS = ("grpo", "sft", "kl_schedule", "lora", "nano", "trainer")
"""The dict-valued fields of :class:`Experiment`; ``--set grpo.steps=10`` sets a key inside one."""


class RecipeError(ValueError):
    """A recipe field, ``--set`` override or recipe file that cannot be used.

    The message names the field, the value, what is allowed and a fix; ``field`` is the dotted field
    name (``"grpo.steps"``) when the error concerns one field, else None.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# --- value checks ------------------------------------------------------------------------------------

_MISSING = object()
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")  # PyYAML reads 1e-5 as a string


@dataclass(frozen=True)
class _Rule:
    """A range or membership check on an already type-checked value; ``text`` completes "expected …"."""

    ok: Callable[[Any], bool]
    describe: str | Callable[[], str]  # a callable for a registry that may grow (modes, rewards)
    alone: bool = False  # the text says it all ("one of 'a', 'b'"): no type phrase before it

    @property
    def text(self) -> str:
        return self.describe() if callable(self.describe) else self.describe


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> _Rule:
    def ok(v: Any) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))

    if lo is not None and hi is not None:
        text = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"{'>' if lo_open else '>='} {lo:g}"
    elif hi is None:
        text = "finite"
    else:
        text = f"{'<' if hi_open else '<='} {hi:g}"
    return _Rule(ok, text)


def _one_of(choices: Iterable[str] | Mapping[str, Any]) -> _Rule:
    """Membership in ``choices``; a mapping (a registry such as ``MODES``) is read at each check."""
    if not isinstance(choices, Mapping):
        choices = tuple(choices)
    return _Rule(lambda v: v in choices, lambda: "one of " + ", ".join(repr(c) for c in choices), alone=True)


def _each(rule: _Rule, adjective: str | None = None) -> _Rule:
    return _Rule(lambda v: all(rule.ok(x) for x in v), lambda: f", each {adjective or rule.text}")


_POSITIVE = _range(0, lo_open=True)
_NON_NEGATIVE = _range(0)
_AT_LEAST_1 = _range(1)
_FRACTION = _range(0, 1)
_NON_EMPTY = _Rule(lambda v: bool(v.strip()), "that is not empty")
_EACH_NON_EMPTY = _each(_NON_EMPTY, "not empty")
_SCHEDULERS = tuple(s.value for s in SchedulerType)


def _conform(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (ints become floats for float fields, lists tuples for tuple fields),
    or ``_MISSING`` when it is not one. Annotations it does not know are accepted as is."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            out = _conform(value, arm)
            if out is not _MISSING:
                return out
        return _MISSING
    if tp is type(None) or tp is None:
        return value if value is None else _MISSING
    if origin is typing.Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _MISSING
    if tp is bool:
        return value if isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if tp is float:
        if isinstance(value, bool):
            return _MISSING
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
            return float(value)
        return _MISSING
    if tp is str:
        return value if isinstance(value, str) else _MISSING
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _MISSING
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            elems = [args[0] if args else Any] * len(value)
        elif args:  # fixed-length tuple
            if len(args) != len(value):
                return _MISSING
            elems = list(args)
        else:
            elems = [Any] * len(value)
        out = [_conform(v, t) for v, t in zip(value, elems, strict=True)]
        if any(o is _MISSING for o in out):
            return _MISSING
        return tuple(out) if (origin or tp) is tuple else list(out)
    if origin is dict or tp is dict:
        return dict(value) if isinstance(value, Mapping) else _MISSING
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum) and not isinstance(value, tp):
            return value if value in {m.value for m in tp} else _MISSING
        return value if isinstance(value, tp) else _MISSING
    return value


_PLURALS = {bool: "true/false values", int: "ints", float: "numbers", str: "strings"}


def _describe(tp: Any) -> str:
    """'an int', 'a number', 'a list of strings', 'a string or null', … for an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None) or tp is None:
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    simple = {bool: "true or false", int: "an int", float: "a number", str: "a string", dict: "a mapping",
              tuple: "a list", list: "a list"}
    if tp in simple:
        return simple[tp]
    if origin in (tuple, list):
        return f"a list of {_PLURALS.get(args[0], 'values')}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _inline(v: Any) -> str:
    """A value as one line of YAML flow style (what a user types after ``--set key=``)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_inline(x)}" for k, x in v.items()) + "}"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, enum.Enum):
        return str(v.value)
    return str(v)


def _check(path: str, value: Any, tp: Any, rule: _Rule | None = None, example: Any = None) -> Any:
    """``value`` conformed to ``tp`` and checked by ``rule``; raises :class:`RecipeError` naming ``path``."""
    out = _conform(value, tp)
    if out is not _MISSING and (rule is None or out is None or rule.ok(out)):
        return out
    if rule is not None and rule.alone:
        expected = rule.text
    else:
        text = rule.text if rule else ""
        expected = _describe(tp) + (text if text.startswith(",") or not text else f" {text}")
    fix = f"; use e.g. {path}={_inline(example)}" if example is not None else ""
    raise RecipeError(f"{path}={value!r}: expected {expected}{fix}.", field=path)


_ALIASES = {"lr": "learning_rate", "bs": "batch_size", "kl": "beta", "G": "num_generations", "group_size": "num_generations",
            "max_steps": "steps", "rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout"}
"""Common names of settings (TRL's, PEFT's, the papers') -> ours, for "did you mean" hints."""


def _unknown(section: str, keys: Iterable[str], known: Iterable[str], what: str) -> RecipeError:
    keys, known = sorted(map(str, keys)), sorted(known)
    hints = [f"{section}.{m[0]}" for k in keys
             if (m := [a for a in [_ALIASES.get(k)] if a in known] or difflib.get_close_matches(k, known, n=1))]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    if any(":" in k for k in keys):
        hint += " (YAML needs a space after ':', as in {r: 4})"
    names = ", ".join(f"{section}.{k}" for k in keys)
    return RecipeError(f"{names}: unknown {what}{'s' if len(keys) > 1 else ''}{hint}; "
                       f"known: {', '.join(known)}.", field=f"{section}.{keys[0]}")


# --- the sections and what they configure -----------------------------------------------------------

@dataclass(frozen=True)
class _Section:
    """One dict-valued field of :class:`Experiment`: its keys' types, ranges, examples and forbidden keys."""

    name: str
    what: str  # "GRPO setting": used in "unknown GRPO setting"
    types: dict[str, Any]
    rules: dict[str, _Rule] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)  # key -> why it is not allowed and what to use
    drop_none: bool = True  # a None value means "the default": the key is dropped

    def check(self, value: Any) -> dict:
        """The section's mapping with every value type- and range-checked (``None`` = ``{}``)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            key, ex = next(iter(self.examples.items()))
            raise RecipeError(
                f"{self.name}={value!r}: expected a mapping of {self.what}s; set one key with {self.name}.{key}="
                f"{_inline(ex)}, or the whole section with {self.name}={{{key}: {_inline(ex)}}}.", field=self.name)
        unknown = [k for k in value if k not in self.types]
        if unknown:
            raise _unknown(self.name, unknown, self.types, self.what)
        out = {}
        for k, v in value.items():
            if k in self.reserved:
                raise RecipeError(f"{self.name}.{k}={v!r}: {self.reserved[k]}.", field=f"{self.name}.{k}")
            if v is None and self.drop_none:
                continue  # None = the preset's value
            out[k] = _check(f"{self.name}.{k}", v, self.types[k], self.rules.get(k), self.examples.get(k))
        return out


def _hints(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: check what resolves
        hints = {}
    return {f.name: hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
            for f in dataclasses.fields(cls) if f.init}


def _defaults(obj: Any) -> dict[str, Any]:
    """Field values of a dataclass instance, or the declared defaults of a dataclass (those it has)."""
    if isinstance(obj, type):
        return {f.name: f.default for f in dataclasses.fields(obj)
                if f.init and f.default is not dataclasses.MISSING}
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


@cache
def _sections() -> dict[str, _Section]:
    settings_rules = {
        "steps": _POSITIVE, "learning_rate": _POSITIVE, "lr_scheduler_type": _one_of(_SCHEDULERS),
        "warmup_ratio": _FRACTION, "max_grad_norm": _NON_NEGATIVE, "save_steps": _NON_NEGATIVE,
        "seed": _NON_NEGATIVE, "report_to": _EACH_NON_EMPTY,
    }
    grpo_rules = {
        **settings_rules,
        "prompts_per_step": _AT_LEAST_1,
        "num_generations": _Rule(lambda v: v >= 2, ">= 2 (a group needs two completions to compare)"),
        "beta": _NON_NEGATIVE, "epsilon": _POSITIVE, "num_iterations": _AT_LEAST_1,
        "loss_type": _one_of(LOSS_TYPES), "scale_rewards": _one_of(SCALE_REWARDS), "temperature": _POSITIVE,
        "top_k": _NON_NEGATIVE, "max_completion_length": _AT_LEAST_1, "per_device_batch": _NON_NEGATIVE,
        "weight_decay": _NON_NEGATIVE, "save_fraction": _FRACTION,
    }
    nano_types = _hints(NanoConfig)
    nano_rules: dict[str, _Rule] = {}
    for name, tp in nano_types.items():
        if tp is int:
            nano_rules[name] = _NON_NEGATIVE if name.endswith("_steps") or name == "seed" else _AT_LEAST_1
        elif tp is float:
            nano_rules[name] = _POSITIVE
    nano_rules.update(pretrain_think_share=_FRACTION, pretrain_token_noise=_FRACTION,
                      pretrain_token_noise_vocab=_one_of(perception.NOISE_VOCABS),
                      pretrain_letter_smoothing=_range(0, 1, hi_open=True), photo_source=_NON_EMPTY,
                      vision_pretrain_tasks=_EACH_NON_EMPTY, pretrain_tasks=_EACH_NON_EMPTY)
    nano_examples = {"pretrain_steps": NanoConfig().pretrain_steps, **_defaults(NanoConfig())}
    nano_examples.pop("extra")
    return {
        "grpo": _Section(
            "grpo", "GRPO setting", _hints(train.GRPOSettings), grpo_rules, _defaults(train.NANO),
            reserved={"seed": "the seed comes from the top-level field; use seed=…",
                      "reward_weights": "the weights come from the top-level fields; use reward_weights=[…] "
                                        "(with rewards=[…])"}),
        "sft": _Section("sft", "SFT setting", _hints(train.SFTSettings),
                        {**settings_rules, "batch_size": _AT_LEAST_1}, _defaults(train.SFTSettings())),
        "lora": _Section("lora", "LoRA setting", _hints(train.LoraSettings),
                         {"r": _AT_LEAST_1, "alpha": _AT_LEAST_1, "dropout": _range(0, 1, hi_open=True),
                          "modules": _Rule(lambda v: len(v) > 0 and all(m.strip() for m in v), "that is not empty")},
                         _defaults(train.LoraSettings())),
        "nano": _Section("nano", "NanoConfig field", nano_types, nano_rules, nano_examples),
        "kl_schedule": _Section(
            "kl_schedule", "kl_schedule key",
            {"kind": str, "preset": str, "beta_min": float, "beta_max": float, "explore_fraction": float},
            {"kind": _one_of(KL_KINDS), "preset": _one_of(schedules.GRPO_D_PRESETS),
             "beta_min": _NON_NEGATIVE, "beta_max": _NON_NEGATIVE,
             "explore_fraction": _range(0, 1, lo_open=True, hi_open=True)},
            {"preset": "counting", "kind": "grpo_d", "beta_min": 0.04, "beta_max": 0.1, "explore_fraction": 0.3}),
    }


_TRAINER_OWNED = {
    "output_dir": "--out (jrl train) or run_experiment's run_dir", "max_steps": "grpo.steps",
    "per_device_train_batch_size": "grpo.per_device_batch",
    "gradient_accumulation_steps": "grpo.per_device_batch (accumulation = prompts_per_step × num_generations "
                                   "/ (per_device_batch × processes))",
    "num_generations": "grpo.num_generations", "learning_rate": "grpo.learning_rate",
    "lr_scheduler_type": "grpo.lr_scheduler_type", "warmup_steps": "grpo.warmup_ratio", "warmup_ratio": "grpo.warmup_ratio",
    "beta": "grpo.beta (or kl_schedule)", "epsilon": "grpo.epsilon", "num_iterations": "grpo.num_iterations",
    "loss_type": "grpo.loss_type", "scale_rewards": "grpo.scale_rewards", "temperature": "grpo.temperature",
    "top_k": "grpo.top_k", "max_completion_length": "grpo.max_completion_length", "reward_weights": "reward_weights",
    "max_grad_norm": "grpo.max_grad_norm", "weight_decay": "grpo.weight_decay", "bf16": "grpo.bf16",
    "gradient_checkpointing": "grpo.gradient_checkpointing", "save_steps": "grpo.save_steps", "seed": "seed",
    "data_seed": "seed", "report_to": "grpo.report_to",
}
"""``GRPOConfig`` keywords that :func:`jrl_core.train.grpo_config` sets from the recipe, and where to set them."""


@cache
def _trainer_section() -> _Section:
    from trl import GRPOConfig  # imported here: a few seconds, paid only by recipes with a trainer section

    owned = {k: f"set by jrl from {where}; use {where} instead of trainer.{k}" for k, where in _TRAINER_OWNED.items()}
    examples = {"use_vllm": True, **{k: v for k, v in _defaults(GRPOConfig).items() if k not in {*owned, "use_vllm"}}}
    return _Section("trainer", "trl.GRPOConfig keyword", _hints(GRPOConfig), {}, examples, reserved=owned,
                    drop_none=False)


@cache
def _top() -> _Section:
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(Experiment)}
    rules = {
        "name": _NON_EMPTY, "model": _NON_EMPTY, "scale": _one_of(SCALES), "photo_source": _NON_EMPTY,
        "question_type": _one_of(QUESTION_TYPES), "mode": _one_of(MODES), "rewards": _each(_one_of(REWARDS)),
        "reward_weights": _each(_range(), "finite"), "algorithm": _one_of(ALGORITHMS), "sft_data": _one_of(SFT_DATA),
        "n_test": _AT_LEAST_1, "eval_max_new_tokens": _NON_NEGATIVE, "dtype": _one_of(DTYPES), "seed": _NON_NEGATIVE,
    }
    defaults.update(rewards=["accuracy", "format"], reward_weights=[1.0, 0.5])
    return _Section("experiment", "Experiment field", _hints(Experiment), rules, defaults)


def _section(name: str) -> _Section:
    return _trainer_section() if name == "trainer" else _sections()[name]


def _holds_str(top: str, sub: str = "") -> bool:
    """Whether ``top`` (or key ``sub`` of section ``top``) is a string field (``str`` or ``str | None``),
    whose YAML scalars stay text: ``name: no`` is the name "no", not False."""
    if not sub:
        tp = _top().types.get(top)
    elif top in SECTIONS:
        tp = _section(top).types.get(sub)
    else:
        return False
    return tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                         and set(typing.get_args(tp)) == {str, type(None)})


def _as_text(parsed: Any, raw: str, *, keep_none: bool) -> Any:
    """For a string field: the YAML value if it is a string, list or mapping (or None when None means
    "the default"), else the raw text the user typed."""
    if isinstance(parsed, (str, list, dict)) or (parsed is None and keep_none):
        return parsed
    return raw.strip()


# --- the resolved plan -------------------------------------------------------------------------------

@dataclass(frozen=True)
class KLSchedule:
    """GRPO-D's KL coefficient schedule (OThink-MR1 Eq. 3; :func:`jrl_core.schedules.grpo_d_beta`).

    Attributes:
        beta_min, beta_max: 0 ≤ β_min ≤ β_max.
        explore_fraction: share of the steps over which β falls to β_min, in (0, 1) (paper: 0.3).
        preset: the :data:`jrl_core.schedules.GRPO_D_PRESETS` name the βs came from, or None.
    """

    beta_min: float
    beta_max: float
    explore_fraction: float = 0.3
    preset: str | None = None

    def callback(self, total_steps: int) -> schedules.KLScheduleCallback:
        """The trainer callback for a run of ``total_steps`` (> 0) optimizer steps."""
        return schedules.KLScheduleCallback.grpo_d(total_steps, beta_min=self.beta_min, beta_max=self.beta_max,
                                                   explore_fraction=self.explore_fraction)


@dataclass(frozen=True)
class Plan:
    """What an :class:`Experiment` resolves to, once, at construction: typed settings the runner reads.

    Attributes:
        curriculum: puzzle sizes by global step (one stage for a fixed ``size``).
        rewards, reward_weights: reward names (``jrl_core.rewards.REWARDS``) and their weights.
        grpo: the scale's preset + ``grpo`` overrides + reward weights + seed (+ GRPO-D's starting β).
        sft: ``SFTSettings`` with ``sft`` overrides (seed = the experiment's unless ``sft.seed``).
        lora: ``LoraSettings`` or None (full fine-tuning).
        kl: the GRPO-D schedule, or None (constant β = ``grpo.beta``).
        nano: the nano checkpoint's ``NanoConfig`` when ``model == "nano"``, else None.
        trainer: extra ``trl.GRPOConfig`` keywords, type-checked.
    """

    curriculum: schedules.Curriculum
    rewards: tuple[str, ...]
    reward_weights: tuple[float, ...]
    grpo: train.GRPOSettings
    sft: train.SFTSettings
    lora: train.LoraSettings | None
    kl: KLSchedule | None
    nano: NanoConfig | None
    trainer: dict

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) of the resolved settings, e.g. for ``jrl train --dry-run``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["curriculum"] = {"sizes": [f"{m}x{n}" for m, n in self.curriculum.sizes],
                           "boundaries": list(self.curriculum.boundaries)}
        for k in ("grpo", "sft", "lora", "kl", "nano"):
            d[k] = None if d[k] is None else dataclasses.asdict(d[k])
        return _plain(d)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


@dataclass(frozen=True)
class Experiment:
    """A training recipe (every field has a default that runs at nano scale on a laptop CPU).

    Construction checks every field and section key for type and range and resolves the typed
    settings once (:attr:`plan`); a bad value raises :class:`RecipeError` (a ``ValueError``) naming
    the field, the value, what is allowed and a fix. Section values of None mean "the preset's value".

    Attributes:
        name: label used in reports and run folders (non-empty).
        model: ``"nano"`` (the offline nano Qwen2.5-VL), a hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) or a
            local folder (generic path: ``AutoProcessor`` + ``AutoModelForImageTextToText``).
        scale: ``"nano"`` or ``"paper"``: which GRPO preset (``train.NANO`` / ``train.PAPER``) the
            ``grpo`` overrides apply to.
        photo_source: ``"skimage"`` (bundled photos), ``"packages"`` (skimage's plus five photos shipped in
            installed packages, same test split; ``jrl_core.images.PACKAGE_PHOTOS``), a folder of images, or a
            COCO data dir; any of them with ``"+synthetic[:N]"`` appended adds N procedural pictures to the train
            split only (``jrl_core.images.SYNTHETIC_TRAIN_PICTURES``), ``"+tiling[:N]"`` N procedural walls
            (``jrl_core.synthetic.tiling``; ``images.split_procedural``). Default ``"skimage+synthetic+tiling"``
            (session 14, 42 walls since session 15; session 12's was ``"skimage+synthetic"``): the 14 training
            photos plus 42 dead-leaves pictures and 42 walls, the 5 test photos held out (nano scale; the paper recipes train on COCO,
            ``photo_source: data``).
        size: training puzzle size ``"mxn"`` (m, n ≥ 1, m·n ≥ 2; Jigsaw-R1 trains 2x1 by default);
            ignored when ``curriculum`` is given.
        curriculum: e.g. ``"3x1:1000,4x1"`` (size, step where the next starts; ``schedules.Curriculum``);
            ``""`` = fixed ``size``.
        question_type: ``pair``/``full``/``single``/``multiple``/``box`` (protocol §2; ``puzzles.QUESTION_TYPES``).
        mode: thinking-mode name (``jrl_core.modes.MODES``): ``thinking``, ``non_thinking``,
            ``no_thinking_rl`` (the equality reward), ``cls_rl_thinking``, ``think_after_answer``, …
        shuffle_mn: swap m and n with probability 0.5 per puzzle (paper §5 RQ1).
        rewards: reward names (``jrl_core.rewards.REWARDS``); empty = the mode's defaults.
        reward_weights: one finite weight per reward (the recipe's or the mode's); empty = the mode's
            defaults (Jigsaw-R1: 1.0 + 0.5), or 1.0 each for explicit ``rewards``.
        algorithm: ``grpo`` (RL), ``sft`` (supervised) or ``sft_grpo`` (SFT cold start, then GRPO).
        grpo: overrides of :class:`jrl_core.train.GRPOSettings` fields (e.g. ``{steps: 50}``); not
            ``seed``/``reward_weights``, which come from the top-level fields.
        sft: overrides of :class:`jrl_core.train.SFTSettings` fields.
        sft_data: ``gold`` (ground-truth answers; the paper's non-thinking SFT), ``rejection``
            (rejection-sampled chains that reach the right answer; the paper's thinking SFT) or
            ``auto`` (rejection for thinking modes, gold otherwise).
        kl_schedule: ``{}`` = constant β (``grpo.beta``); ``{kind: grpo_d, preset: counting}`` or
            ``{kind: grpo_d, beta_min: …, beta_max: …, explore_fraction: 0.3}`` = OThink-MR1 Eq. 3.
        lora: ``None`` = full fine-tuning; a dict of :class:`jrl_core.train.LoraSettings` fields = LoRA.
        freeze_vision: keep the vision tower frozen (full fine-tuning or LoRA).
        n_test: held-out puzzles per evaluation, ≥ 1 (the paper: 1,000).
        dtype: weights dtype at load (``auto``/``bf16``/``fp32``/``fp16``). ``auto`` keeps the checkpoint's
            (bf16 for Qwen); without DeepSpeed (which keeps fp32 master weights) use ``fp32`` with
            ``grpo.bf16: true``, since AdamW steps at lr 1e-6 are mostly lost to bf16 rounding.
        eval_max_new_tokens: generation budget at evaluation, ≥ 0; 0 = the GRPO completion length.
        nano: overrides of :class:`jrl_core.nano.NanoConfig` when ``model == "nano"``.
        trainer: extra ``trl.GRPOConfig`` keywords (e.g. ``use_vllm: true, vllm_mode: colocate``); not the
            ones set from ``grpo`` (the error names the ``grpo`` field to use instead).
        seed: seeds data, sampling and initialisation; an int ≥ 0.
    """

    name: str = "nano_2x1_pair"
    model: str = "nano"
    scale: str = "nano"
    photo_source: str = "skimage+synthetic+tiling"
    size: str = "2x1"
    curriculum: str = ""
    question_type: str = "pair"
    mode: str = "non_thinking"
    shuffle_mn: bool = False
    rewards: tuple[str, ...] = ()
    reward_weights: tuple[float, ...] = ()
    algorithm: str = "grpo"
    grpo: dict = field(default_factory=dict)
    sft: dict = field(default_factory=dict)
    sft_data: str = "auto"
    kl_schedule: dict = field(default_factory=dict)
    lora: dict | None = None
    freeze_vision: bool = False
    n_test: int = 300
    eval_max_new_tokens: int = 0
    dtype: str = "auto"
    nano: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        top = _top()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "lora" and value is not None and not isinstance(value, Mapping):
                raise RecipeError(f"lora={value!r}: expected null (full fine-tuning) or a mapping of LoRA settings "
                                  "(jrl_core.train.LoraSettings fields); use e.g. lora={r: 16, alpha: 32}, or "
                                  "lora={} for the defaults.", field="lora")
            if f.name == "lora":
                value = None if value is None else _sections()["lora"].check(value)
            elif f.name in SECTIONS:
                empty = value is None or (isinstance(value, Mapping) and not value)
                value = {} if empty else _section(f.name).check(value)  # trl is imported only for a trainer section
            else:
                value = _check(f.name, value, top.types[f.name], top.rules.get(f.name), top.examples.get(f.name))
            object.__setattr__(self, f.name, value)
        object.__setattr__(self, "_plan", self._resolve())

    def _resolve(self) -> Plan:
        cur = _curriculum(self.size, self.curriculum)
        for m, n in cur.sizes:
            try:
                PuzzleSpec(m=m, n=n, question_type=self.question_type, shuffle_mn=self.shuffle_mn, mode=self.mode)
            except ValueError as e:
                where = "curriculum" if self.curriculum else "size"
                raise RecipeError(f"question_type={self.question_type!r} with {where}={getattr(self, where)!r} "
                                  f"and mode={self.mode!r}: {e}", field="question_type") from None
        mode = get_mode(self.mode)
        names = self.rewards or tuple(mode.rewards)
        if self.reward_weights and len(self.reward_weights) != len(names):
            source = "rewards" if self.rewards else f"the default rewards of mode {self.mode!r}"
            raise RecipeError(f"reward_weights={list(self.reward_weights)}: expected {len(names)} weight(s), one per "
                              f"reward of {source} {list(names)}; give one weight per reward, or none for the "
                              "defaults.", field="reward_weights")
        weights = self.reward_weights or (tuple(mode.weights) if not self.rewards else (1.0,) * len(names))
        kl = _kl_schedule(self.kl_schedule)
        over = {**self.grpo, "seed": self.seed, "reward_weights": tuple(weights)}
        if kl is not None:
            over.setdefault("beta", kl.beta_min)  # the trainer starts from a KL term; the callback sets β each step
            if over["beta"] == 0:
                raise RecipeError("kl_schedule: GRPO-D starts the trainer at grpo.beta (default beta_min) = 0, and "
                                  "TRL builds no reference model for β = 0; set kl_schedule.beta_min > 0 or "
                                  "grpo.beta > 0 (e.g. grpo.beta=0.04).", field="kl_schedule.beta_min")
        grpo = train.preset(self.scale, think=mode.think, **over)
        _check_batch(grpo)
        sft = dataclasses.replace(train.SFTSettings(seed=self.seed), **self.sft)
        lora = None if self.lora is None else train.LoraSettings(**{"freeze_vision": self.freeze_vision, **self.lora})
        nano = NanoConfig(**self.nano)
        _check_nano(nano)
        return Plan(curriculum=cur, rewards=tuple(names), reward_weights=tuple(weights), grpo=grpo, sft=sft,
                    lora=lora, kl=kl, nano=nano if self.model == "nano" else None, trainer=dict(self.trainer))

    # --- derived settings ----------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """The typed settings resolved at construction (:class:`Plan`)."""
        return self._plan  # type: ignore[attr-defined]

    @property
    def think(self) -> bool:
        """Whether the mode answers inside tags (thinking-style completions)."""
        return get_mode(self.mode).think

    def curriculum_(self) -> schedules.Curriculum:
        """The puzzle-size schedule (a one-stage curriculum for a fixed ``size``)."""
        return self.plan.curriculum

    def reward_setup(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """``(reward names, weights)``: the recipe's, else the thinking mode's defaults (protocol §5)."""
        return self.plan.rewards, self.plan.reward_weights

    def grpo_settings(self) -> train.GRPOSettings:
        """:class:`train.GRPOSettings` = the scale's preset + ``grpo`` overrides + reward weights + seed."""
        return self.plan.grpo

    def sft_settings(self) -> train.SFTSettings:
        """:class:`train.SFTSettings` with the ``sft`` overrides (checked at construction)."""
        return self.plan.sft

    def lora_settings(self) -> train.LoraSettings | None:
        """:class:`train.LoraSettings` or None (full fine-tuning)."""
        return self.plan.lora

    def kl_callback(self, total_steps: int) -> schedules.KLScheduleCallback | None:
        """A new GRPO-D callback (OThink-MR1 Eq. 3) for a ``kl_schedule``, or None for constant β.

        Raises ``ValueError`` when ``total_steps`` is not an int > 0.
        """
        return None if self.plan.kl is None else self.plan.kl.callback(total_steps)

    def puzzle_spec(self, m: int | None = None, n: int | None = None):
        """The :class:`jrl_core.puzzles.PuzzleSpec` (first curriculum size unless m, n given)."""
        m0, n0 = self.curriculum_().sizes[0]
        return PuzzleSpec(m=m or m0, n=n or n0, question_type=self.question_type, shuffle_mn=self.shuffle_mn,
                          mode=self.mode)

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-ready): lists for tuples; ``Experiment(**exp.to_dict()) == exp``."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _curriculum(size: str, curriculum: str) -> schedules.Curriculum:
    try:
        one = schedules.Curriculum.parse(size)
    except ValueError:
        one = None
    if one is None or len(one.sizes) != 1:
        raise RecipeError(f"size={size!r}: expected one puzzle size 'mxn' with ints m, n >= 1 and m*n >= 2 "
                          "(a schedule goes in curriculum); use e.g. size=2x1.", field="size")
    if not curriculum:
        return one
    try:
        return schedules.Curriculum.parse(curriculum)
    except ValueError as e:
        raise RecipeError(f"curriculum={curriculum!r}: expected sizes 'mxn' separated by commas, each but the last "
                          f"followed by ':' and the global step where the next starts ({e}); use e.g. "
                          "curriculum=\"3x1:1000,4x1\", or \"\" for the fixed size.", field="curriculum") from None


def _kl_schedule(ks: dict) -> KLSchedule | None:
    if not ks:
        return None
    frac = ks.get("explore_fraction", 0.3)
    if "preset" in ks:
        if "beta_min" in ks or "beta_max" in ks:
            raise RecipeError(f"kl_schedule={ks}: give either preset or beta_min and beta_max, not both.",
                              field="kl_schedule.preset")
        lo, hi = schedules.GRPO_D_PRESETS[ks["preset"]]
        return KLSchedule(float(lo), float(hi), frac, ks["preset"])
    if "beta_min" not in ks or "beta_max" not in ks:
        raise RecipeError(f"kl_schedule={ks}: GRPO-D needs preset (one of {sorted(schedules.GRPO_D_PRESETS)}) or "
                          "both beta_min and beta_max; use e.g. kl_schedule={kind: grpo_d, preset: counting}, "
                          "or kl_schedule={} for a constant beta.", field="kl_schedule")
    if ks["beta_min"] > ks["beta_max"]:
        raise RecipeError(f"kl_schedule.beta_min={ks['beta_min']} > kl_schedule.beta_max={ks['beta_max']}: "
                          "expected beta_min <= beta_max; swap them.", field="kl_schedule.beta_min")
    return KLSchedule(ks["beta_min"], ks["beta_max"], frac)


def _check_batch(s: train.GRPOSettings) -> None:
    """The batch arithmetic of :func:`jrl_core.train.grpo_config`, checked at load (``WORLD_SIZE`` processes)."""
    total = s.completions_per_step()
    try:
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        world = 1
    per_device = s.per_device_batch or total // world
    if per_device < 1 or total % (per_device * world):
        raise RecipeError(
            f"grpo.per_device_batch={s.per_device_batch}: {per_device} completions per device × {world} process(es) "
            f"must divide prompts_per_step × num_generations = {s.prompts_per_step} × {s.num_generations} = {total}; "
            "pick a divisor (e.g. grpo.per_device_batch=4 on 8 GPUs for the paper's 512), or 0 for the whole step.",
            field="grpo.per_device_batch")


def _check_nano(c: NanoConfig) -> None:
    unit = c.patch_size * c.merge_size
    pairs = [("image_size", c.image_size, unit, f"patch_size × merge_size = {unit}"),
             ("hidden_size", c.hidden_size, c.num_heads, f"num_heads = {c.num_heads}"),
             ("num_heads", c.num_heads, c.num_kv_heads, f"num_kv_heads = {c.num_kv_heads}"),
             ("vision_hidden", c.vision_hidden, c.vision_heads, f"vision_heads = {c.vision_heads}")]
    for name, value, divisor, what in pairs:
        if value % divisor:
            raise RecipeError(f"nano.{name}={value}: expected a multiple of {what}; use e.g. "
                              f"nano.{name}={max(divisor, value // divisor * divisor)}.", field=f"nano.{name}")


def nano_config(overrides: Mapping[str, Any] | None = None) -> NanoConfig:
    """A :class:`NanoConfig` from field overrides, each type- and range-checked as a recipe's ``nano`` section is.

    Args:
        overrides: NanoConfig field -> value (``None`` or empty: the defaults).
    Returns:
        The config (the shipped recipe's defaults for fields not given).
    Raises:
        RecipeError: an unknown field, a value of the wrong type or out of range (``pretrain_token_noise=2``,
            ``pretrain_token_noise_vocab="digits"``), or sizes that do not divide; the message names the field
            and a value that works, before any build step runs.
    """
    cfg = NanoConfig(**_section("nano").check(dict(overrides or {})))
    _check_nano(cfg)
    return cfg


# --- overrides and recipe files ----------------------------------------------------------------------

def _suggest(name: str) -> str:
    """' (did you mean …?)' for a mistyped field: a top-level field, else a section key (``grpo.steps``)."""
    fields = [f.name for f in dataclasses.fields(Experiment)]
    keyed = {f"{sec}.{k}": k for sec, s in _sections().items() for k in s.types}
    exact = [dotted for dotted, k in keyed.items() if k == name]
    close = exact or difflib.get_close_matches(name, fields, n=1, cutoff=0.75)
    if not close:
        bare = difflib.get_close_matches(name, set(keyed.values()), n=1, cutoff=0.75)
        close = [dotted for dotted, k in keyed.items() if bare and k == bare[0]]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _parse_value(key: str, text: str, as_str: bool) -> Any:
    """An override's text as YAML; for a string field a YAML scalar stays the text (``name=no`` is "no")."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        if as_str:
            return text.strip()
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"override {key}={text}: the value is not valid YAML ({problem}); write lists as [a, b] "
                          "and mappings as {k: v}, and quote strings with ':' or '#'.", field=key) from None
    return _as_text(value, text, keep_none="." in key) if as_str else value


def apply_overrides(exp: Experiment, overrides: Iterable[str] | Mapping | None) -> Experiment:
    """``["grpo.steps=10", "mode=thinking"]`` or ``{"grpo.steps": 10}`` -> a new, validated Experiment.

    Dotted keys set a key inside a section (``grpo``, ``sft``, ``kl_schedule``, ``lora``, ``nano``,
    ``trainer``); string values are parsed as YAML, except that a string field keeps the text of a
    scalar (``name=no`` is the name "no", not False; ``size=0x0`` is "0x0", not the hex int 0).

    Raises:
        RecipeError (a ``ValueError``): an override without ``=``, an unknown field or section key,
            a dotted key into a non-section field, a value that is not YAML, or any value the
            :class:`Experiment` checks reject; the message names the field and the fix.
    """
    if not overrides:
        return exp
    if isinstance(overrides, str):
        raise RecipeError(f"overrides={overrides!r}: expected a list of 'KEY=VALUE' strings or a mapping; "
                          f"use e.g. [{overrides!r}].")
    if isinstance(overrides, Mapping):
        items = [(str(k), v) for k, v in overrides.items()]
    else:
        items = []
        for o in overrides:
            if not isinstance(o, str) or "=" not in o:
                raise RecipeError(f"override {o!r} is not KEY=VALUE; write e.g. grpo.steps=10 "
                                  "(jrl train --set grpo.steps=10).")
            key, text = o.split("=", 1)
            items.append((key.strip(), text))
    d = exp.to_dict()
    for key, value in items:
        top, _, sub = key.partition(".")
        if top not in d:
            raise RecipeError(f"override {key!r}: unknown field {top!r}{_suggest(top)}; fields: {sorted(d)}",
                              field=top)
        if sub and top not in SECTIONS:
            raise RecipeError(f"override {key!r}: {top} is not a section but {_describe(_top().types[top])}; "
                              f"write {top}=VALUE, e.g. {top}={_inline(_top().examples[top])}.", field=top)
        if isinstance(value, str):
            value = _parse_value(key, value, _holds_str(top, sub))
        if not sub:
            d[top] = value
            continue
        current = d[top]
        if current is not None and not isinstance(current, Mapping):
            raise RecipeError(f"override {key!r}: {top}={current!r} is not a mapping; set the whole section "
                              f"with {top}={{{sub}: …}} or drop the earlier {top}=… override.", field=top)
        d[top] = {**(current or {}), sub: value}
    return Experiment(**d)


def known_recipes() -> list[str]:
    """Recipe names under :data:`RECIPES_DIR` (``"nano/rq1_2x1_pair"``, …), sorted."""
    return sorted(str(q.relative_to(RECIPES_DIR).with_suffix("")) for q in RECIPES_DIR.rglob("*.yaml")
                  if "accelerate" not in q.relative_to(RECIPES_DIR).parts)


def recipe_path(path_or_name: str | Path) -> Path:
    """The YAML file of a recipe: an existing file, else ``recipes/<name>.yaml``.

    Raises:
        FileNotFoundError: no such file or recipe name (the message lists the recipes that exist).
        RecipeError: the path is a folder (the message lists the recipes inside it).
    """
    p = Path(path_or_name).expanduser()
    folder = p if p.is_dir() else RECIPES_DIR / str(path_or_name)
    if p.is_file():
        return p
    named = RECIPES_DIR / f"{path_or_name}.yaml"
    if named.is_file():
        return named
    if folder.is_dir():
        inside = [q.resolve() for q in sorted(folder.rglob("*.yaml"))]
        shown = [str(q.relative_to(RECIPES_DIR).with_suffix("")) if q.is_relative_to(RECIPES_DIR) else str(q)
                 for q in inside if "accelerate" not in q.parts]
        pick = f"pass one of its recipes: {', '.join(shown)}" if shown else "it holds no .yaml recipe"
        raise RecipeError(f"recipe {str(path_or_name)!r} is a folder, not a recipe file; {pick}.")
    known = known_recipes()
    if p.suffix in (".yaml", ".yml") or p.is_absolute():
        where = "" if p.parent.is_dir() else f" (the folder {p.parent} does not exist either)"
        raise FileNotFoundError(f"recipe file {str(path_or_name)!r} not found{where}; pass an existing .yaml file "
                                f"or a recipe name: {known}")
    close = difflib.get_close_matches(str(path_or_name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise FileNotFoundError(f"recipe {str(path_or_name)!r} not found: no such file and no {named}{hint}; "
                            f"known recipes: {known}")


def _read_recipe(p: Path) -> tuple[dict, dict[str, int]]:
    """A recipe file's mapping (string fields keep their YAML text) and the line of each key (1-based)."""
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"recipe {p}: cannot be read ({e}).") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(x for x in (e.context, e.problem) if x)
        raise RecipeError(f"recipe {p}:{where}: malformed YAML ({what}); fix the syntax there "
                          "(e.g. 'key: value', a space after ':', closed brackets and quotes).") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {p}: malformed YAML ({' '.join(str(e).split())}).") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise RecipeError(f"recipe {p}: the top level must be a mapping of Experiment fields (name: …, grpo: "
                          f"{{steps: …}}), not {type(data).__name__}.")
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        top = key_node.value
        if top in lines:
            raise RecipeError(f"recipe {p}: key {top!r} appears twice (lines {lines[top]} and "
                              f"{key_node.start_mark.line + 1}); keep one.", field=top)
        lines[top] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.ScalarNode) and _holds_str(top):
            data[top] = _as_text(data.get(top), value_node.value, keep_none=False)
        if isinstance(value_node, yaml.MappingNode) and isinstance(data.get(top), dict):
            for sub_key, sub_value in value_node.value:
                if not isinstance(sub_key, yaml.ScalarNode):
                    continue
                sub = sub_key.value
                lines[f"{top}.{sub}"] = sub_key.start_mark.line + 1
                if isinstance(sub_value, yaml.ScalarNode) and sub in data[top] and _holds_str(top, sub):
                    data[top][sub] = _as_text(data[top][sub], sub_value.value, keep_none=True)
    return data, lines


def load_recipe(path_or_name: str | Path | None = None, overrides: Iterable[str] | Mapping | None = None) -> Experiment:
    """Read a YAML recipe (a path, or a name under ``recipes/`` without ``.yaml``), apply ``overrides``.

    ``None`` gives the defaults. Every value is checked at load (see :class:`Experiment`).

    Raises:
        FileNotFoundError: no such recipe (the message lists the recipes that exist).
        RecipeError (a ``ValueError``): a folder instead of a file, malformed YAML (file, line and
            column), an unknown key (naming it and the known ones), or a bad value (the file, the
            line, the field, the value and the fix); see also :func:`apply_overrides`.
    """
    if path_or_name is None:
        return apply_overrides(Experiment(), overrides)
    p = recipe_path(path_or_name)
    data, lines = _read_recipe(p)
    known = [f.name for f in dataclasses.fields(Experiment)]
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise RecipeError(f"recipe {p}, line {lines.get(unknown[0], '?')}: unknown key(s) {unknown}"
                          f"{_suggest(unknown[0])}; "
                          f"known: {sorted(known)}", field=unknown[0])
    try:
        exp = Experiment(**data)
    except RecipeError as e:
        line = lines.get(e.field or "") or lines.get((e.field or "").partition(".")[0])
        raise RecipeError(f"recipe {p}{f', line {line}' if line else ''}: {e}", field=e.field) from None
    return apply_overrides(exp, overrides)


# --- pre-flight checks outside the recipe ------------------------------------------------------------

def _can_connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether a TCP connection to host:port opens within ``timeout`` seconds (DNS lookup included)."""
    import socket

    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append((True, ""))
        except OSError as e:
            result.append((False, f"{type(e).__name__}: {e}"))

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else (False, f"no answer within {timeout:g} s")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def check_model_reachable(model: str, *, timeout: float = 2.0) -> str:
    """Fail in seconds when ``model`` cannot be opened, instead of after minutes of hub retries.

    Call before loading (``jrl train`` does). Network is probed only for a hub id that is neither a
    local folder nor in the Hugging Face cache: a TCP connection to the hub (``HF_ENDPOINT``, default
    huggingface.co:443, or the ``HTTPS_PROXY`` host) within ``timeout`` seconds.

    Args:
        model: ``"nano"``, a local folder, or a hub id (``org/name``).
        timeout: seconds to wait for the hub connection (> 0).

    Returns:
        Where the model will come from: ``"nano"``, ``"local"``, ``"cache"`` or ``"hub"``.

    Raises:
        RecipeError (field ``model``): a path that does not exist or is a file, a string that is
            neither a folder nor a hub id, or a hub id not in the cache while ``HF_HUB_OFFLINE`` is set
            or the hub is unreachable; the message says to pass a local folder or set ``HF_HUB_OFFLINE=1``.
    """
    if model == "nano":
        return "nano"
    p = Path(model).expanduser()
    if p.is_dir():
        return "local"
    if p.exists():
        raise RecipeError(f"model={model!r} is a file; pass the folder written by save_pretrained "
                          "(with config.json and the weights), a hub id, or 'nano'.", field="model")
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise RecipeError(f"model={model!r}: no such folder, and not a hub id ('org/name'); pass 'nano', an "
                          "existing folder written by save_pretrained, or a hub id such as "
                          "Qwen/Qwen2.5-VL-3B-Instruct.", field="model") from None
    if model.startswith((".", "~")):
        raise RecipeError(f"model={model!r}: no such folder; pass an existing folder written by save_pretrained, "
                          "a hub id, or 'nano'.", field="model")
    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return "cache"
    cache_dir = constants.HF_HUB_CACHE
    fix = (f"pass a local folder written by save_pretrained (--set model=PATH), or download it where there is "
           f"network (hf download {model}) into the cache and set HF_HUB_OFFLINE=1")
    if constants.HF_HUB_OFFLINE or _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
        raise RecipeError(f"model={model!r} is not in the Hugging Face cache ({cache_dir}) and HF_HUB_OFFLINE is "
                          f"set, so it cannot be downloaded; {fix}.", field="model")
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    ok, why = _can_connect(host, port, timeout)
    if not ok:
        raise RecipeError(f"model={model!r} is not a local folder, not in the Hugging Face cache ({cache_dir}), and "
                          f"the hub is unreachable ({host}:{port}: {why}); {fix}.", field="model")
    return "hub"


def notebook_parameters(notebook: str | Path) -> dict[str, str]:
    """The parameters a notebook declares in its ``parameters`` cell: name -> default (source text).

    Read with ``papermill.inspect_notebook`` (no kernel is started). Raises ``FileNotFoundError`` for
    a missing notebook.
    """
    import papermill

    if not Path(notebook).is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat's MissingIDFieldWarning
        try:
            found = papermill.inspect_notebook(str(notebook))
        except ValueError:  # no kernelspec in the notebook: read it as Python, as jrl run executes it
            from papermill.inspection import _infer_parameters
            from papermill.iorw import load_notebook_node

            params = _infer_parameters(load_notebook_node(str(notebook)), name="python3", language="python")
            found = {p.name: p._asdict() for p in params}
    return {name: str(info.get("default", "")) for name, info in found.items()}


def notebook_overrides(notebook: str | Path, pairs: Iterable[tuple[str, str]],
                       reserved: Iterable[str] = ("run_dir",)) -> dict:
    """``-p NAME VALUE`` pairs -> papermill parameters, checked against the notebook's parameters cell.

    VALUE is parsed as YAML, except for a parameter whose default is a string literal, which keeps
    the text of a YAML scalar (``-p model no`` is "no").

    Raises:
        RecipeError (a ``ValueError``): a name the ``parameters`` cell does not declare (naming it and
            the known ones), a reserved name (``run_dir``: set by the runner), or a value that is not YAML.
        FileNotFoundError: no such notebook.
    """
    declared = notebook_parameters(notebook)
    reserved = set(reserved)
    known = [k for k in declared if k not in reserved]
    out: dict = {}
    for name, text in pairs:
        if name in reserved:
            raise RecipeError(f"-p {name}: {name} is set by the runner (jrl run --reports/--name); drop it.", field=name)
        if name not in declared:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(known) if known else "none: it has no cell tagged 'parameters'"
            raise RecipeError(f"-p {name}: unknown parameter of {Path(notebook).name}{hint}; known: {listed}.",
                              field=name)
        try:
            is_str = isinstance(ast.literal_eval(declared[name]), str)
        except (ValueError, SyntaxError):
            is_str = False
        out[name] = _parse_value(f"-p {name}", text, is_str) if isinstance(text, str) else text
    return out
