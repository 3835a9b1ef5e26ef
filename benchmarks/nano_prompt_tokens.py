"""Diagnostic: which tokens of the jigsaw prompts a nano base never saw in pretraining, and whether it answers them
with a bare letter.

    .venv/bin/python benchmarks/nano_prompt_tokens.py [--model data/nano/nano-v15] [--n 300]

For the base (a folder with ``card.json``, e.g. ``data/nano/nano-v15`` or a candidate under ``runs/bases/``) it
prints, for the held-out 2x1 and 1x2 pair prompts (non-thinking, the RQ1 sets, greedy, 8 new tokens):

* the prompt's tokens that no pretraining item of the base's recipe contains (prompts and targets of its
  ``pretrain_tasks`` in both modes, 40 items per task): the nano tokenizer is a phrase-level BPE trained on every
  prompt family, so a jigsaw-only phrase is one token whose embedding pretraining never trained;
* accuracy, the share of completions that are one bare letter (the non-thinking format) and the share of "A", for the
  prompt as rendered and for the prompt with the pair question's sentence ("For patches currently at positions k and
  l, determine their relative position in the original image.") replaced by the ``brighter_grid`` task's wording
  ("Call the brighter half k and the darker half l. Determine the relative position of k and l in the image."); the
  replacement is a diagnostic only (the benchmark never changes a training or evaluation prompt).

Measured (session 22, 300 puzzles per size): nano-v10 answers the 2x1 prompts with a bare letter 59.7% of the time
(97.3% with the sentence replaced), 1x2 75.3% (76.0%); candidate nano-v12 0.0% (97.0%) on 2x1 and 0.0% (89.3%) on
1x2, with 4 of 39 prompt tokens never in its pretraining (nano-v10: 11). One extra space that changes where the BPE
cuts the prompt moved the 2x1 share between 9% and 100% (150 puzzles): whether a base keeps the non-thinking format
on jigsaw prompts depends on tokens its pretraining never showed.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections import Counter
from pathlib import Path

from jrl_core import answers, evaluate, images, nano, perception, puzzles

QUESTION_RE = re.compile(
    r"For patches currently at positions (\d+) and (\d+), determine their relative position in "
    r"the original image\."
)


def pretraining_token_ids(processor, tasks, *, per_task: int = 40) -> set[int]:
    """Token ids of the chat-formatted prompts and targets of ``per_task`` pretraining items per task, in both
    thinking modes (the text a nano base's instruction stage trains on; images are not needed for the ids)."""
    items = perception.make_items(
        images.load_photos("skimage", "train"), per_task * len(tasks), tasks=tasks, seed=3, size=56
    )
    seen: set[int] = set()
    for i, it in enumerate(items):
        for mode in ("non_thinking", "thinking"):
            msgs = [
                *perception.chat_prompt(it.prompt_text(mode)),
                {"role": "assistant", "content": it.target(mode, seed=i)},
            ]
            seen.update(processor.tokenizer(processor.apply_chat_template(msgs, tokenize=False))["input_ids"])
    return seen


def _replace_question(text: str) -> str:
    match = QUESTION_RE.search(text)
    if match is None:
        raise ValueError(
            "the pair question's sentence was not found in the prompt: the prompt template changed; "
            "update QUESTION_RE."
        )
    k, l = match.groups()  # noqa: E741
    return text.replace(
        match.group(0),
        f"Call the brighter half {k} and the darker half {l}. "
        f"Determine the relative position of {k} and {l} in the image.",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(nano.SHIPPED_DIR / nano.BASE_VERSION), help="a nano base folder")
    ap.add_argument("--n", type=int, default=300, help="held-out puzzles per size (the RQ1 set: 300)")
    args = ap.parse_args()
    card = json.loads((Path(args.model) / "card.json").read_text())
    size = card["config"]["image_size"]
    tasks = card["config"]["pretrain_tasks"] or list(perception.DEFAULT_TASKS)
    model, processor = nano.load_model(args.model)[:2]
    seen = pretraining_token_ids(processor, tasks)
    tok = processor.tokenizer
    print(
        f"model {args.model} ({card.get('version')}), view {size} px, pretraining tasks: {', '.join(tasks)}"
    )
    for m, n in ((2, 1), (1, 2)):
        rows = evaluate.test_rows(
            puzzles.PuzzleSpec(m=m, n=n, question_type="pair", think=False), n_items=args.n, image_size=size
        )
        ids = tok(rows[0]["prompt"][0]["content"][-1]["text"])["input_ids"]
        unseen = [tok.decode([i]) for i in ids if i not in seen]
        print(f"\n{m}x{n}: {len(ids)} prompt tokens, {len(unseen)} never in pretraining: {unseen}")
        for how in ("as rendered", "question sentence replaced"):
            rr = rows
            if how != "as rendered":
                rr = copy.deepcopy(rows)
                for r in rr:
                    part = r["prompt"][0]["content"][-1]
                    part["text"] = _replace_question(part["text"])
            outs = evaluate.generate(model, processor, rr, max_new_tokens=8, progress=False)
            letters = [answers.parse_letter(o) for o in outs]
            acc = sum(x == r["solution"] for x, r in zip(letters, rr, strict=True)) / len(rr)
            bare = sum(o.strip() in ("A", "B") for o in outs) / len(rr)
            share_a = sum(x == "A" for x in letters) / len(rr)
            common = Counter(o[:12] for o in outs).most_common(3)
            print(
                f"  {how:27s} accuracy {acc:.3f}  bare letter {bare:.3f}  share A {share_a:.3f}  most common {common}"
            )


if __name__ == "__main__":
    main()
