"""Diagnostic: a base model's answer-letter prior per prompt variant on the fixed held-out pair puzzles.

    .venv/bin/python benchmarks/nano_letter_prior.py [CKPT ...] [--size 2x1]

For each checkpoint (default: the shipped nano base), the first answer token's distribution at temperature 1 (what
GRPO samples from) on the recipe's 300 held-out puzzles: the share of probability on the letters, and per prompt
variant (the text of choice (A)) the mean P(A) / (P(A) + P(B)). A variant whose prior sits near 0 or 1 is one
whose rollouts rarely disagree; on nano-v6 the variant "(A) 1 is directly below 2" has P(A) ~0.02 and is the one
GRPO leaves answered by a constant letter (``evaluate.answer_cells``). Also per answer cell (the cells of
``evaluate.answer_cells``: the correct choice's text × its letter) the mean probability of the
correct letter, P(gold) / (P(A) + P(B)), and its minimum over cells: a cell the
base answers near-certainly wrong is one GRPO never samples its way out of (session 23: candidate nano-v14's
"1 is directly above 2 as (B)" cell at 0.005 stayed at accuracy 0 in all five seeds). Prints one JSON record per
checkpoint.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jrl_core import evaluate, experiment, nano  # noqa: E402


def letter_prior(path: str, size: str) -> dict:
    model, proc = nano.load_model(nano.resolve_model(path))
    model.eval()
    exp = experiment.load_recipe("nano/rq1_2x1_pair", {"size": size})
    rows = experiment.heldout_rows(exp, view_size=nano.view_size(proc))
    tok = proc.tokenizer
    ida, idb = tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B")
    texts = [proc.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    probs = []
    with torch.no_grad():
        for s in range(0, len(rows), 64):
            batch = proc(text=texts[s:s + 64], images=[r["image"] for r in rows[s:s + 64]], return_tensors="pt",
                         padding=True)
            probs.append(torch.softmax(model(**batch).logits[:, -1], -1)[:, [ida, idb]])
    p = torch.cat(probs)
    variant = [evaluate.choice_texts(r).get("A", "?") for r in rows]
    share_a = (p[:, 0] / p.sum(1)).tolist()
    by = {v: round(sum(a for a, w in zip(share_a, variant, strict=True) if w == v) / variant.count(v), 3)
          for v in sorted(set(variant))}
    cells: dict[str, list[float]] = {}  # evaluate.answer_cell's cells, as answer_cells and the rollout cells name them
    for a, r in zip(share_a, rows, strict=True):
        answer, gold = evaluate.answer_cell(r, "nano_letter_prior")
        cells.setdefault(f"{answer} as ({gold})", []).append(a if gold == "A" else 1 - a)
    by_cell = {c: round(sum(x) / len(x), 3) for c, x in sorted(cells.items())}
    return {"checkpoint": str(path), "size": size, "letter_mass": round(float(p.sum(1).mean()), 3),
            "p_A_by_variant": by, "p_correct_by_cell": by_cell, "min_cell_p_correct": min(by_cell.values())}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", default=["nano"])
    ap.add_argument("--size", default="2x1")
    args = ap.parse_args()
    for ckpt in args.checkpoints:
        print(json.dumps(letter_prior(ckpt, args.size)), flush=True)
