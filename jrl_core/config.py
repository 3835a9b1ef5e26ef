"""Experiment configuration: the :class:`Experiment` recipe, YAML recipes and ``--set`` overrides.

An :class:`Experiment` names everything a training comparison varies (Jigsaw-R1 §4-5, No-Thinking-RL,
OThink-MR1): the model, the photos, the puzzle sizes or curriculum, the question type, the thinking mode,
the rewards and their weights, the algorithm (GRPO, SFT, or SFT then GRPO: the cold start of Finding 5),
the GRPO and SFT settings, the KL schedule (constant β or GRPO-D), LoRA, and the seed. Recipes are YAML
files under ``recipes/`` holding any subset of the fields (``recipes/nano/*.yaml`` for 2 CPU cores,
``recipes/paper/*.yaml`` for protocol §6 on GPUs); ``load_recipe("paper/qwen2.5-vl-3b_2x1_pair_nothink",
overrides=["grpo.steps=10"])`` reads one. :mod:`jrl_core.experiment` runs it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jrl_core import schedules, train
from jrl_core.modes import get_mode

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
"""Where recipe names (``"nano/rq1_2x1_pair"``) resolve to ``recipes/<name>.yaml``."""

ALGORITHMS = ("grpo", "sft", "sft_grpo")


@dataclass(frozen=True)
class Experiment:
    """A training recipe (every field has a default that runs at nano scale on a laptop CPU).

    Attributes:
        name: label used in reports and run folders.
        model: ``"nano"`` (the offline nano Qwen2.5-VL), a hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) or a
            local folder (generic path: ``AutoProcessor`` + ``AutoModelForImageTextToText``).
        scale: ``"nano"`` or ``"paper"``: which GRPO preset (``train.NANO`` / ``train.PAPER``) the
            ``grpo`` overrides apply to.
        photo_source: ``"skimage"`` (bundled photos), a folder of images, or a COCO data dir.
        size: training puzzle size ``"mxn"`` (Jigsaw-R1 trains 2x1 by default); ignored when
            ``curriculum`` is given.
        curriculum: e.g. ``"3x1:1000,4x1"`` (size, step where the next starts; ``schedules.Curriculum``);
            ``""`` = fixed ``size``.
        question_type: ``pair``/``full``/``single``/``multiple``/``box`` (protocol §2).
        mode: thinking-mode name (``jrl_core.modes.MODES``): ``thinking``, ``non_thinking``,
            ``no_thinking_rl`` (the equality reward), ``cls_rl_thinking``, ``think_after_answer``, …
        shuffle_mn: swap m and n with probability 0.5 per puzzle (paper §5 RQ1).
        rewards: reward names (``jrl_core.rewards.REWARDS``); empty = the mode's defaults.
        reward_weights: matching weights; empty = the mode's defaults (Jigsaw-R1: 1.0 + 0.5).
        algorithm: ``grpo`` (RL), ``sft`` (supervised) or ``sft_grpo`` (SFT cold start, then GRPO).
        grpo: overrides of :class:`jrl_core.train.GRPOSettings` fields (e.g. ``{steps: 50}``).
        sft: overrides of :class:`jrl_core.train.SFTSettings` fields.
        sft_data: ``gold`` (ground-truth answers; the paper's non-thinking SFT), ``rejection``
            (rejection-sampled chains that reach the right answer; the paper's thinking SFT) or
            ``auto`` (rejection for thinking modes, gold otherwise).
        kl_schedule: ``{}`` = constant β (``grpo.beta``); ``{kind: grpo_d, preset: counting}`` or
            ``{kind: grpo_d, beta_min: …, beta_max: …, explore_fraction: 0.3}`` = OThink-MR1 Eq. 3.
        lora: ``None`` = full fine-tuning; a dict of :class:`jrl_core.train.LoraSettings` fields = LoRA.
        freeze_vision: keep the vision tower frozen (full fine-tuning or LoRA).
        n_test: held-out puzzles per evaluation (the paper: 1,000).
        dtype: weights dtype at load (``auto``/``bf16``/``fp32``). ``auto`` keeps the checkpoint's (bf16 for
            Qwen); without DeepSpeed (which keeps fp32 master weights) use ``fp32`` with ``grpo.bf16: true``,
            since AdamW steps at lr 1e-6 are mostly lost to bf16 rounding.
        eval_max_new_tokens: generation budget at evaluation; 0 = the GRPO completion length.
        nano: overrides of :class:`jrl_core.nano.NanoConfig` when ``model == "nano"``.
        trainer: extra ``GRPOConfig`` keywords (e.g. ``use_vllm: true, vllm_mode: colocate``).
        seed: seeds data, sampling and initialisation.
    """

    name: str = "nano_2x1_pair"
    model: str = "nano"
    scale: str = "nano"
    photo_source: str = "skimage"
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
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={self.algorithm!r}: use one of {ALGORITHMS}.")
        if self.sft_data not in ("auto", "gold", "rejection"):
            raise ValueError(f"sft_data={self.sft_data!r}: use 'auto', 'gold' or 'rejection'.")
        get_mode(self.mode)  # raises with the known names
        object.__setattr__(self, "rewards", tuple(self.rewards))
        object.__setattr__(self, "reward_weights", tuple(float(w) for w in self.reward_weights))
        if len(self.rewards) != len(self.reward_weights) and self.reward_weights:
            raise ValueError(f"rewards={self.rewards} and reward_weights={self.reward_weights} differ in length.")
        self.curriculum_()  # validates size / curriculum text

    # --- derived settings ----------------------------------------------------------------------
    @property
    def think(self) -> bool:
        """Whether the mode answers inside tags (thinking-style completions)."""
        return get_mode(self.mode).think

    def curriculum_(self) -> schedules.Curriculum:
        """The puzzle-size schedule (a one-stage curriculum for a fixed ``size``)."""
        return schedules.Curriculum.parse(self.curriculum or self.size)

    def reward_setup(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """``(reward names, weights)``: the recipe's, else the thinking mode's defaults (protocol §5)."""
        m = get_mode(self.mode)
        names = self.rewards or m.rewards
        weights = self.reward_weights or (m.weights if not self.rewards else (1.0,) * len(names))
        return tuple(names), tuple(weights)

    def grpo_settings(self) -> train.GRPOSettings:
        """:class:`train.GRPOSettings` = the scale's preset + ``grpo`` overrides + reward weights + seed."""
        _, weights = self.reward_setup()
        over = {**self.grpo, "seed": self.seed, "reward_weights": tuple(weights)}
        if self.kl_schedule and self.kl_schedule.get("kind", "grpo_d") == "grpo_d":
            lo, _ = self._beta_range()
            over.setdefault("beta", lo)  # the trainer starts from a KL term; the callback sets β each step
        return train.preset(self.scale, think=self.think, **over)

    def sft_settings(self) -> train.SFTSettings:
        """:class:`train.SFTSettings` with ``sft`` overrides; raises ``ValueError`` on an unknown field."""
        known = {f.name for f in dataclasses.fields(train.SFTSettings)}
        unknown = set(self.sft) - known
        if unknown:
            raise ValueError(f"unknown SFT setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(train.SFTSettings(seed=self.seed), **self.sft)

    def lora_settings(self) -> train.LoraSettings | None:
        """:class:`train.LoraSettings` or None (full fine-tuning)."""
        if self.lora is None:
            return None
        return train.LoraSettings(**{"freeze_vision": self.freeze_vision, **self.lora})

    def _beta_range(self) -> tuple[float, float]:
        ks = self.kl_schedule
        if "preset" in ks:
            if ks["preset"] not in schedules.GRPO_D_PRESETS:
                raise ValueError(f"kl_schedule.preset={ks['preset']!r}: use one of {sorted(schedules.GRPO_D_PRESETS)}.")
            return schedules.GRPO_D_PRESETS[ks["preset"]]
        try:
            return float(ks["beta_min"]), float(ks["beta_max"])
        except KeyError:
            raise ValueError("kl_schedule needs 'preset' or both 'beta_min' and 'beta_max'.") from None

    def kl_callback(self, total_steps: int) -> schedules.KLScheduleCallback | None:
        """The GRPO-D callback (OThink-MR1 Eq. 3) for a ``kl_schedule``, or None for constant β."""
        if not self.kl_schedule:
            return None
        kind = self.kl_schedule.get("kind", "grpo_d")
        if kind != "grpo_d":
            raise ValueError(f"kl_schedule.kind={kind!r}: only 'grpo_d' is implemented (or {{}} for constant β).")
        lo, hi = self._beta_range()
        return schedules.KLScheduleCallback.grpo_d(
            total_steps, beta_min=lo, beta_max=hi, explore_fraction=float(self.kl_schedule.get("explore_fraction", 0.3)))

    def puzzle_spec(self, m: int | None = None, n: int | None = None):
        """The :class:`jrl_core.puzzles.PuzzleSpec` (first curriculum size unless m, n given)."""
        from jrl_core.puzzles import PuzzleSpec

        m0, n0 = self.curriculum_().sizes[0]
        return PuzzleSpec(m=m or m0, n=n or n0, question_type=self.question_type, shuffle_mn=self.shuffle_mn,
                          mode=self.mode)

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-ready)."""
        d = dataclasses.asdict(self)
        d["rewards"], d["reward_weights"] = list(self.rewards), list(self.reward_weights)
        return d


def _coerce(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(exp: Experiment, overrides: list[str] | dict | None) -> Experiment:
    """``["grpo.steps=10", "mode=thinking"]`` or ``{"grpo.steps": 10}`` -> a new Experiment.

    Dotted keys set a key inside a dict field (``grpo``, ``sft``, ``kl_schedule``, ``lora``, ``nano``,
    ``trainer``); values are parsed as YAML. Raises ``ValueError`` naming an unknown field.
    """
    if not overrides:
        return exp
    items = overrides.items() if isinstance(overrides, dict) else (o.split("=", 1) for o in overrides)
    d = exp.to_dict()
    for key, value in items:
        value = _coerce(value) if isinstance(value, str) else value
        top, _, sub = str(key).partition(".")
        if top not in d:
            raise ValueError(f"override {key!r}: unknown field {top!r}; fields: {sorted(d)}")
        if sub:
            d[top] = dict(d[top] or {})
            d[top][sub] = value
        else:
            d[top] = value
    return Experiment(**d)


def load_recipe(path_or_name: str | Path | None = None, overrides: list[str] | dict | None = None) -> Experiment:
    """Read a YAML recipe (a path, or a name under ``recipes/`` without ``.yaml``), apply ``overrides``.

    ``None`` gives the defaults. Raises ``FileNotFoundError`` listing the recipes that exist, and
    ``ValueError`` for unknown keys (naming them and the known ones).
    """
    data: dict = {}
    if path_or_name is not None:
        p = Path(path_or_name)
        if not p.exists():
            p = RECIPES_DIR / f"{path_or_name}.yaml"
        if not p.exists():
            known = sorted(str(q.relative_to(RECIPES_DIR).with_suffix("")) for q in RECIPES_DIR.rglob("*.yaml")
                           if "accelerate" not in q.parts)
            raise FileNotFoundError(f"recipe {path_or_name!r} not found; known recipes: {known}")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"recipe {p}: top level must be a mapping of Experiment fields.")
    known = {f.name for f in dataclasses.fields(Experiment)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"recipe {path_or_name}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return apply_overrides(Experiment(**data), overrides)
