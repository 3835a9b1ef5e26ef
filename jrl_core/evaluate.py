"""Held-out evaluation: batched greedy generation on a fixed, seeded puzzle set.

Jigsaw-R1 evaluates with greedy decoding (``max_new_tokens=512``) on 1,000 test
puzzles built with ``jigsaw_seed=0`` (paper_spec §1.4); pair questions are scored by
the letter, full questions by exact match in the tables. This module does the same
for any model (nano or a real checkpoint), batched with left padding, and keeps every
completion so that the analysis notebooks can read them back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from jrl_core import rewards
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows, random_baseline


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion ``k/n``; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def test_rows(spec: PuzzleSpec, *, n_items: int = 300, seed: int = 0, source: str = "skimage",
              image_size: int = 112) -> list[dict]:
    """The fixed held-out puzzle set: ``n_items`` puzzles on views of the *test* photos.

    Views are ``sample_views(test photos, n_items, seed=seed)`` and puzzle i uses
    ``item_seed(f"test:{seed}", i)``, so the set is identical on every run and machine
    (the reference uses ``jigsaw_seed=0`` for its test set).
    """
    photos = load_photos(source, "test")
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


def generate(model, processor, rows: Sequence[dict], *, batch_size: int = 64, max_new_tokens: int = 16,
             progress: bool = True, desc: str = "evaluating") -> list[str]:
    """Greedy completions for ``rows`` (dataset rows with ``prompt`` and ``image``).

    Batched with left padding; ``max_new_tokens`` caps each completion (the paper uses
    512; single-letter answers need 2). Returns decoded strings without special tokens.
    """
    import torch
    from tqdm.auto import tqdm

    tok = processor.tokenizer
    tok.padding_side = "left"
    model.eval()
    out: list[str] = []
    device = next(model.parameters()).device
    bar = tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress, leave=False)
    with torch.no_grad():
        for s in bar:
            chunk = rows[s:s + batch_size]
            texts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
                     for r in chunk]
            batch = processor(text=texts, images=[r["image"] for r in chunk], return_tensors="pt",
                              padding=True).to(device)
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            new = gen[:, batch["input_ids"].shape[1]:]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
    return out


def evaluate(model, processor, rows: Sequence[dict], *, batch_size: int = 64, max_new_tokens: int = 16,
             progress: bool = True, desc: str = "evaluating") -> EvalResult:
    """Greedy accuracy of ``model`` on ``rows`` with its 95% interval and answer shares.

    Accuracy is the protocol's accuracy reward (letter: exact; grid: exact match, as
    the paper's tables); ``valid`` is the share passing the format reward; ``share_a``
    the share of extracted letter answers equal to "A" (bias swings of a nano model
    move greedy accuracy by ±0.2, so report it beside accuracy).
    """
    completions = generate(model, processor, rows, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           progress=progress, desc=desc)
    cols = {k: [r[k] for r in rows] for k in ("solution", "answer_type", "m", "n", "think")}
    acc = rewards.accuracy_reward(completions, **cols)
    fmt = rewards.format_reward(completions, **{k: v for k, v in cols.items() if k != "solution"})
    exact = [1.0 if (a >= 1.0) else 0.0 for a in acc]
    letters = [rewards.parse_letter(rewards.extract_answer(c, bool(t))) for c, t in zip(completions, cols["think"], strict=False)]
    table = pd.DataFrame({
        "image_id": [r.get("image_id", "") for r in rows],
        "m": cols["m"], "n": cols["n"], "question_type": [r.get("question_type", "") for r in rows],
        "solution": cols["solution"], "completion": completions, "score": acc, "correct": exact,
        "format": fmt, "letter": letters,
    })
    k = int(sum(exact))
    n = len(rows)
    q = rows[0] if rows else {"question_type": "pair", "m": 2, "n": 1}
    return EvalResult(
        table=table,
        accuracy=k / n if n else 0.0,
        ci95=wilson_interval(k, n),
        valid=float(sum(f >= 1.0 for f in fmt) / n) if n else 0.0,
        share_a=float(sum(x == "A" for x in letters) / n) if n else 0.0,
        random=random_baseline(q["question_type"], q["m"], q["n"]),
        n=n,
    )
