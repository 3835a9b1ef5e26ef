"""Held-out evaluation: batched greedy generation on a fixed, seeded puzzle set.

Jigsaw-R1 evaluates with greedy decoding (``max_new_tokens=512``) on 1,000 test
puzzles built with ``jigsaw_seed=0`` (paper_spec §1.4); pair questions are scored by
the letter, full questions by exact match in the tables. This module does the same
for any model (nano or a real checkpoint), batched with left padding, and keeps every
completion so that the analysis notebooks can read them back.

* :func:`evaluate` scores any rows in the puzzle-row format (jigsaw puzzles, the
  downstream benchmarks of ``jrl_core.downstream``, the generalization suite of
  ``jrl_core.generalization``);
* :func:`evaluate_grid` is the sizes × question types × thinking modes grid of
  Jigsaw-R1 Tables 1 (pair) and 7 (full);
* :func:`generate` runs on transformers (``backend="hf"``, default) or, for paper-scale
  models on a GPU, on vLLM (``backend="vllm"``, optional dependency).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jrl_core import answers, rewards
from jrl_core.atomic import atomic_write_text
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import ANSWER_TYPE, PuzzleSpec, build_rows, random_baseline

#: Puzzle sizes of Jigsaw-R1 Tables 1 and 7 (columns 2x1, 3x1, 4x1, 2x2).
PAPER_SIZES: tuple[tuple[int, int], ...] = ((2, 1), (3, 1), (4, 1), (2, 2))
#: Generation backends of :func:`generate`.
BACKENDS = ("hf", "vllm")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion ``k/n``; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


HELDOUT_SEED = 0
"""Seed of the fixed held-out sets: the same puzzles for every run seed, arm and machine (the reference tests
with ``jigsaw_seed=0``), so that runs with different seeds are compared on one set."""


def test_rows(spec: PuzzleSpec, *, n_items: int = 300, image_size: int, seed: int = HELDOUT_SEED,
              source: str = "skimage", record=None) -> list[dict]:
    """The fixed held-out puzzle set: ``n_items`` puzzles on views of the *test* photos.

    View i is ``sample_views(test photos, n_items, seed=10_000 + seed, size=image_size)[i]`` and puzzle i
    uses ``item_seed(f"test:{seed}:{i}", 0)``, so the set is identical on every run and machine.

    Args:
        spec: puzzle size, question type and mode.
        n_items: puzzles (≥ 0).
        image_size: view side in pixels, the model's input side (``jrl_core.nano.view_size(processor)``).
        seed: held-out set seed (default :data:`HELDOUT_SEED`; not the training seed).
        source: photo source (``jrl_core.images.load_photos``).
        record: a ``jrl_core.images.SkipRecord`` counting skipped photo files.
    Raises:
        ValueError: from ``load_photos`` (no test photos) or ``PuzzleSpec``.
    """
    photos = load_photos(source, "test", record=record)
    views = sample_views(photos, n_items, seed=10_000 + seed, size=image_size)
    rows = []
    for i, v in enumerate(views):
        rows.extend(build_rows([v], spec, n_items=1, seed=f"test:{seed}:{i}"))
    return rows


@dataclass
class EvalResult:
    """Scores of one evaluation. ``table`` has one row per puzzle (completion, solution,
    accuracy, format, first letter…); the summary fields are shares in [0, 1]."""

    table: pd.DataFrame
    accuracy: float
    ci95: tuple[float, float]
    valid: float
    share_a: float
    random: float
    n: int

    def summary(self) -> dict:
        """Scalar metrics as a dict (for run records and plots)."""
        return {"accuracy": self.accuracy, "ci_low": self.ci95[0], "ci_high": self.ci95[1],
                "valid": self.valid, "share_A": self.share_a, "random": self.random, "n": self.n}


def _row_images(row: dict) -> list:
    """The images of one row as a list (a row may carry one PIL image or a list of them)."""
    image = row.get("image")
    if image is None:
        return []
    return list(image) if isinstance(image, (list, tuple)) else [image]


def generate(model, processor, rows: Sequence[dict], *, batch_size: int = 64, max_new_tokens: int = 16,
             progress: bool = True, desc: str = "evaluating", backend: str = "hf") -> list[str]:
    """Greedy completions for ``rows`` (dataset rows with a chat ``prompt`` and ``image``).

    Args:
        model: a transformers model (``backend="hf"``), or for ``backend="vllm"`` a
            ``vllm.LLM`` or a model folder / hub id to open with it.
        processor: the model's processor (chat template, tokenizer, image processor).
        rows: N rows; ``image`` is a PIL image or a list of them (one ``{"type": "image"}``
            slot each in the prompt, in order).
        batch_size: prompts per ``generate`` call (hf; left padding; prompts are grouped by
            length to cut padding, the output keeps row order). 1 = per-sample loop.
        max_new_tokens: cap per completion (the paper uses 512; single letters need 2-4).
        progress: tqdm bar over batches.
        backend: ``"hf"`` (default) or ``"vllm"`` (lazy import; see :func:`_generate_vllm`).

    Returns:
        N decoded strings, special tokens removed, in row order.

    Raises:
        ValueError: unknown backend. ImportError: ``backend="vllm"`` without vLLM installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend == "vllm":
        return _generate_vllm(model, processor, rows, max_new_tokens=max_new_tokens, progress=progress)
    import torch
    from tqdm.auto import tqdm

    tok = processor.tokenizer
    tok.padding_side = "left"
    model.eval()
    device = next(model.parameters()).device
    texts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    # Similar lengths batched together: less padding for mixed-length sets; results return in row order.
    order = sorted(range(len(rows)), key=lambda i: (len(texts[i]), i))
    out: list[str] = [""] * len(rows)
    bar = tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress, leave=False)
    with torch.inference_mode():
        for s in bar:
            idx = order[s:s + batch_size]
            images = [img for i in idx for img in _row_images(rows[i])]
            batch = processor(text=[texts[i] for i in idx], images=images or None, return_tensors="pt",
                              padding=True).to(device)
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            new = gen[:, batch["input_ids"].shape[1]:]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True), strict=True):
                out[i] = text
    return out


VLLM_INSTALL_HINT = (
    "generate(backend='vllm') needs the optional vLLM package (Linux with a CUDA GPU): "
    "`pip install vllm` in the workbook's environment (pick the wheel matching its torch), "
    "or use backend='hf' (transformers, works everywhere)."
)


def _generate_vllm(model, processor, rows: Sequence[dict], *, max_new_tokens: int, progress: bool) -> list[str]:
    """Greedy completions with vLLM (paper-scale evaluation on a GPU; not exercised in the tests
    beyond the missing-package error). ``model`` is a ``vllm.LLM`` or a path / hub id; prompts
    are rendered with ``processor``'s chat template and the images passed as multi-modal data."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(VLLM_INSTALL_HINT) from err
    max_images = max((len(_row_images(r)) for r in rows), default=1) or 1
    if isinstance(model, (str, os.PathLike)):
        model = vllm.LLM(model=str(model), limit_mm_per_prompt={"image": max_images})
    params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    requests = []
    for r in rows:
        text = processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        images = _row_images(r)
        request = {"prompt": text}
        if images:
            request["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
        requests.append(request)
    outputs = model.generate(requests, params, use_tqdm=progress)
    return [o.outputs[0].text for o in outputs]


def _random_rate(rows: Sequence[dict]) -> float:
    """Mean random-guess accuracy of ``rows``: their ``random`` entries when present (downstream
    and suite rows carry one), else :func:`random_baseline` of the first row; NaN when undefined
    (box answers, open counting)."""
    if not rows:
        return random_baseline("pair", 2, 1)
    if all("random" in r for r in rows):
        values = [float(r["random"]) for r in rows]
        return float(sum(values) / len(values))
    q = rows[0]
    try:
        return random_baseline(q.get("question_type", ""), q["m"], q["n"])
    except (ValueError, KeyError, TypeError):
        return float("nan")


def evaluate(model, processor, rows: Sequence[dict], *, batch_size: int = 64, max_new_tokens: int = 16,
             progress: bool = True, desc: str = "evaluating", backend: str = "hf") -> EvalResult:
    """Greedy accuracy of ``model`` on ``rows`` with its 95% interval and answer shares.

    Accuracy is the protocol's accuracy reward (letter: exact; grid: exact match, as
    the paper's tables; point: centre in box); the table's ``score`` column keeps the
    reward itself (grid: the fractional share of positions right, protocol §5);
    ``valid`` is the share passing the format reward; ``share_a`` the share of
    extracted letter answers equal to "A" (bias swings of a nano model move greedy
    accuracy by ±0.2, so report it beside accuracy). ``random`` is the mean of the
    rows' ``random`` entries when they have one, else ``random_baseline`` of the first
    row (NaN when undefined). Rows with a ``task`` column keep it in the table.
    """
    completions = generate(model, processor, rows, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           progress=progress, desc=desc, backend=backend)
    cols = {k: [r.get(k) for r in rows] for k in ("solution", "answer_type", "m", "n", "mode")}
    acc = rewards.accuracy_reward(completions, **cols)
    fmt = rewards.format_reward(completions, **{k: v for k, v in cols.items() if k != "solution"})
    exact = [1.0 if (a >= 1.0) else 0.0 for a in acc]
    letters = [rewards.parse_letter(rewards.extract_answer(c, mode=md)) for c, md in zip(completions, cols["mode"], strict=True)]
    table = pd.DataFrame({
        "image_id": [r.get("image_id", "") for r in rows],
        "m": cols["m"], "n": cols["n"], "question_type": [r.get("question_type", "") for r in rows],
        "solution": cols["solution"], "completion": completions, "score": acc, "correct": exact,
        "format": fmt, "letter": letters,
    })
    if any("task" in r for r in rows):
        table["task"] = [r.get("task", "") for r in rows]
    k = int(sum(exact))
    n = len(rows)
    return EvalResult(
        table=table,
        accuracy=k / n if n else 0.0,
        ci95=wilson_interval(k, n),
        valid=float(sum(f >= 1.0 for f in fmt) / n) if n else 0.0,
        share_a=float(sum(x == "A" for x in letters) / n) if n else 0.0,
        random=_random_rate(rows),
        n=n,
    )


# ---------------------------------------------------------------- Tables 1 and 7: the evaluation grid


_CHOICE_LINE = re.compile(r"^\(([A-Z])\) (.+)$", re.MULTILINE)


def choice_texts(row: dict) -> dict[str, str]:
    """The lettered choices of a multiple-choice row's prompt, ``{"A": "1 is directly above 2", ...}``.

    Reads the prompt's ``"(X) text"`` lines after removing the row's thinking-mode suffix
    (``jrl_core.modes``; some modes join it with a space, so it would otherwise end the last choice).
    Choices laid out as blocks (``"(A)\n<grid>"``, full questions) are not single lines and are not read.

    Returns:
        Letter → choice text, in prompt order; empty when the prompt has no one-line lettered choices.
    """
    from jrl_core.modes import MODES
    from jrl_core.rows import prompt_text

    text = prompt_text(row)
    mode = MODES.get(row.get("mode", ""))
    if mode is not None:
        try:
            suffix = mode.suffix(row.get("answer_type", "letter"), row.get("m"), row.get("n"))
        except ValueError:  # an answer type the mode cannot phrase: nothing to strip
            suffix = ""
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
    return {letter: choice.strip() for letter, choice in _CHOICE_LINE.findall(text)}


def require_same_puzzles(rows: Sequence[dict], table: pd.DataFrame, who: str) -> None:
    """Check that ``table`` (an :func:`evaluate` per-puzzle table) scores exactly ``rows``, in order.

    Raises:
        ValueError: naming ``who``: other length, no ``correct`` column, or other image ids (checked when the
            table has an ``image_id`` column), with the fix.
    """
    if len(rows) != len(table):
        raise ValueError(f"{who}: {len(rows)} rows but {len(table)} table rows; pass the table "
                         "evaluate() returned for these rows.")
    if "correct" not in table:
        raise ValueError(f"{who}: the table has no 'correct' column; pass the table evaluate() returned.")
    if "image_id" in table and table["image_id"].astype(str).tolist() != [str(r.get("image_id", "")) for r in rows]:
        raise ValueError(f"{who}: the table scores other puzzles (image ids differ from the rows'); pass the "
                         "rows the table was evaluated on, in the same order (experiment.heldout_rows).")


def answer_cell(row: dict, who: str = "answer_cell") -> tuple[str, str]:
    """A multiple-choice row's answer cell: ``(text of the correct choice, its letter)``.

    Raises:
        ValueError: naming ``who``: the row has no one-line lettered choices or its solution is not one of
            their letters (not a multiple-choice row: use pair questions).
    """
    choices = choice_texts(row)
    solution = row.get("solution")
    if solution not in choices:
        raise ValueError(f"{who} is not a multiple-choice row (solution {solution!r}, lettered choices "
                         f"{sorted(choices)}); use pair questions.")
    return choices[solution], solution


def answer_cells(rows: Sequence[dict], table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of a multiple-choice evaluation per cell (correct choice's text × its letter).

    Choice letters are drawn at random per puzzle, so a model that reads both the image and the options
    scores alike in every cell. A model that has learned a shortcut does not. A 2x1 pair question has
    8 cells: 4 correct texts ("1 is directly above 2", "1 is directly below 2", "2 is directly above 1",
    "2 is directly below 1") × 2 letters; larger grids and ``shuffle_mn`` give many more, each with few
    puzzles, so read those with their ``n``. On nano-v6 after GRPO, 2x1: 0.75-1.00 in seven cells and
    0.00 in "1 is directly below 2" as (A) in four seeds of five — the prompt variant "(A) 1 is directly
    below 2 (B) 1 is directly above 2" answered B whatever the image (README, session 9). A diagnostic of
    this workbook (not in the papers).

    Args:
        rows: the N evaluated rows (prompts with one-line lettered choices, :func:`choice_texts`; a
            ``solution`` that is one of the letters).
        table: :func:`evaluate`'s per-puzzle table for those rows, in row order (needs ``correct``; its
            ``image_id`` column, when present, must list the rows' ids).

    Returns:
        One row per cell, sorted by answer then letter: ``answer`` (the correct choice's text), ``letter``
        (its letter), ``n`` (puzzles) and ``accuracy`` (share correct, in [0, 1]).

    Raises:
        ValueError: ``table`` does not score ``rows`` (other length or other image ids), has no ``correct``
            column, or a row has no one-line lettered choices or a solution that is not one of its letters
            (not a multiple-choice row: use pair questions).
    """
    require_same_puzzles(rows, table, "answer_cells")
    answers_, letters = [], []
    for i, row in enumerate(rows):
        answer, letter = answer_cell(row, f"answer_cells: row {i} ({row.get('image_id', '?')})")
        answers_.append(answer)
        letters.append(letter)
    frame = pd.DataFrame({"answer": answers_, "letter": letters, "correct": table["correct"].to_numpy(float)})
    cells = frame.groupby(["answer", "letter"], sort=True)["correct"].agg(n="size", accuracy="mean")
    return cells.reset_index()


def rollout_cells(log: pd.DataFrame, rows: Sequence[dict], *, window: int = 25) -> pd.DataFrame:
    """Training-time view of :func:`answer_cells`: the rollouts of a GRPO run per window of steps and
    answer cell, with the share of groups whose rewards do not vary (zero reward std: no advantage, so
    no gradient). A prompt variant that locks onto one letter shows as a cell whose accuracy falls to
    0 while its zero-std share rises to 1: its groups stop teaching anything. A diagnostic of this
    workbook (not in the papers).

    Args:
        log: the completion log (:func:`jrl_core.analysis.load_completion_log`): ``step``, ``prompt_id``
            and ``reward_accuracy`` (in [0, 1]) per rollout.
        rows: the run's training rows (:func:`jrl_core.experiment.train_rows` with the run's seed, steps
            and prompts per step), multiple-choice rows as for :func:`answer_cells`.
        window: steps per window (>= 1); window w covers steps ``w·window + 1 … (w+1)·window``.

    Returns:
        One row per (window, cell): ``first_step``, ``answer``, ``letter``, ``groups`` (prompt groups
        seen), ``accuracy`` (mean accuracy reward of their rollouts) and ``zero_std`` (share of those
        groups whose accuracy rewards are all equal), sorted by first step, answer, letter.

    Raises:
        ValueError: ``window`` < 1; the log lacks a needed column; a logged prompt_id is not among
            ``rows`` (other recipe or seed); a row is not multiple-choice.
    """
    from jrl_core.rows import prompt_id

    if window < 1:
        raise ValueError(f"rollout_cells: window must be >= 1 steps, got {window}.")
    missing_ = [c for c in ("step", "prompt_id", "reward_accuracy") if c not in log]
    if missing_:
        raise ValueError(f"rollout_cells: the log has no {missing_} column(s); pass "
                         "jrl_core.analysis.load_completion_log(<run folder>) of a GRPO run with an accuracy reward.")
    cell_of = {prompt_id(row): answer_cell(row, f"rollout_cells: row {prompt_id(row)}") for row in rows}
    unknown = sorted(set(log["prompt_id"].astype(str)) - set(cell_of))
    if unknown:
        raise ValueError(f"rollout_cells: {len(unknown)} logged prompt_id(s) (e.g. {unknown[0]!r}) are not in rows; "
                         "pass the training rows of this run (same recipe, seed, steps and prompts per step).")
    groups = log.groupby(["step", log["prompt_id"].astype(str)])["reward_accuracy"].agg(["mean", "std", "size"])
    groups = groups.reset_index()
    groups["zero_std"] = groups["std"].fillna(0.0).le(1e-12)
    groups["answer"] = [cell_of[p][0] for p in groups["prompt_id"]]
    groups["letter"] = [cell_of[p][1] for p in groups["prompt_id"]]
    groups["first_step"] = (groups["step"].astype(int) - 1) // window * window + 1
    out = groups.groupby(["first_step", "answer", "letter"], sort=True).agg(
        groups=("mean", "size"), accuracy=("mean", "mean"), zero_std=("zero_std", "mean"))
    return out.reset_index()


def default_max_new_tokens(question_type: str, m: int, n: int) -> int:
    """Non-thinking completion cap for a puzzle question: the budget of its answer type
    (``jrl_core.answers.max_new_tokens``: 4 tokens for a letter, 8 for a number, ``4·m·n + 4`` for an
    m×n grid, 32 for a box).

    Raises:
        ValueError: unknown question type.
    """
    if question_type not in ANSWER_TYPE:
        raise ValueError(f"unknown question_type {question_type!r}; use one of {', '.join(ANSWER_TYPE)}.")
    return answers.max_new_tokens(ANSWER_TYPE[question_type], m, n)


def _cell_name(size: str, question_type: str, mode: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{size}_{question_type}_{mode}")


def evaluate_grid(
    model,
    processor,
    sizes: Sequence[tuple[int, int]] = PAPER_SIZES,
    question_types: Sequence[str] = ("pair", "full"),
    thinks: Sequence[bool | str] = (False, True),
    *,
    n_items: int = 100,
    seed: int = HELDOUT_SEED,
    source: str = "skimage",
    image_size: int | None = None,
    shuffle_mn: bool = True,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    max_new_tokens_think: int = 512,
    save_dir: str | Path | None = None,
    return_tables: bool = False,
    progress: bool = True,
    backend: str = "hf",
) -> pd.DataFrame | tuple[pd.DataFrame, dict[tuple[str, str, str], pd.DataFrame]]:
    """Jigsaw accuracy over sizes × question types × thinking modes (Jigsaw-R1 Tables 1 and 7).

    Every cell is a fixed seeded test set (:func:`test_rows`, the same ``n_items`` test-photo
    views in every cell; the paper uses 1,000 puzzles, the nano default is 100) scored with
    :func:`evaluate`.

    Args:
        model, processor: any model :func:`generate` runs (nano or a real checkpoint).
        sizes: (m, n) grid sizes; default the paper's 2x1, 3x1, 4x1, 2x2.
        question_types: ``"pair"`` (Table 1), ``"full"`` (Table 7), or any other
            ``PuzzleSpec`` question type with a random baseline (``"single"``, ``"multiple"``).
        thinks: thinking modes: ``False``/``True`` (Jigsaw-R1 non-thinking / thinking) or
            ``jrl_core.modes.MODES`` names.
        n_items: puzzles per cell (≥ 1).
        seed: test-set seed (``test_rows(seed=...)``).
        source, image_size: photo source and view side of the test set (None: the processor's,
            :func:`jrl_core.nano.view_size`).
        shuffle_mn: swap m and n with probability 1/2 per puzzle, as the reference test script
            does by default (``test.py --shuffle_mn``); the random baselines are unchanged.
        batch_size: prompts per generate call.
        max_new_tokens: cap for cells without thinking; None = :func:`default_max_new_tokens`.
        max_new_tokens_think: cap for thinking cells (paper: 512).
        save_dir: if given, each cell's per-puzzle table is written to
            ``<save_dir>/<size>_<question type>_<mode>.csv`` and the summary to
            ``<save_dir>/grid_summary.csv`` (atomic writes).
        return_tables: also return the per-puzzle tables.
        progress: tqdm bar over cells (and the inner per-batch bars).
        backend: generation backend (``"hf"`` or ``"vllm"``).

    Returns:
        A DataFrame with one row per cell, in the order sizes × question types × thinks, and
        columns ``size`` ("2x1"), ``question_type``, ``think`` (bool), ``mode``, ``n`` (puzzles),
        ``accuracy`` (exact match, in [0, 1]; the tables' metric), ``score`` (mean accuracy
        reward: full questions the fractional share of positions right, pair the same as
        accuracy), ``ci_low``/``ci_high`` (95% Wilson interval of accuracy), ``random``
        (random-guess accuracy, paper_spec §1.3), ``valid`` (share passing the format reward),
        ``share_A`` and ``max_new_tokens``. With ``return_tables``: ``(summary, tables)`` where
        ``tables[(size, question_type, mode)]`` is that cell's per-puzzle table (see
        :class:`EvalResult`).

    Raises:
        ValueError: empty sizes/question_types/thinks, ``n_items < 1``, or an invalid puzzle
            spec (from ``PuzzleSpec``).
    """
    from tqdm.auto import tqdm

    if not sizes or not question_types or not thinks:
        raise ValueError("evaluate_grid needs at least one size, one question type and one thinking mode.")
    if n_items < 1:
        raise ValueError(f"evaluate_grid: n_items must be >= 1, got {n_items}.")
    specs = []
    for m, n in sizes:
        for qt in question_types:
            for think in thinks:
                if isinstance(think, str):
                    spec = PuzzleSpec(m=m, n=n, question_type=qt, shuffle_mn=shuffle_mn, mode=think)
                else:
                    spec = PuzzleSpec(m=m, n=n, question_type=qt, shuffle_mn=shuffle_mn, think=bool(think))
                specs.append(spec)
    if image_size is None:
        from jrl_core.nano import view_size

        image_size = view_size(processor)
    records, tables = [], {}
    for spec in tqdm(specs, desc="evaluation grid", disable=not progress):
        size, mode = f"{spec.m}x{spec.n}", spec.thinking_mode.name
        if spec.think:
            cap = max_new_tokens_think
        else:
            cap = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(
                spec.question_type, spec.m, spec.n)
        rows = test_rows(spec, n_items=n_items, seed=seed, source=source, image_size=image_size)
        res = evaluate(model, processor, rows, batch_size=batch_size, max_new_tokens=cap, progress=progress,
                       desc=f"{size} {spec.question_type} {mode}", backend=backend)
        table = res.table.assign(size=size, mode=mode, think=spec.think)
        tables[(size, spec.question_type, mode)] = table
        records.append({
            "size": size, "question_type": spec.question_type, "think": spec.think, "mode": mode,
            "n": res.n, "accuracy": res.accuracy, "score": float(table["score"].mean()),
            "ci_low": res.ci95[0], "ci_high": res.ci95[1],
            "random": random_baseline(spec.question_type, spec.m, spec.n, spec.n_c),
            "valid": res.valid, "share_A": res.share_a, "max_new_tokens": cap,
        })
        if save_dir is not None:  # each cell as it finishes: a killed grid keeps the cells it scored
            save_grid(save_dir, None, {(size, spec.question_type, mode): table})
    summary = pd.DataFrame.from_records(records)
    if save_dir is not None:
        save_grid(save_dir, summary, {})
    return (summary, tables) if return_tables else summary


def save_grid(save_dir: str | Path, summary: pd.DataFrame | None, tables: dict) -> None:
    """Write an evaluation grid's files as :func:`evaluate_grid` does with ``save_dir`` (atomic writes): each
    cell's per-puzzle table (``tables[(size, question_type, mode)]``) to ``<save_dir>/<size>_<question
    type>_<mode>.csv`` and ``summary`` (unless None) to ``<save_dir>/grid_summary.csv``."""
    for (size, question_type, mode), table in tables.items():
        atomic_write_text(Path(save_dir) / f"{_cell_name(size, question_type, mode)}.csv", table.to_csv(index=False))
    if summary is not None:
        atomic_write_text(Path(save_dir) / "grid_summary.csv", summary.to_csv(index=False))
