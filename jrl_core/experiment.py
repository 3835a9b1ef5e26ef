"""One experiment config, read by notebooks and the CLI alike, and the run that executes it.

The recipe itself (:class:`Experiment`, :func:`load_recipe`) lives in :mod:`jrl_core.config`.

:func:`run_experiment` executes a recipe: build the model, evaluate it on the fixed held-out set, train
(SFT and/or GRPO through TRL), evaluate again, and write ``metrics.json`` plus the training logs (per-step
table, per-rollout completion log) into the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from jrl_core import runs, schedules, train
from jrl_core.atomic import atomic_write_text
from jrl_core.config import RECIPES_DIR, Experiment, apply_overrides, load_recipe  # noqa: F401 (re-exported)

# --- running a recipe ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridSpec:
    """The evaluation grid of RQ1 (Jigsaw-R1 Tables 1 and 7): every size × question type, base and trained.

    Attributes:
        sizes: (m, n) sizes; default the paper's 2x1, 3x1, 4x1, 2x2 (``evaluate.PAPER_SIZES``).
        question_types: ``pair`` (Table 1) and ``full`` (Table 7) by default.
        n_items: puzzles per cell (≥ 100 keeps each cell's 95% interval within ±10 points; the paper: 1,000).
    Raises:
        ValueError: empty sizes or question types, or ``n_items < 1``.
    """

    sizes: tuple[tuple[int, int], ...] = ((2, 1), (3, 1), (4, 1), (2, 2))
    question_types: tuple[str, ...] = ("pair", "full")
    n_items: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(tuple(int(v) for v in s) for s in self.sizes))
        object.__setattr__(self, "question_types", tuple(self.question_types))
        if not self.sizes or not self.question_types:
            raise ValueError("GridSpec needs at least one size and one question type; pass grid=None to skip it.")
        if int(self.n_items) < 1:
            raise ValueError(f"GridSpec.n_items must be >= 1, got {self.n_items}.")


def train_rows(exp: Experiment, *, steps: int, prompts_per_step: int, view_size: int, split: str = "train",
               record=None, render: bool = True) -> list[dict]:
    """The training rows of a recipe: the one place they are built (GRPO and SFT, CLI and notebooks).

    ``steps × prompts_per_step`` rows on the recipe's *train* photos in step order, each a pure function of
    ``(exp.seed, index, step)`` (:func:`jrl_core.schedules.curriculum_row`), following the curriculum (a fixed
    ``size`` is a one-stage curriculum). The trainer consumes them in this order
    (``shuffle_dataset=False``), so step s sees rows ``s·P … s·P + P − 1`` and a resumed run the same data.

    Args:
        exp: the recipe (photo source, puzzle spec, curriculum, seed).
        steps, prompts_per_step: optimizer steps and unique prompts per step (≥ 1).
        view_size: view side in pixels, the model's input side (``jrl_core.nano.view_size(processor)``).
        split: ``"train"`` (GRPO) or ``"sft"`` (an independent draw for the SFT stage).
        record: a ``jrl_core.images.SkipRecord`` counting skipped photo files.
        render: False gives the same rows with black images (prompts, solutions, ids only; for reading logs).
    Returns:
        ``steps × prompts_per_step`` row dicts (``jrl_core.puzzles.make_row`` plus ``step``, ``index``).
    Raises:
        ValueError: no usable photo, or ``steps``/``prompts_per_step`` < 1.
    """
    from jrl_core.images import load_photos

    if steps < 1:
        raise ValueError(f"train_rows: steps must be >= 1, got {steps}; set grpo.steps (or sft.steps) >= 1.")
    photos = load_photos(exp.photo_source, "train", record=record)
    return schedules.curriculum_rows(photos, exp.puzzle_spec(), exp.curriculum_(), seed=exp.seed,
                                     prompts_per_step=prompts_per_step, steps=steps, view_size=view_size, split=split,
                                     render=render)


def heldout_rows(exp: Experiment, *, view_size: int, record=None) -> list[dict]:
    """The recipe's fixed held-out set: ``exp.n_test`` puzzles of its first curriculum size on views of the
    *test* photos (``evaluate.test_rows`` with ``evaluate.HELDOUT_SEED``: the same set for every run seed);
    ``record``: a ``jrl_core.images.SkipRecord`` counting skipped photo files."""
    from jrl_core import evaluate

    return evaluate.test_rows(exp.puzzle_spec(), n_items=exp.n_test, image_size=view_size, source=exp.photo_source,
                              record=record)


SECOND_HELDOUT_SOURCE = "package-photos"
"""Photo source of the second held-out set: the five photographs other installed packages ship (matplotlib,
scikit-learn, PyWavelets; ``jrl_core.images.PACKAGE_PHOTOS``), never seen by the nano base or by the default recipes'
training. One setting was chosen on them: the number of procedural walls (``images.PROCEDURAL_TRAIN_PICTURES``)."""


def second_heldout_rows(exp: Experiment, *, view_size: int, n_test: int | None = None) -> list[dict]:
    """A second fixed held-out set: the puzzles of :func:`heldout_rows` (same puzzle spec, size and seeds) cut from
    views of :data:`SECOND_HELDOUT_SOURCE`'s five photos instead of the recipe's test photos.

    The first held-out set's five skimage photos have been looked at while choosing the nano defaults (the
    procedural walls were added after the brick photo's failures); these five have not (but for the walls' count,
    see :data:`SECOND_HELDOUT_SOURCE`), so they measure the same model on photos the defaults were not fitted to.

    Args:
        exp: the recipe (its puzzle spec and ``n_test``); view_size: view side in px (the model's input side);
        n_test: puzzles (default ``exp.n_test``).
    Returns:
        ``n_test`` row dicts as :func:`heldout_rows`'s, ``image_id`` ``"<photo>#<view index>"``.
    Raises:
        ValueError: the recipe trains on these photos (``photo_source`` ``"packages"``: use ``"skimage"``-based
            sources), or one of the packages is not installed.
    """
    from jrl_core import evaluate
    from jrl_core.images import split_procedural

    if split_procedural(exp.photo_source)[0] == "packages":
        raise ValueError(f"photo_source={exp.photo_source!r} trains on the second held-out set's photos "
                         f"({SECOND_HELDOUT_SOURCE}), so they would not be held out; train on a 'skimage' source "
                         "to score it.")
    return evaluate.test_rows(exp.puzzle_spec(), n_items=exp.n_test if n_test is None else n_test,
                              image_size=view_size, source=SECOND_HELDOUT_SOURCE)


def rows_digest(rows: list[dict]) -> str:
    """sha256 over the rows' prompts, solutions, sizes and image bytes, in order: equal digests mean
    byte-identical data (how a notebook run and a ``jrl train`` run are checked to train on the same puzzles)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.get("prompt"), r.get("solution"), r.get("m"), r.get("n"), r.get("mode"),
                             r.get("image_id")], sort_keys=True, default=str).encode())
        images = r.get("image")
        for im in images if isinstance(images, (list, tuple)) else [images]:
            if im is not None:
                h.update(im.tobytes())
    return h.hexdigest()


def _last_checkpoint_step(folder: Path) -> int | None:
    """Global step of the newest complete checkpoint in a trainer folder, or None."""
    steps = [int(p.name.rsplit("-", 1)[-1]) for p in folder.glob("checkpoint-*")
             if (p / "trainer_state.json").exists() and p.name.rsplit("-", 1)[-1].isdigit()]
    return max(steps) if steps else None


def run_experiment(exp: Experiment, run_dir: str | Path, *, model=None, processor=None, test=None,
                   evaluate_before: bool = True, grid: GridSpec | None = None, resume: bool = True,
                   before=None, grid_before=None, base=None) -> dict:
    """Execute ``exp`` top-down: load, evaluate, train (SFT and/or GRPO through TRL), evaluate, record.

    Args:
        exp: the recipe (already validated by :mod:`jrl_core.config`).
        run_dir: the run folder (:class:`jrl_core.runs.RunFolder`): ``eval_before.csv``, ``eval_after.csv``,
            ``sft/`` and ``grpo/`` (``train_log.csv``, ``completions.jsonl``, checkpoints, ``final/``),
            ``grid/`` (per-cell tables) and ``metrics.json`` (written last).
        model, processor: an already-loaded model to start from (else ``exp.model`` is resolved and loaded).
        test: held-out rows (else :func:`heldout_rows`).
        evaluate_before: also score the starting model.
        grid: also evaluate the base and the trained model on an evaluation grid (RQ1).
        resume: continue a GRPO stage from the last checkpoint in ``run_dir/grpo`` when there is one (same
            rows per step, same β schedule, logs cut back to the checkpoint); False starts over.
        before: the starting model's ``evaluate.EvalResult`` on this held-out set when it is already known
            (greedy decoding gives the same table every time: :func:`run_seeds` and :func:`compare_arms` evaluate
            each base once per held-out set); written as ``eval_before.csv`` instead of evaluating again.
        grid_before: the starting model's ``grid`` evaluation when it is already known, as
            ``evaluate.evaluate_grid(..., return_tables=True)`` returns it (``(summary, tables)``; see
            :func:`evaluate_base`); written to ``grid/before/`` instead of evaluating again. Ignored without ``grid``.
        base: with ``before=None``, a callable giving ``(before, grid_before)`` or None, called after training
            instead of scoring the starting model first (a :func:`run_seeds` worker reads what the first seed's
            worker wrote); when it gives None, the starting model is scored then (:func:`evaluate_base`).
    Returns:
        ``{"experiment": dict, "before": summary | None, "after": summary, "grpo_log": DataFrame | None,
        "sft_log": …, "test": the held-out rows, "eval_before"/"eval_after": EvalResult, "grid": DataFrame | None (rows: stage, size,
        question_type, accuracy, ci_low, ci_high, random, n, …), "metrics": the written record's dict,
        "model", "processor", "model_path", "view_size", "train_rows_sha256", "heldout_sha256",
        "resumed_from_step" (None for a fresh GRPO stage), "rejection_acceptance"}``.
    Raises:
        ValueError: ``before`` scored other puzzles than this held-out set; from data building, with the field
            to change. RuntimeError: from training.
    """
    import os
    import time

    import pandas as pd

    from jrl_core import evaluate, nano
    from jrl_core.images import SkipRecord

    t0 = time.time()
    folder = runs.RunFolder(Path(run_dir))
    folder.root.mkdir(parents=True, exist_ok=True)
    main = os.environ.get("RANK", "0") == "0"  # under accelerate launch only rank 0 evaluates
    model_path = None
    if model is None:
        model_path = nano.resolve_model(exp.model, **exp.nano)
        model, processor = nano.load_model(model_path, dtype=exp.dtype)
    size = nano.view_size(processor)
    settings = exp.grpo_settings()
    max_new = exp.eval_max_new_tokens or settings.max_completion_length
    skipped = SkipRecord()
    test = test if test is not None else heldout_rows(exp, view_size=size, record=skipped)
    out: dict = {"experiment": exp.to_dict(), "grpo_log": None, "sft_log": None, "before": None, "grid": None,
                 "model_path": model_path, "view_size": size, "test": test, "heldout_sha256": rows_digest(test),
                 "rejection_acceptance": None}
    grids = []

    def grid_eval(stage: str, mdl) -> None:
        if grid is None or not main:
            return
        if stage == "before" and grid_before is not None:
            evaluate.save_grid(folder.root / "grid" / stage, *grid_before)
            grids.append(grid_before[0].assign(stage=stage))
            return
        table = _evaluate_grid(exp, grid, mdl, processor, size, save_dir=folder.root / "grid" / stage)
        grids.append(table.assign(stage=stage))

    def use_before(result) -> None:
        if result.table["image_id"].astype(str).tolist() != [str(r.get("image_id", "")) for r in test]:
            raise ValueError(f"run_experiment({exp.name}, before=...): that evaluation scored other puzzles than "
                             "this recipe's held-out set; pass before=None to evaluate the starting model here.")
        atomic_write_text(folder.eval_table("before"), result.table.to_csv(index=False))
        out.update(before=result.summary(), eval_before=result)

    deferred = base is not None and before is None and evaluate_before and main
    if before is not None and main:
        use_before(before)
    elif evaluate_before and main and not deferred:
        use_before(evaluate.evaluate(model, processor, test, max_new_tokens=max_new, desc=f"{exp.name}: before"))
    if not deferred:
        grid_eval("before", model)
    names, _ = exp.reward_setup()
    if exp.algorithm in ("sft", "sft_grpo"):
        sft = exp.sft_settings()
        rows = train_rows(exp, steps=sft.steps, prompts_per_step=sft.batch_size, view_size=size, split="sft",
                          record=skipped)
        out["sft_rows_sha256"] = rows_digest(rows)
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
                                                      folder.trainer_dir("sft"), lora=exp.lora_settings(),
                                                      save_final=False)
        model = train.merge_lora(sft_trainer.model) if exp.lora is not None else sft_trainer.model
    if exp.algorithm in ("grpo", "sft_grpo"):
        rows = train_rows(exp, steps=settings.steps, prompts_per_step=settings.prompts_per_step, view_size=size,
                          record=skipped)
        out["train_rows_sha256"] = rows_digest(rows)
        cb = exp.kl_callback(settings.steps)
        gdir = folder.trainer_dir("grpo")
        if not resume and main:  # starting over: an old run's checkpoints must not be resumed or rotated in later
            for old in gdir.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
        out["resumed_from_step"] = _last_checkpoint_step(gdir) if resume else None
        trainer, out["grpo_log"] = train.train_grpo(
            model, processor, rows, settings, gdir, reward_names=names, callbacks=[cb] if cb else None,
            lora=exp.lora_settings(), freeze_vision=exp.freeze_vision, save_final=True,
            resume_from_checkpoint=True if out["resumed_from_step"] is not None else None, **exp.trainer)
        model = trainer.model.get_base_model() if exp.lora is not None else trainer.model  # LoRA: merged by save_final
    if not main:
        return out
    if deferred:  # the starting model's scores, from another process or scored now from exp.model
        given = base()
        before, grid_before = given if given is not None else evaluate_base(exp, grid)
        use_before(before)
        grid_eval("before", None)
    after = evaluate.evaluate(model, processor, test, max_new_tokens=max_new, desc=f"{exp.name}: after")
    atomic_write_text(folder.eval_table("after"), after.table.to_csv(index=False))
    grid_eval("after", model)
    if grids:
        out["grid"] = pd.concat(grids, ignore_index=True)
    out.update(after=after.summary(), eval_after=after, model=model, processor=processor, wall_s=time.time() - t0)
    record = _record(exp, out, settings, skipped)
    runs.write_metrics(folder.root, record)
    out["metrics"] = record.to_dict()
    return out


def _evaluate_grid(exp: Experiment, grid: GridSpec, model, processor, size: int, **kwargs):
    """``evaluate.evaluate_grid`` of a recipe's grid (its thinking mode, its photo source's test photos)."""
    from jrl_core import evaluate

    return evaluate.evaluate_grid(model, processor, sizes=grid.sizes, question_types=grid.question_types,
                                  thinks=(exp.mode,), n_items=grid.n_items, source=exp.photo_source,
                                  image_size=size, progress=False, **kwargs)


def evaluate_base(exp: Experiment, grid: GridSpec | None = None) -> tuple:
    """The starting model's scores for ``exp``, as :func:`run_experiment` computes them before training: greedy
    decoding on the recipe's held-out set (:func:`heldout_rows`) and, with ``grid``, on the evaluation grid.

    :func:`run_seeds` scores the base once for all its seeds instead of every seed scoring the same model again: in
    its own process when it trains one seed at a time (passing the result to every seed's :func:`run_experiment`
    as ``before`` / ``grid_before``), in the first seed worker when it trains several at once.
    Returns ``(before, grid_before)``: an ``evaluate.EvalResult`` and ``evaluate.evaluate_grid``'s ``(summary,
    tables)`` (None without ``grid``). Raises what loading the model raises (``jrl_core.nano.load_model``).
    """
    from jrl_core import evaluate, nano

    model, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano), dtype=exp.dtype)
    size = nano.view_size(processor)
    max_new = exp.eval_max_new_tokens or exp.grpo_settings().max_completion_length
    before = evaluate.evaluate(model, processor, heldout_rows(exp, view_size=size), max_new_tokens=max_new,
                               desc=f"{exp.name}: base")
    grid_before = _evaluate_grid(exp, grid, model, processor, size, return_tables=True) if grid is not None else None
    return before, grid_before


def _record(exp: Experiment, out: dict, settings, skipped) -> runs.MetricsRecord:
    """The run's metrics record: headline numbers flat, the resolved recipe and tables in ``details``."""
    b, a = out["before"] or {}, out["after"]
    m0, n0 = exp.curriculum_().sizes[0]
    label = f"{m0}x{n0} {exp.question_type} {exp.mode}"
    metrics = {"puzzle": label, "seed": exp.seed, "acc_before": b.get("accuracy"), "acc_after": a["accuracy"],
               "ci_after_low": a["ci_low"], "ci_after_high": a["ci_high"], "valid_after": a["valid"],
               "share_A_after": a["share_A"], "random": a["random"], "n_test": a["n"], "wall_s": out.get("wall_s"),
               "view_size": out["view_size"], "train_rows_sha256": out.get("train_rows_sha256"),
               "heldout_sha256": out["heldout_sha256"], "resumed_from_step": out.get("resumed_from_step")}
    if b:
        metrics.update(ci_before_low=b["ci_low"], ci_before_high=b["ci_high"])
    log = out.get("grpo_log")
    if log is not None and "frac_reward_zero_std" in log:
        metrics["final_frac_zero_std"] = float(log["frac_reward_zero_std"].tail(10).mean())
    if exp.algorithm != "sft":
        metrics.update(grpo_steps=settings.steps, prompts_per_step=settings.prompts_per_step)
    grid = out.get("grid")
    if grid is not None:
        for r in grid.to_dict("records"):
            metrics[f"grid_{r['question_type']}_{r['size']}_{r['stage']}"] = r["accuracy"]
    paper = _paper_rows(exp, b.get("accuracy"), a["accuracy"])
    details = {"experiment": out["experiment"], "grpo_settings": dataclasses.asdict(settings),
               "before": out["before"], "after": a, "rejection_acceptance": out.get("rejection_acceptance"),
               "grid": grid.to_dict("records") if grid is not None else None}
    return runs.MetricsRecord(kind="experiment", title=exp.name, model=exp.model, scale=exp.scale, metrics=metrics,
                              paper_vs_ours=paper, skipped_inputs=skipped.to_dict(), details=details)


def _paper_setting(exp: Experiment) -> bool:
    """Whether a run is the paper's Table 1/7 setting: GRPO (or SFT then GRPO) trained on one 2x1/1x2 size, pair or
    full questions; only then are the paper's "+ GRPO 2x1" numbers its counterpart."""
    sizes = exp.curriculum_().sizes
    return (exp.algorithm in ("grpo", "sft_grpo") and exp.question_type in ("pair", "full") and len(sizes) == 1
            and tuple(sorted(sizes[0])) == (1, 2))


def _paper_rows(exp: Experiment, before: float | None, after: float | None) -> list[dict]:
    """Paper-vs-ours rows (Jigsaw-R1 Table 1 pair / Table 7 full, Qwen2.5-VL-3B) for the study index."""
    from jrl_core import report

    if not _paper_setting(exp):
        return []
    m0, n0 = exp.curriculum_().sizes[0]
    label = f"{m0}x{n0} {exp.question_type} {exp.mode}"
    rows = []
    for p in report.paper_rows_table1(exp.question_type, m0, n0, exp.think):
        ours = before if " base" in p["label"] else after
        if ours is not None:
            rows.append({"metric": f"{label} accuracy, {p['label'].split(' ', 1)[1]}", "paper": p["accuracy"],
                         "ours": ours, "scale": f"paper: {p['label'].split(' ')[0]} / ours: {exp.scale}",
                         "model": exp.model})
    return rows


_PAIRED_FIELDS = ("question_type", "size", "shuffle_mn", "n_test", "photo_source")
"""Recipe fields that fix the held-out puzzles (images and solutions); the thinking mode changes only the prompt."""


def _test_source(source: str) -> str:
    """The photo source whose *test* split a recipe's held-out set is cut from ("packages" and a "+synthetic"
    or "+tiling" suffix add training pictures only: "packages+synthetic" has "skimage"'s test split)."""
    from jrl_core.images import split_procedural

    base = split_procedural(source)[0]
    return "skimage" if base == "packages" else base


def _puzzles_of(exp: Experiment) -> dict:
    return {"question_type": exp.question_type, "size": "x".join(map(str, exp.curriculum_().sizes[0])),
            "shuffle_mn": exp.shuffle_mn, "n_test": exp.n_test, "photo_source": _test_source(exp.photo_source)}


@dataclass(frozen=True)
class Contrast:
    """A claim about two arms of a comparison, declared before the run, with the paper's number.

    The verdict rule is fixed with it (:func:`jrl_core.stats.verdict`): the claim "``a`` beats ``b``"
    (``direction=1``; −1: "``a`` does worse than ``b``") is *reproduced* when the 95% interval of the paired
    difference a − b (same seeds, same held-out puzzles) excludes 0 in that direction, *contradicted* when it
    excludes 0 the other way, *inconclusive* otherwise.

    Attributes:
        a, b: arm labels of :func:`compare_arms` (two different arms scored on the same held-out puzzles).
        direction: 1 or −1.
        claim: the claim in words with its source, e.g. ``"RL beats SFT in domain (Jigsaw-R1 Finding 5)"``;
            empty: ``"<a> beats <b>"``.
        paper: the paper's number for it and where it comes from (``data/paper_tables/``), e.g. ``"73.18% vs
            69.48% downstream AVG (Jigsaw-R1 Tables 2/6, Qwen2.5-VL-3B, non-thinking)"``; None: no paper number.
        id: the claim's short name in the study's findings table (``"F1"``…``"F7"``: Jigsaw-R1 Findings 1–5,
            No-Thinking-RL, OThink-MR1; a letter suffix for a second test of one claim, ``"F5b"``); None: unnamed
            (listed after the named ones).
    Raises:
        ValueError: empty or equal labels, or a direction other than ±1.
    """

    a: str
    b: str
    direction: int = 1
    claim: str = ""
    paper: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.a, str) and isinstance(self.b, str) and self.a and self.b):
            raise ValueError(f"Contrast(a={self.a!r}, b={self.b!r}): give two arm labels as strings.")
        if self.a == self.b:
            raise ValueError(f"Contrast(a={self.a!r}, b={self.b!r}): an arm is compared with another arm, not itself.")
        if isinstance(self.direction, bool) or self.direction not in (1, -1):
            raise ValueError(f"Contrast({self.a} vs {self.b}): direction must be 1 (a beats b) or -1 (a does worse), "
                             f"got {self.direction!r}.")
        if not self.claim:
            verb = "beats" if self.direction == 1 else "does worse than"
            object.__setattr__(self, "claim", f"{self.a} {verb} {self.b}")

    @classmethod
    def of(cls, value: Contrast | dict) -> Contrast:
        """A contrast from itself or from a dict of its fields (a notebook parameter).

        Raises:
            ValueError: a dict with unknown fields (naming them) or a value of another type.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"contrast {value!r}: give a Contrast or a dict with keys a, b, direction, claim, paper.")
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"contrast {value!r}: unknown keys {unknown}; use a, b, direction, claim, paper, id.")
        return cls(**value)

    def rule(self) -> str:
        """The pre-registered verdict rule of this contrast, in words."""
        way, other = ("upwards", "downwards") if self.direction == 1 else ("downwards", "upwards")
        return (f"reproduced when the 95% interval of the paired difference {self.a} − {self.b} (same seeds, same "
                f"held-out puzzles; bootstrap over seeds and photos) excludes 0 {way}; contradicted when it excludes 0 "
                f"{other}; inconclusive otherwise (jrl_core.stats.verdict)")


class _ArmEval:
    """An arm's ``extra_eval``: the comparison's callable with the arm label, keeping its ``key``."""

    def __init__(self, fn, label: str) -> None:
        self.fn, self.label, self.key = fn, label, getattr(fn, "key", None)

    def __call__(self, model, processor, _name):
        return self.fn(model, processor, self.label)


EXTRA_BASE_FILE = "extra_base.json"
"""A comparison's file of what ``extra_eval`` measured on the base model (``<run_dir>/extra_base.json``)."""


def check_contrasts(arms: dict[str, Experiment], contrasts, *, base: bool = False) -> list[Contrast]:
    """The declared contrasts of a comparison, checked before any model loads: each names two of ``arms``, and
    both arms are scored on the same held-out puzzles (question type, size, transposition, ``n_test``, photo
    source), so that their difference can be paired puzzle by puzzle.

    Args:
        arms: label -> :class:`Experiment` (:func:`load_arms`); contrasts: :class:`Contrast` or dicts, or None.
        base: also allow ``b = "base"`` (the arms' base model, for :func:`extra_contrast`).
    Returns:
        The contrasts as :class:`Contrast` objects, in order.
    Raises:
        ValueError: a contrast naming an unknown arm, or two arms on different held-out puzzles (naming the
            fields that differ and the fix).
    """
    declared = [Contrast.of(c) for c in (contrasts or [])]
    for c in declared:
        missing = [x for x in (c.a, c.b) if x not in arms and not (base and x == c.b == "base")]
        if missing:
            raise ValueError(f"contrast {c.a} vs {c.b}: no arm {missing}; arms: {list(arms)}"
                             + (' (or "base" as b)' if base else "") + ".")
        if c.b == "base" and base:
            continue
        pa, pb = _puzzles_of(arms[c.a]), _puzzles_of(arms[c.b])
        diff = [f"{k}: {pa[k]!r} vs {pb[k]!r}" for k in _PAIRED_FIELDS if pa[k] != pb[k]]
        if diff:
            raise ValueError(f"contrast {c.a} vs {c.b}: the arms are scored on different held-out puzzles "
                             f"({'; '.join(diff)}); a paired difference needs one held-out set: give both arms the "
                             "same values, or drop the contrast.")
    return declared


def compare_arms(arms: dict[str, Experiment], run_dir: str | Path, *, extra_eval=None, seeds=None,
                 contrasts=None, resume: bool = True, title: str | None = None) -> dict:
    """Run several recipes over the same seeds from the same base and compare them with paired intervals
    (the RQ3 / RQ5 / GRPO-D comparisons; Jigsaw-R1 Findings 3 and 5, OThink-MR1 Table 1).

    Every arm is :func:`run_seeds` over ``seeds`` in ``<run_dir>/<label>/seed<s>/`` (its own summary record in
    ``<run_dir>/<label>/metrics.json``): each seed starts from a fresh copy of the arm's ``model`` and is scored on
    the arm's fixed held-out set; a seed whose folder already holds the results of the *same* recipe (and, with
    ``extra_eval``, its stored extra results) is read back, not rerun, so a killed comparison resumes where it
    stopped, and a changed recipe or override reruns that arm's seeds from scratch. Each base model is evaluated
    once per held-out set (greedy decoding: the same table every time). Every seed is kept: no selection.

    Each declared :class:`Contrast` is tested on the arms' per-puzzle tables with
    :func:`jrl_core.stats.paired_contrast`: both arms' means with their 95% intervals (bootstrap over seeds and
    held-out photos), the paired difference a − b with its interval (paired by seed and by puzzle: arms whose
    prompts differ, e.g. thinking vs non-thinking, still see the same images and solutions row by row and are
    paired by row; the ``image_id`` and ``solution`` columns are checked), the pre-registered verdict, and when
    it is inconclusive with ≥ 2 seeds the seeds needed for a ±5-point interval at the observed seed spread.

    Args:
        arms: label -> :class:`Experiment` (labels become folder names: letters, digits, ``-_.``).
        run_dir: output folder; ``metrics.json`` (kind ``"comparison"``, via
            :func:`jrl_core.report.write_comparison_metrics`) with ``details["findings"]`` (every contrast) and
            ``details["finding"]`` (the first, what the study index reads), ``summary.csv`` and
            ``per_seed.csv``.
        extra_eval: optional ``(model, processor, label) -> dict`` run on the base model (label ``"base"``,
            stored in ``<run_dir>/extra_base.json``) and on each seed's trained model (stored in the seed folder's
            ``extra.json``: a finished seed is read back whole); its values must be DataFrames, None or JSON. A
            ``key`` attribute (JSON naming its settings, as :func:`jrl_core.report.generalization_eval` sets)
            makes a changed evaluation rerun; without one a stored result is reused.
        seeds: ints ≥ 0, every arm runs all of them (a seed replaces the recipe's ``seed``); None: the arms'
            recipe seed (one run per arm; they must share it).
        contrasts: :class:`Contrast` or dicts of its fields, declared before the run; checked before any model
            loads (labels exist, both arms on the same held-out puzzles).
        resume: False reruns every seed from scratch.
        title: the record's title (default: the arm labels).
    Returns:
        ``{"summary": DataFrame (one row per arm — arm, mode, algorithm, accuracy (mean over seeds and puzzles),
        ci_low, ci_high (bootstrap over seeds and photos), valid, share_A (means over seeds), random, n (held-out
        puzzles), n_seeds, wall_s (sum over seeds) — plus one base row per held-out set, its interval a bootstrap
        over photos), "per_seed": DataFrame (arm, seed, accuracy, ci_low, ci_high (Wilson), valid, share_A,
        before, wall_s, cached), "findings": [one dict per contrast: claim, paper, ours, difference, verdict,
        rule, a, b, direction, arm_a, arm_b, difference_interval (stats.bootstrap dicts), per_seed, seed_sd,
        seeds_needed, n_seeds, pairing], "seeds": the seeds, "logs": {label: {seed: GRPO log or None}},
        "sft_logs": {label: {seed: SFT log or None}}, "extra": {"base": dict, label: {seed: dict}} (empty without
        ``extra_eval``), "results": {label: run_seeds output (``seeds``: every seed's tables)}, "metrics": the
        written record}``. Accuracies and intervals in [0, 1].
    Raises:
        ValueError: no arms, a label that is not a folder name, bad seeds, arms with different recipe seeds and
            ``seeds=None``, or a contrast naming an unknown arm or two arms on different held-out puzzles.
    """
    import re

    from jrl_core import report, stats

    if not arms:
        raise ValueError("compare_arms needs at least one arm: {label: Experiment} (experiment.load_arms).")
    bad = [lbl for lbl in arms if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(lbl))]
    if bad:
        raise ValueError(f"arm labels {bad}: use letters, digits, '.', '_', '-' (each becomes a folder name).")
    if seeds is None:
        own = sorted({exp.seed for exp in arms.values()})
        if len(own) > 1:
            raise ValueError(f"compare_arms: the arms' recipes have seeds {own}; pass seeds=[...] (every arm runs "
                             "every seed) or give the arms one seed.")
        seeds = own
    seeds = list(dict.fromkeys(seeds))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: give a non-empty list of ints >= 0, e.g. [0, 1, 2].")
    declared = check_contrasts(arms, contrasts)
    run_dir = Path(run_dir)
    ref = next(iter(arms.values()))
    base_evals: dict = {}
    results = {label: run_seeds(exp, run_dir / label, seeds, resume=resume, base_evals=base_evals,
                                extra_eval=_ArmEval(extra_eval, label) if extra_eval is not None else None)
               for label, exp in arms.items()}
    del base_evals
    extra = {}
    if extra_eval is not None:
        extra["base"] = _base_extra(ref, run_dir / EXTRA_BASE_FILE, extra_eval, resume=resume)
        extra.update({label: {s: d.get("extra") for s, d in r["seeds"].items()} for label, r in results.items()})
    summary, per_seed = _arms_tables(arms, results)
    findings = []
    for c in declared:
        r = stats.paired_contrast({s: results[c.a]["seeds"][s]["eval_after"] for s in seeds},
                                  {s: results[c.b]["seeds"][s]["eval_after"] for s in seeds}, direction=c.direction)
        findings.append(report.finding(c, r, report.contrast_text(c.a, c.b, r, scale=ref.scale)))
    res = {"summary": summary, "per_seed": per_seed, "findings": findings, "seeds": seeds,
           "logs": {label: {s: d["grpo_log"] for s, d in r["seeds"].items()} for label, r in results.items()},
           "sft_logs": {label: {s: d.get("sft_log") for s, d in r["seeds"].items()} for label, r in results.items()},
           "extra": extra, "results": results}
    res["metrics"] = report.write_comparison_metrics(run_dir, title=title or "comparison: " + " vs ".join(arms),
                                                     model=ref.model, scale=ref.scale, comparison=res)
    return res


def extra_contrast(res: dict, contrast: Contrast | dict, value: str = "suite_items", *, where=None,
                   scale: str | None = None) -> dict:
    """A declared claim tested on a comparison's ``extra_eval`` per-question tables instead of its held-out
    puzzles: e.g. RQ2's "jigsaw GRPO raises accuracy on never-seen perception families over the base"
    (Jigsaw-R1 Finding 2, Table 2 analogue), arm ``a`` against ``b = "base"`` on ``suite_items``.

    Pairing is by seed and by question: seed ``s`` of arm ``a`` against seed ``s`` of arm ``b`` or, for
    ``b == "base"``, against the base model's table (the same for every seed); the bootstrap resamples seeds
    and test photos (``stats.paired_contrast``; the tables' ``image_id`` is ``"<photo>#<i>"``).

    Args:
        res: :func:`compare_arms`'s result, run with an ``extra_eval`` that returns ``value`` (e.g.
            ``report.generalization_eval``, whose ``suite_items`` table has one row per question).
        contrast: the claim (:class:`Contrast` or a dict of its fields); ``b`` may be ``"base"``.
        value: the name of the per-question table in the ``extra_eval`` results (``image_id``, ``correct``).
        where: optional ``DataFrame -> boolean Series`` selecting the questions (e.g. ``lambda t: ~t["seen"]``
            for the never-seen families), applied to every table alike.
        scale: for the text (``"nano"``).
    Returns:
        A finding dict as in ``compare_arms(...)["findings"]`` (id, claim, paper, ours, difference, verdict, rule,
        a, b, direction, arm_a, arm_b, difference_interval, per_seed, seed_sd, seeds_needed, n_seeds, pairing)
        plus ``"on"``: ``value``. Accuracies in [0, 1].
    Raises:
        ValueError: an arm without ``value`` tables for every seed (run ``compare_arms`` with an ``extra_eval``
            that returns it), or no question selected.
    """
    from jrl_core import report, stats

    c = Contrast.of(contrast)
    extra, seeds = res.get("extra") or {}, list(res["seeds"])
    arms = list(res.get("results") or [k for k in extra if k != "base"])
    unknown = [x for x in (c.a, c.b) if x not in arms and x != "base"]
    if unknown:
        raise ValueError(f"extra_contrast {c.a} vs {c.b}: no arm {unknown}; arms: {arms} (or \"base\").")

    def tables(label: str) -> dict:
        if label == "base":
            base = (extra.get("base") or {}).get(value)
            got = {s: base for s in seeds}
        else:
            got = {s: ((extra.get(label) or {}).get(s) or {}).get(value) for s in seeds}
        missing = [s for s, t in got.items() if t is None]
        if missing:
            raise ValueError(f"extra_contrast {c.a} vs {c.b}: no '{value}' table for {label!r} (seeds {missing}); run "
                             f"compare_arms with an extra_eval that returns '{value}' (report.generalization_eval).")
        picked = {s: (t[where(t)] if where is not None else t).reset_index(drop=True) for s, t in got.items()}
        if any(len(t) == 0 for t in picked.values()):
            raise ValueError(f"extra_contrast {c.a} vs {c.b}: `where` selected no question of '{value}'.")
        return picked

    r = stats.paired_contrast(tables(c.a), tables(c.b), direction=c.direction)
    r["pairing"] = r["pairing"].replace("puzzle row", "question")
    ours = report.contrast_text(c.a, c.b, r, scale=scale).replace("held-out puzzles", "questions")
    return report.finding(c, r, ours, on=value)


def _base_extra(exp: Experiment, path: Path, extra_eval, *, resume: bool) -> dict:
    """``extra_eval`` on the base model, read back from ``path`` when it was measured for the same base and key."""
    from jrl_core import nano

    key = {"extra": getattr(extra_eval, "key", None), "base": [exp.model, exp.nano, exp.dtype]}
    stored = runs.read_extra(path, key) if resume else None
    if stored is not None:
        return stored
    model, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano), dtype=exp.dtype)
    values = extra_eval(model, processor, "base")
    runs.write_extra(path, values, key)
    return values


def _arms_tables(arms: dict[str, Experiment], results: dict):
    """The comparison's summary (one row per arm, base rows per held-out set) and per-seed tables."""
    import pandas as pd

    from jrl_core import stats

    rows, per_seed, bases = [], [], set()
    for label, exp in arms.items():
        r = results[label]
        first = next(iter(r["seeds"].values()))
        key = _base_key(exp)
        if key not in bases:
            bases.add(key)
            b = stats.bootstrap({0: first["eval_before"]})
            m0, n0 = exp.curriculum_().sizes[0]
            rows.append({"arm": f"base ({exp.mode}, {m0}x{n0} {exp.question_type})", "mode": exp.mode,
                         "algorithm": "none", "accuracy": b["mean"], "ci_low": b["low"], "ci_high": b["high"],
                         "valid": first["before"]["valid"], "share_A": first["before"]["share_A"],
                         "random": first["before"]["random"], "n": b["n_puzzles"], "n_seeds": None, "wall_s": None})
        walls = [d["metrics"].get("wall_s") for d in r["seeds"].values()]
        after = [d["after"] for d in r["seeds"].values()]
        rows.append({"arm": label, "mode": exp.mode, "algorithm": exp.algorithm, "accuracy": r["after"]["mean"],
                     "ci_low": r["after"]["low"], "ci_high": r["after"]["high"],
                     "valid": float(sum(a["valid"] for a in after) / len(after)),
                     "share_A": float(sum(a["share_A"] for a in after) / len(after)), "random": after[0]["random"],
                     "n": r["after"]["n_puzzles"], "n_seeds": len(after),
                     "wall_s": float(sum(walls)) if all(w is not None for w in walls) else None})
        for s, d in r["seeds"].items():
            a = d["after"]
            per_seed.append({"arm": label, "seed": s, "accuracy": a["accuracy"], "ci_low": a["ci_low"],
                             "ci_high": a["ci_high"], "valid": a["valid"], "share_A": a["share_A"],
                             "before": d["before"]["accuracy"], "wall_s": d["metrics"].get("wall_s"),
                             "cached": d["cached"]})
    return pd.DataFrame(rows), pd.DataFrame(per_seed)


def _train_seeds_in_parallel(exp: Experiment, root: Path, seeds: list[int], *, grid, resume: bool,
                             jobs: int) -> list[int]:
    """Train the seeds of :func:`run_seeds` that are not finished, ``jobs`` at a time in worker processes, and
    return them (the caller reads every seed back from its folder); [] when fewer than two need training.
    The first worker scores the base (:func:`evaluate_base`) before it trains and writes the scores to
    ``<root>/base_eval.pkl``; the others read them there when they finish training (or score the base then,
    if that worker failed), so the base is scored once while the workers run and not in this process first,
    which would import torch and transformers before any worker starts."""
    from jrl_core import executor

    calls, names = [], []
    for s in seeds:
        folder = runs.RunFolder(root / f"seed{s}")
        seed_exp = apply_overrides(exp, {"seed": s})
        if resume and _seed_outputs(folder, seed_exp) is not None:
            continue
        fresh = resume and runs.read_metrics(folder.root) is None  # another recipe's folder starts over
        folder.extra.unlink(missing_ok=True)
        calls.append(executor.Call(name=f"{exp.name} seed {s}", fn=_train_seed,
                                   args=(seed_exp, str(folder.root), grid, fresh, str(root / BASE_FILE), not calls)))
        names.append(s)
    if len(calls) < 2:  # nothing to overlap: the caller runs what is left in this process
        return []
    from jrl_core import nano

    nano.resolve_model(exp.model, **exp.nano)  # a nano variant is built here once, not by every worker at once
    (root / BASE_FILE).unlink(missing_ok=True)  # the workers read only what this run's first worker scores
    failed = []
    for i, _, error in executor.run_calls(calls, executor="local", jobs=min(jobs, len(calls))):
        if error is not None:
            failed.append((names[i], error))
        log = root / f"seed{names[i]}" / WORKER_LOG  # the worker's warnings and progress, into this run's stderr
        if log.is_file():
            sys.stderr.write(f"--- {exp.name} seed {names[i]} (worker process) ---\n"
                             + log.read_text(encoding="utf-8", errors="replace") + "\n")
    if failed:
        seeds_txt = ", ".join(str(s) for s, _ in failed)
        raise RuntimeError(f"{exp.name}: seed(s) {seeds_txt} failed in their worker processes (the other seeds "
                           f"finished and are kept): {failed[0][1]}") from failed[0][1]
    return names


def pooled_extra(res: dict, name: str) -> dict:
    """One table per model from :func:`compare_arms`'s ``extra_eval`` results: ``{"base": the base's table,
    label: the arm's seeds' tables stacked, with a ``seed`` column}`` for the value ``name`` (e.g. ``"suite"``);
    models whose value is None are left out. A seaborn bar plot of a stacked table shows the mean over seeds
    with its interval (``plots.suite_comparison``)."""
    import pandas as pd

    out = {}
    base = (res.get("extra") or {}).get("base") or {}
    if base.get(name) is not None:
        out["base"] = base[name]
    for label, per_seed in (res.get("extra") or {}).items():
        if label == "base":
            continue
        frames = [v[name].assign(seed=s) for s, v in per_seed.items() if v and v.get(name) is not None]
        if frames:
            out[label] = pd.concat(frames, ignore_index=True)
    return out


def load_arms(arms: dict[str, str | Path], overrides: dict | None = None,
              arm_overrides: dict[str, dict] | None = None) -> dict[str, Experiment]:
    """The arms of a comparison notebook as recipes: ``{label: load_recipe(recipe, overrides)}`` for
    :func:`compare_arms`.

    Each arm is ``load_recipe(arms[label], {**overrides, **arm_overrides[label], "name": label})``: the
    shared ``overrides`` first, the arm's own on top, and the label as the recipe's ``name`` (which also
    names its run folder ``<run_dir>/<label>/``).

    Args:
        arms: label -> recipe name under ``recipes/`` (``"nano/thinking_2x1_pair"``) or YAML path; labels
            are folder names (letters, digits, ``-_.``).
        overrides: applied to every arm; the keys of ``jrl train --set`` (``{"grpo.steps": 30, "seed": 1}``).
        arm_overrides: label -> overrides for that arm only (e.g. ``{"thinking": {"grpo.steps": 10}}``).
    Returns:
        ``{label: Experiment}`` in the order of ``arms``.
    Raises:
        ValueError: ``arm_overrides`` names a label that is not in ``arms``; :class:`jrl_core.config.RecipeError`
            (a ``ValueError``) for a bad recipe or override, naming the field.
    """
    arm_overrides = dict(arm_overrides or {})
    unknown = sorted(set(arm_overrides) - set(arms))
    if unknown:
        raise ValueError(f"arm_overrides names {unknown}, which are not arms; arms: {list(arms)}.")
    return {label: load_recipe(recipe, {**(overrides or {}), **arm_overrides.get(label, {}), "name": label})
            for label, recipe in arms.items()}


def _same_recipe(a: dict, b: dict) -> bool:
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def _base_key(exp: Experiment) -> str:
    """Identity of a base evaluation: the starting model (name, nano settings, dtype), the held-out set (puzzle
    spec, n_test, photo source) and the generation budget; equal keys give the same evaluation table."""
    budget = exp.eval_max_new_tokens or exp.grpo_settings().max_completion_length
    return json.dumps([exp.model, exp.nano, exp.dtype, repr(exp.puzzle_spec()), exp.n_test,
                       _test_source(exp.photo_source), budget],
                      sort_keys=True, default=str)


def _seed_outputs(folder: runs.RunFolder, exp: Experiment) -> dict | None:
    """A finished seed's outputs read back from its run folder: None when it did not finish, or when it was run
    with another recipe (a changed recipe or override must rerun the seed, never mix with old results)."""
    import pandas as pd

    record = runs.read_metrics(folder.root)
    if not record or not all(folder.eval_table(w).exists() for w in ("before", "after")):
        return None
    details = record.get("details") or {}
    if not _same_recipe(details.get("experiment") or {}, exp.to_dict()):
        return None
    log, sft_log = folder.train_log("grpo"), folder.train_log("sft")
    grid = details.get("grid")
    return {"before": details.get("before"), "after": details.get("after"),
            "eval_before": pd.read_csv(folder.eval_table("before"), keep_default_na=False),
            "eval_after": pd.read_csv(folder.eval_table("after"), keep_default_na=False),
            "grpo_log": pd.read_csv(log) if log.exists() else None,
            "sft_log": pd.read_csv(sft_log) if sft_log.exists() else None,
            "grid": pd.DataFrame(grid) if grid else None, "metrics": record.get("metrics") or {}, "cached": True}


WORKER_LOG = "worker.log"
"""A seed trained in a worker process (``run_seeds(jobs > 1)``) writes its stdout/stderr (warnings, progress) here,
in its seed folder; the caller then copies it to its own stderr, so a study's ``run.log`` keeps it."""


BASE_FILE = "base_eval.pkl"
"""In a :func:`run_seeds` folder: the base's scores (:func:`evaluate_base`) as the first seed worker wrote them, with
the recipe key and grid they belong to (a pickle written and read by the same run's processes)."""


def _write_base(path: str, key: str, grid, scores: tuple) -> None:
    import pickle

    from jrl_core.atomic import atomic_write_bytes

    atomic_write_bytes(path, pickle.dumps({"key": key, "grid": grid, "scores": scores}))


def _read_base(path: str, key: str, grid) -> tuple | None:
    """The base's ``(before, grid_before)`` from :data:`BASE_FILE`, or None when it is missing or belongs to
    another recipe or grid."""
    import pickle

    try:
        with open(path, "rb") as f:
            stored = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return stored["scores"] if stored.get("key") == key and stored.get("grid") == grid else None


def _train_seed(exp: Experiment, root: str, grid: GridSpec | None, resume: bool, base_file: str,
                scores_base: bool) -> None:
    """One seed of :func:`run_seeds` in a worker process: its outputs go to its folder (read back by the caller),
    its stdout/stderr to ``<folder>/worker.log``. ``scores_base``: score the base first and write it to
    ``base_file``; else read it from there after training (:func:`_train_seeds_in_parallel`)."""
    import contextlib
    import functools

    Path(root).mkdir(parents=True, exist_ok=True)
    key = _base_key(exp)
    with open(Path(root) / WORKER_LOG, "w", encoding="utf-8") as log, contextlib.redirect_stderr(log), \
            contextlib.redirect_stdout(log):
        if scores_base:
            before, grid_before = evaluate_base(exp, grid)
            _write_base(base_file, key, grid, (before, grid_before))
            run_experiment(exp, root, grid=grid, resume=resume, before=before, grid_before=grid_before)
        else:
            run_experiment(exp, root, grid=grid, resume=resume, base=functools.partial(_read_base, base_file, key, grid))


def run_seeds(exp: Experiment, run_dir: str | Path, seeds, *, grid: GridSpec | None = None,
              resume: bool = True, extra_eval=None, base_evals: dict | None = None, jobs: int = 1) -> dict:
    """Run one recipe over several seeds from the same base on the same held-out set, and summarise.

    Each seed is :func:`run_experiment` of ``exp`` with ``seed`` replaced, in ``<run_dir>/seed<s>/``; a seed whose
    folder already holds its record and evaluation tables of the same recipe is read back, not rerun (a killed
    multi-seed run resumes where it stopped; a changed recipe reruns the seed from scratch). The base model is
    evaluated once per held-out set, not once per seed (greedy decoding gives the same table). Every seed is
    kept and reported: no selection.

    Args:
        exp: the recipe; run_dir: the multi-seed folder; seeds: ints ≥ 0.
        grid: also evaluate base and trained models on an evaluation grid (RQ1).
        resume: False reruns every seed from scratch.
        extra_eval: optional ``(model, processor, name) -> dict`` run on each seed's trained model (``name`` is
            ``exp.name``) and stored in ``<run_dir>/seed<s>/extra.json`` (:func:`jrl_core.runs.write_extra`); a
            finished seed without it (or stored for another ``extra_eval.key``) is rerun.
        base_evals: a dict shared across calls (held-out set -> the base's ``evaluate.EvalResult``, and its grid
            evaluation), so that :func:`compare_arms` evaluates each base once for all its arms; None: one for this
            call. The base is evaluated (:func:`evaluate_base`) only when a seed needs training.
        jobs: seeds trained at once, each in its own process (``jrl_core.executor``, local processes, spawned; each
            with ``OMP_NUM_THREADS`` = cores // jobs). Results are the same as one at a time (each seed is
            deterministic; tested); on 2 cores two GRPO runs with one thread each finish in 0.77× the time of two
            in a row with two threads. Needs ``extra_eval=None`` (its function need not pickle); each worker
            gets the base's scores from the first one, which scores it once. A seed that fails does not stop the others; the first error is raised after
            all finish, naming the seeds (finished seeds are kept and read back next time).
    Returns:
        ``{"seeds": {seed: {"before", "after" (summaries), "eval_before", "eval_after" (per-puzzle tables),
        "grpo_log", "sft_log", "grid", "metrics", "extra" (None without ``extra_eval``), "cached"}}, "table":
        DataFrame (one row per seed: seed, before, after, gain, after_ci_low/high (Wilson), cached), "after":
        bootstrap over seeds and photos (``jrl_core.stats.bootstrap``), "gain": the paired after − before
        difference, "spread": per-seed after-accuracy spread (``stats.seed_summary``), "metrics": the written
        record}``.
    Raises:
        ValueError: no seeds, or a seed that is not an int ≥ 0; ``jobs`` < 1, or > 1 with an ``extra_eval``.
        RuntimeError: a seed trained in a worker process failed (after the other seeds finished).
    """
    import pandas as pd

    from jrl_core import stats

    seeds = list(dict.fromkeys(seeds))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: give a non-empty list of ints >= 0, e.g. [0, 1, 2].")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: give the number of seeds to train at once, an int >= 1.")
    if jobs > 1 and extra_eval is not None:
        raise ValueError("run_seeds(jobs > 1) trains seeds in worker processes and cannot run an extra_eval there; "
                         "use jobs=1 with extra_eval.")
    root = Path(run_dir)
    base_evals = {} if base_evals is None else base_evals
    extra_key = getattr(extra_eval, "key", None)
    def base_for(seed_exp: Experiment) -> tuple:
        """The base's (before, grid_before) for a seed's recipe: evaluated on first need, then shared."""
        key = _base_key(seed_exp)
        if key not in base_evals or (grid is not None and (key, grid) not in base_evals):
            before, grid_before = evaluate_base(seed_exp, grid)
            base_evals.setdefault(key, before)
            if grid is not None:
                base_evals[(key, grid)] = grid_before
        return base_evals[key], base_evals.get((key, grid)) if grid is not None else None

    trained = _train_seeds_in_parallel(exp, root, seeds, grid=grid, resume=resume, jobs=jobs) if jobs > 1 else []
    per_seed = {}
    for s in seeds:
        folder = runs.RunFolder(root / f"seed{s}")
        seed_exp = apply_overrides(exp, {"seed": s})
        done = _seed_outputs(folder, seed_exp) if resume or s in trained else None
        if done is not None and s in trained:
            done["cached"] = False  # trained just now, in a worker process
        if done is not None:
            done["extra"] = runs.read_extra(folder.extra, extra_key) if extra_eval is not None else None
            if extra_eval is not None and done["extra"] is None:
                done = None  # killed before its extra evaluation, or measured by another one: rerun the seed
        if done is None:
            # a folder from another recipe is started over, not resumed from its checkpoints
            fresh = resume and runs.read_metrics(folder.root) is None
            folder.extra.unlink(missing_ok=True)  # never pair an old extra result with the new run
            before, grid_before = base_for(seed_exp)
            out = run_experiment(seed_exp, folder.root, grid=grid, resume=fresh, before=before,
                                 grid_before=grid_before)
            extra = None
            if extra_eval is not None:
                extra = extra_eval(out["model"], out["processor"], exp.name)
                runs.write_extra(folder.extra, extra, extra_key)
            done = {"before": out["before"], "after": out["after"], "eval_before": out["eval_before"].table,
                    "eval_after": out["eval_after"].table, "grpo_log": out["grpo_log"], "sft_log": out["sft_log"],
                    "grid": out["grid"], "metrics": out["metrics"]["metrics"], "extra": extra, "cached": False}
            del out
        per_seed[s] = done
    table = pd.DataFrame([{"seed": s, "before": d["before"]["accuracy"], "after": d["after"]["accuracy"],
                           "gain": d["after"]["accuracy"] - d["before"]["accuracy"],
                           "after_ci_low": d["after"]["ci_low"], "after_ci_high": d["after"]["ci_high"],
                           "share_A_after": d["after"]["share_A"], "cached": d["cached"]} for s, d in per_seed.items()])
    after = stats.bootstrap({s: d["eval_after"] for s, d in per_seed.items()})
    before = stats.bootstrap({s: d["eval_before"] for s, d in per_seed.items()})
    gain = stats.bootstrap({s: d["eval_after"] for s, d in per_seed.items()},
                           {s: d["eval_before"] for s, d in per_seed.items()})
    spread = stats.seed_summary(table["after"])
    metrics = {"acc_before": before["mean"], "acc_after_mean": after["mean"], "acc_after_low": after["low"],
               "acc_after_high": after["high"], "gain_mean": gain["mean"], "gain_low": gain["low"],
               "gain_high": gain["high"], "seed_sd": spread["sd"], "seed_min": spread["min"],
               "seed_max": spread["max"], "n_seeds": len(seeds), "n_photos": after["n_photos"],
               "n_test": after["n_puzzles"],
               **{f"acc_after_seed{s}": d["after"]["accuracy"] for s, d in per_seed.items()}}
    from jrl_core import report

    m0, n0 = exp.curriculum_().sizes[0]
    result = {"seeds": per_seed, "table": table, "after": after, "before": before, "gain": gain, "spread": spread}
    trainer = {"grpo": "GRPO", "sft": "SFT", "sft_grpo": "SFT then GRPO"}[exp.algorithm]
    finding = {"id": "F1" if _paper_setting(exp) else None,
               "claim": f"{trainer} raises held-out {m0}x{n0} {exp.question_type} accuracy ({exp.mode}) above the base"
                        + (" (Jigsaw-R1 Finding 1)" if _paper_setting(exp) else ""),
               "paper": (report.paper_claim_table1(exp.question_type, m0, n0, exp.think) if _paper_setting(exp)
                         else None) or "no paper number",
               "ours": report.seeds_text(result, scale=exp.scale),
               "difference": f"{100 * gain['mean']:+.1f} points ({100 * gain['low']:+.1f} to {100 * gain['high']:+.1f})",
               "verdict": stats.verdict(gain["low"], gain["high"]),
               "rule": "reproduced when the 95% interval of the paired gain excludes 0 upwards (jrl_core.stats.verdict)"}
    metrics["verdict"] = finding["verdict"]
    record = runs.MetricsRecord(kind="seeds", title=exp.name, model=exp.model, scale=exp.scale, metrics=metrics,
                                paper_vs_ours=_paper_rows(exp, before["mean"], after["mean"]),
                                details={"experiment": exp.to_dict(), "seeds": table.to_dict("records"),
                                         "after": after, "before": before, "gain": gain, "spread": spread,
                                         "finding": finding})
    runs.write_metrics(root, record)
    return {"seeds": per_seed, "table": table, "after": after, "before": before, "gain": gain, "spread": spread,
            "metrics": record.to_dict()}


def seed_grids(res: dict):
    """The evaluation grid of a :func:`run_seeds` result: ``{"before": the base's grid (the same for every
    seed), "after": per cell the mean accuracy over seeds, with ``seed_min``/``seed_max`` and ``n_seeds``}``;
    None when the run had no grid. Rows: size, question_type, mode, accuracy, random (+ interval columns of
    the base)."""
    import pandas as pd

    frames = {s: d["grid"] for s, d in res["seeds"].items() if d.get("grid") is not None}
    if not frames:
        return None
    first = next(iter(frames.values()))
    before = first[first["stage"] == "before"].reset_index(drop=True)
    after = pd.concat([g[g["stage"] == "after"].assign(seed=s) for s, g in frames.items()], ignore_index=True)
    keys = ["size", "question_type", "mode"]
    agg = after.groupby(keys, sort=False).agg(accuracy=("accuracy", "mean"), seed_min=("accuracy", "min"),
                                              seed_max=("accuracy", "max"), n_seeds=("seed", "nunique"),
                                              random=("random", "first"), n=("n", "first")).reset_index()
    return {"before": before, "after": agg}


def _weights_sha256(folder: Path) -> str:
    """sha256 over a model folder's ``*.safetensors`` files (names and bytes, sorted by name: one file or shards).
    Raises ``FileNotFoundError`` naming the folder when it holds none."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to score.")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _scored_once(table_path: Path, key: dict, score):
    """The per-puzzle table at ``table_path`` when its sidecar ``<name>.json`` holds ``key`` (what was scored: the
    model's and the rows' sha256, ...), else ``score()`` written there. The old sidecar goes first, then the table
    and the new sidecar are written (each atomically), so a table is never paired with another model or puzzles."""
    import pandas as pd

    sidecar = table_path.with_suffix(".json")
    try:
        if json.loads(sidecar.read_text(encoding="utf-8")) == key:
            return pd.read_csv(table_path, keep_default_na=False)
    except (OSError, ValueError):
        pass
    table = score()
    sidecar.unlink(missing_ok=True)
    atomic_write_text(table_path, table.to_csv(index=False))
    atomic_write_text(sidecar, json.dumps(key, sort_keys=True))
    return table


def _photo_accuracy(table):
    """A per-puzzle table's accuracy by source photo (``stats.photo_of`` of ``image_id``): DataFrame ``group``,
    ``n``, ``accuracy`` (in [0, 1])."""
    from jrl_core import stats

    return table.groupby(table["image_id"].astype(str).map(stats.photo_of))["correct"].agg(
        n="size", accuracy="mean").reset_index(names="group")


def second_heldout(exp: Experiment, run_dir: str | Path, seeds, *, n_test: int | None = None) -> dict:
    """The base and every seed's trained model scored on the second held-out set (:func:`second_heldout_rows`).

    Each seed must have finished with this recipe (:func:`run_seeds`' record in ``<run_dir>/seed<s>/``); its final
    model (``seed<s>/grpo/final``) is scored once: the table goes to ``seed<s>/eval_second.csv`` with the weights',
    the puzzles' sha256, the dtype and the budget beside it, and is read back while they match; the base's goes to
    ``<run_dir>/base_second.csv``. Greedy decoding, the recipe's evaluation budget (as :func:`run_experiment`).
    Diagnostic of this workbook (not in the papers).

    Args:
        exp: the recipe the seeds were trained with; run_dir: :func:`run_seeds`' folder; seeds: ints ≥ 0;
        n_test: puzzles of the second set (default ``exp.n_test``).
    Returns:
        ``{"base": table, "seeds": {seed: table}, "before": the base's bootstrap, "after": bootstrap over seeds and
        photos (``stats.bootstrap``), "gain": the paired after − base difference, "by_photo": :func:`seed_breakdown`'s
        columns, by photo, "photo_source": exp.photo_source}``; tables as ``evaluate.EvalResult.table``.
    Raises:
        ValueError: seeds not ints ≥ 0; the base is not a local model folder (a hub id: pass its local copy as
            ``model``); the recipe trains on these photos (from :func:`second_heldout_rows`).
        FileNotFoundError: a seed that did not finish with this recipe (not trained, killed, trained with another
            recipe, or an SFT-only recipe without a final model), naming its folder.
    """
    import pandas as pd

    from jrl_core import evaluate, nano, stats

    seeds = list(dict.fromkeys(seeds))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: give a non-empty list of ints >= 0, e.g. [0, 1, 2].")
    root = Path(run_dir)
    folders = {s: runs.RunFolder(root / f"seed{s}") for s in seeds}
    finals = {s: f.trainer_dir("grpo") / "final" for s, f in folders.items()}
    unfinished = [str(f.root) for s, f in folders.items()
                  if not any(finals[s].glob("*.safetensors"))
                  or not _same_recipe(((runs.read_metrics(f.root) or {}).get("details") or {}).get("experiment") or {},
                                      apply_overrides(exp, {"seed": s}).to_dict())]
    if unfinished:
        raise FileNotFoundError(f"no finished seed of this recipe to score on the second held-out set in "
                                f"{', '.join(unfinished)}: run run_seeds with it first (SFT-only recipes keep no "
                                "final model).")
    base_path = Path(nano.resolve_model(exp.model, **exp.nano))
    if not base_path.is_dir():
        raise ValueError(f"model={exp.model!r} is not a local folder; the second held-out set scores weights on "
                         "disk: pass the model's local copy as `model`.")
    budget = exp.eval_max_new_tokens or exp.grpo_settings().max_completion_length
    base_model, processor = nano.load_model(str(base_path), dtype=exp.dtype)
    rows = second_heldout_rows(exp, view_size=nano.view_size(processor), n_test=n_test)
    digest = rows_digest(rows)  # once: the puzzles are the same for every model

    def score(folder: Path, out: Path, model=None):
        """A model folder's table; its weights are loaded only when the cached table does not match."""
        def run():
            mdl, proc = (model, processor) if model is not None else nano.load_model(str(folder), dtype=exp.dtype)
            return evaluate.evaluate(mdl, proc, rows, max_new_tokens=budget, progress=False).table

        key = {"weights_sha256": _weights_sha256(folder), "rows_sha256": digest, "dtype": str(exp.dtype),
               "max_new_tokens": budget}
        return _scored_once(out, key, run)

    base = score(base_path, root / "base_second.csv", base_model)
    tables = {s: score(finals[s], folders[s].root / "eval_second.csv") for s in seeds}
    by_photo = pd.concat([_photo_accuracy(t).assign(by="photo", seed=s, stage=stage)
                          for stage, tabs in (("before", {s: base for s in seeds}), ("after", tables))
                          for s, t in tabs.items()], ignore_index=True)
    return {"base": base, "seeds": tables, "before": stats.bootstrap({s: base for s in seeds}),
            "after": stats.bootstrap(tables), "gain": stats.bootstrap(tables, {s: base for s in seeds}),
            "by_photo": by_photo[["seed", "stage", "by", "group", "n", "accuracy"]],
            "photo_source": exp.photo_source}


def seed_breakdown(res: dict, rows: list[dict]):
    """Accuracy of every seed before and after training, broken down by held-out photo and, for pair
    questions, by answer cell (:func:`jrl_core.evaluate.answer_cells`: correct choice text × its letter).

    A mean over 300 puzzles hides where a policy fails: on the nano model one hard photo (brick, a periodic
    texture) or one prompt variant answered by a constant letter can cap it. Diagnostic of this workbook
    (not in the papers).

    Args:
        res: :func:`run_seeds`'s result (each seed's ``eval_before``/``eval_after``: a per-puzzle table or an
            ``evaluate.EvalResult``).
        rows: the held-out rows those tables score, in order (:func:`heldout_rows`; only prompts, solutions and
            image ids are read, so any view size will do).

    Returns:
        A long DataFrame: ``seed``, ``stage`` ("before"/"after"), ``by`` ("photo"/"answer cell"), ``group``
        (the photo, or ``"<choice text> as (<letter>)"``), ``n`` and ``accuracy`` (in [0, 1]).

    Raises:
        ValueError: a table's puzzles are not ``rows`` (other ids or another length).
    """
    import pandas as pd

    from jrl_core import evaluate

    pair = all(r.get("question_type") == "pair" for r in rows)
    parts = []
    for seed, out in res["seeds"].items():
        for stage in ("before", "after"):
            table = out.get(f"eval_{stage}")
            if table is None:
                continue
            table = table.table if isinstance(table, evaluate.EvalResult) else table
            evaluate.require_same_puzzles(rows, table, f"seed_breakdown (seed {seed}, {stage})")
            parts.append(_photo_accuracy(table).assign(by="photo", seed=seed, stage=stage))
            if pair:
                cells = evaluate.answer_cells(rows, table)
                cells = cells.assign(group=cells["answer"] + " as (" + cells["letter"] + ")", by="answer cell")
                parts.append(cells[["group", "n", "accuracy", "by"]].assign(seed=seed, stage=stage))
    cols = ["seed", "stage", "by", "group", "n", "accuracy"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def seed_rollout_cells(exp: Experiment, run_dir: str | Path, seeds, *, window: int = 25):
    """:func:`jrl_core.evaluate.rollout_cells` of every seed of a :func:`run_seeds` folder: how each answer cell's
    rollouts did during training, per window of steps, and the share of its groups with zero reward std. Shows
    when a prompt variant locks onto one letter (the cell's accuracy falls to 0 and its groups stop giving a
    gradient). Diagnostic of this workbook (not in the papers).

    Args:
        exp: the recipe the seeds ran (seed replaced per seed, as :func:`run_seeds` does).
        run_dir: the multi-seed folder (``<run_dir>/seed<s>/`` with the GRPO completion log).
        seeds: the seeds to read.
        window: steps per window (>= 1).

    Returns:
        A long DataFrame: ``seed`` plus :func:`~jrl_core.evaluate.rollout_cells`'s columns.

    Raises:
        FileNotFoundError: a seed has no completion log (not run, or not a GRPO recipe).
        ValueError: as :func:`~jrl_core.evaluate.rollout_cells` (e.g. the log is from another recipe).
    """
    import pandas as pd

    from jrl_core import evaluate, nano
    from jrl_core.analysis import load_completion_log

    parts = []
    for s in seeds:
        seed_exp = apply_overrides(exp, {"seed": s})
        settings = seed_exp.grpo_settings()
        folder = runs.RunFolder(Path(run_dir) / f"seed{s}")
        log = load_completion_log(folder.trainer_dir("grpo"))
        rows = train_rows(seed_exp, steps=settings.steps, prompts_per_step=settings.prompts_per_step,
                          view_size=nano.NanoConfig().image_size, render=False)  # prompts and ids only
        parts.append(evaluate.rollout_cells(log, rows, window=window).assign(seed=s))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame[["seed", *[c for c in frame.columns if c != "seed"]]] if parts else frame

