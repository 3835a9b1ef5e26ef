"""One experiment config, read by notebooks and the CLI alike, and the run that executes it.

An :class:`Experiment` names everything a training comparison varies (Jigsaw-R1 §4-5, No-Thinking-RL,
OThink-MR1): the model, the photos, the puzzle sizes or curriculum, the question type, the thinking mode,
the rewards and their weights, the algorithm (GRPO, SFT, or SFT then GRPO: the cold start of Finding 5),
the GRPO and SFT settings, the KL schedule (constant β or GRPO-D), LoRA, and the seed. Recipes are YAML
files under ``recipes/`` holding any subset of the fields (``recipes/nano/*.yaml`` for 2 CPU cores,
``recipes/paper/*.yaml`` for protocol §6 on GPUs); ``load_recipe("paper/qwen2.5-vl-3b_2x1_pair_nothink",
overrides=["grpo.steps=10"])`` reads one.

:func:`run_experiment` executes a recipe: build the model, evaluate it on the fixed held-out set, train
(SFT and/or GRPO through TRL), evaluate again, and write ``metrics.json`` plus the training logs (per-step
table, per-rollout completion log) into the run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jrl_core import schedules, train
from jrl_core.atomic import atomic_write_json
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


# --- running a recipe ------------------------------------------------------------------------------

def train_rows(exp: Experiment, n_rows: int, steps: int, *, split_seed: str = "train") -> list[dict]:
    """Training rows on the train photos, ``steps × prompts`` in step order, following the curriculum
    (a row's size is a function of its global step: resuming reproduces the same data)."""
    from jrl_core.images import load_photos, sample_views
    from jrl_core.puzzles import build_rows

    cur = exp.curriculum_()
    photos = load_photos(exp.photo_source, "train")
    views = sample_views(photos, n_rows, seed=1000 + exp.seed)
    per_step = max(1, n_rows // max(1, steps))
    rows = []
    for i, v in enumerate(views):
        m, n = cur.size_at(i // per_step)
        rows.extend(build_rows([v], exp.puzzle_spec(m, n), n_items=1, seed=f"{split_seed}:{exp.seed}:{i}"))
    return rows


def run_experiment(exp: Experiment, run_dir: str | Path, *, model=None, processor=None, test=None,
                   evaluate_before: bool = True) -> dict:
    """Execute ``exp``: evaluate, train (SFT and/or GRPO), evaluate; returns a result dict.

    Args:
        exp: the recipe.
        run_dir: output folder: ``sft/`` and ``grpo/`` (logs, ``completions.jsonl``, ``final/``),
            ``eval_before.csv``/``eval_after.csv``, ``metrics.json``.
        model, processor: an already-loaded model to start from (else ``exp.model`` is loaded).
        test: held-out rows (else ``evaluate.test_rows`` for the first curriculum size, ``exp.n_test``).
        evaluate_before: also score the starting model.
    Returns:
        ``{"before": summary|None, "after": summary, "grpo_log": DataFrame|None, "sft_log": …,
        "model": trained model, "processor": …, "eval_after": EvalResult, "rejection_acceptance": …}``.
    """
    import os

    from jrl_core import evaluate, nano

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main = os.environ.get("RANK", "0") == "0"  # under accelerate launch only rank 0 evaluates
    if model is None:
        model, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano), dtype=exp.dtype)
    settings = exp.grpo_settings()
    max_new = exp.eval_max_new_tokens or settings.max_completion_length
    test = test if test is not None else evaluate.test_rows(exp.puzzle_spec(), n_items=exp.n_test, seed=exp.seed,
                                                            source=exp.photo_source)
    out: dict = {"experiment": exp.to_dict(), "grpo_log": None, "sft_log": None, "before": None}
    if evaluate_before and main:
        before = evaluate.evaluate(model, processor, test, max_new_tokens=max_new, desc=f"{exp.name}: before")
        before.table.to_csv(run_dir / "eval_before.csv", index=False)
        out["before"] = before.summary()
    names, _ = exp.reward_setup()
    if exp.algorithm in ("sft", "sft_grpo"):
        sft = exp.sft_settings()
        rows = train_rows(exp, sft.steps * sft.batch_size, sft.steps, split_seed="sft")
        use_rejection = exp.sft_data == "rejection" or (exp.sft_data == "auto" and exp.think)
        completions = None
        if use_rejection:
            rows, completions, acc = train.rejection_sample(model, processor, rows, max_new_tokens=max_new,
                                                            seed=exp.seed)
            out["rejection_acceptance"] = acc
            if len(rows) < sft.batch_size:
                raise RuntimeError(f"rejection sampling kept {len(rows)} chains (acceptance {acc:.2f}); "
                                   "use sft_data: gold or more SFT rows.")
        sft_trainer, out["sft_log"] = train.train_sft(model, processor, train.sft_rows(rows, completions), sft,
                                                      run_dir / "sft", lora=exp.lora_settings(), save_final=False)
        model = train.merge_lora(sft_trainer.model) if exp.lora is not None else sft_trainer.model
    if exp.algorithm in ("grpo", "sft_grpo"):
        rows = train_rows(exp, settings.steps * settings.prompts_per_step, settings.steps)
        cb = exp.kl_callback(settings.steps)
        trainer, out["grpo_log"] = train.train_grpo(
            model, processor, rows, settings, run_dir / "grpo", reward_names=names, callbacks=[cb] if cb else None,
            lora=exp.lora_settings(), freeze_vision=exp.freeze_vision, save_final=True, **exp.trainer)
        model = trainer.model.get_base_model() if exp.lora is not None else trainer.model  # LoRA: merged by save_final
    if not main:
        return out
    after = evaluate.evaluate(model, processor, test, max_new_tokens=max_new, desc=f"{exp.name}: after")
    after.table.to_csv(run_dir / "eval_after.csv", index=False)
    out.update(after=after.summary(), eval_after=after, model=model, processor=processor)
    atomic_write_json(run_dir / "metrics.json", {k: out[k] for k in ("experiment", "before", "after")}
                      | {"rejection_acceptance": out.get("rejection_acceptance")})
    return out


def compare_arms(arms: dict[str, Experiment], run_dir: str | Path, *, extra_eval=None) -> dict:
    """Run several recipes from the same base model and tabulate them (the RQ3/RQ5/GRPO-D comparisons).

    Each arm starts from a fresh copy of its ``model``; the base model is evaluated once per distinct
    held-out set (the prompt depends on the thinking mode and question), and every arm's trained model
    on the same set. Arm folders: ``<run_dir>/<label>/``.

    Args:
        arms: label -> :class:`Experiment` (labels become folder names: letters, digits, ``-_.``).
        run_dir: output folder.
        extra_eval: optional ``(model, processor, label) -> dict`` run on the base model (label ``"base"``)
            and on each trained model (e.g. the offline generalization suite); its dict is stored under
            ``"extra"``.
    Returns:
        ``{"summary": DataFrame (one row per arm plus base rows: arm, mode, algorithm, accuracy, ci_low,
        ci_high, valid, share_A, random, n, wall_s), "logs": {label: GRPO log DataFrame}, "sft_logs": …,
        "extra": {label: dict}, "results": {label: run_experiment output}}``.
    """
    import time

    import pandas as pd

    from jrl_core import evaluate, nano

    run_dir = Path(run_dir)
    rows, logs, sft_logs, extra, results = [], {}, {}, {}, {}
    tests: dict[tuple, list] = {}
    for label, exp in arms.items():
        key = (exp.model, exp.mode, exp.question_type, exp.curriculum_().sizes[0], exp.n_test, exp.seed)
        model, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano))
        first = key not in tests
        if first:
            tests[key] = evaluate.test_rows(exp.puzzle_spec(), n_items=exp.n_test, seed=exp.seed,
                                            source=exp.photo_source)
            if extra_eval is not None and "base" not in extra:
                extra["base"] = extra_eval(model, processor, "base")
        t0 = time.time()
        out = run_experiment(exp, run_dir / label, model=model, processor=processor, test=tests[key],
                             evaluate_before=first)
        wall = time.time() - t0
        if out["before"] is not None:
            m0, n0 = exp.curriculum_().sizes[0]
            rows.append({"arm": f"base ({exp.mode}, {m0}x{n0} {exp.question_type})", "mode": exp.mode, "algorithm": "none",
                         **out["before"],
                         "wall_s": None})
        rows.append({"arm": label, "mode": exp.mode, "algorithm": exp.algorithm, **out["after"], "wall_s": wall})
        logs[label], sft_logs[label] = out["grpo_log"], out["sft_log"]
        if extra_eval is not None:
            extra[label] = extra_eval(out["model"], out["processor"], label)
        results[label] = {k: v for k, v in out.items() if k not in ("model", "processor")}
    return {"summary": pd.DataFrame(rows), "logs": logs, "sft_logs": sft_logs, "extra": extra, "results": results}
