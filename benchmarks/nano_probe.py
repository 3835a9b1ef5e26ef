"""Linear probes on a nano checkpoint: does it carry a transferable "halves swapped" feature?

Builds 2x1 pair non-thinking puzzles on views of the *train* photos (probe training set) and the
fixed held-out set (``evaluate.test_rows``, test photos), runs the model once with hidden states,
and fits an L2 logistic regression (torch, LBFGS; L2 strength picked by 5-fold CV on the train
set only) for two labels:

* ``swapped``: the 2x1 puzzle's forward permutation is not the identity (visual only);
* ``gold``: the gold letter is "A" (visual XOR the text: k/l order and choice order).

Feature sets: ``last`` = final-layer state of the last prompt token; ``img_final`` = final-layer
states of the image tokens, concatenated; ``img_embed`` = the vision tower's merged output (the
image tokens' input embeddings), concatenated. Also prints the model's own greedy letter accuracy
and share of "A" on both sets.

Usage: PYTHONPATH=. python benchmarks/nano_probe.py [checkpoint folder | nano overrides as JSON]
(no argument: the default nano build).
"""

from __future__ import annotations

import json
import re
import sys
import time

import torch
from heldout import SPEC
from heldout import test_rows as heldout_rows

from jrl_core import nano
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import build_rows


def swapped_label(row: dict) -> int:
    """1 when the 2x1 puzzle's halves are exchanged, read back from the prompt and the gold letter."""
    text = row["prompt"][0]["content"][-1]["text"]
    k, l = map(int, re.search(r"positions (\d+) and (\d+)", text).groups())  # noqa: E741
    gold = re.search(rf"\({row['solution']}\) (\d+) is directly (above|below) (\d+)", text)
    orig_k_above = gold.group(2) == "above"
    return int(orig_k_above != (k < l))


@torch.no_grad()
def features(model, processor, rows, batch_size: int = 50):
    tok = processor.tokenizer
    image_id = model.config.image_token_id
    ids_a, ids_b = tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B")
    out = {"last": [], "img_final": [], "img_embed": [], "pred_a": []}
    model.eval()
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        texts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in chunk]
        batch = processor(text=texts, images=[r["image"] for r in chunk], return_tensors="pt", padding=True)
        res = model(**batch, output_hidden_states=True)
        hs = res.hidden_states
        mask = batch["input_ids"] == image_id
        n_img = int(mask[0].sum())
        out["last"].append(hs[-1][:, -1])
        out["img_final"].append(hs[-1][mask].reshape(len(chunk), n_img * hs[-1].shape[-1]))
        out["img_embed"].append(hs[0][mask].reshape(len(chunk), n_img * hs[0].shape[-1]))
        logits = res.logits[:, -1]
        out["pred_a"].append((logits[:, ids_a] > logits[:, ids_b]).float())
    return {k: torch.cat(v).float() for k, v in out.items()}


def fit_logreg(x, y, l2: float, iters: int = 100):
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe(xtr, ytr, xte, yte, l2s=(1e-3, 1e-2, 1e-1)) -> dict:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    folds = torch.arange(len(xtr)) % 3
    cv = {}
    for l2 in l2s:
        accs = []
        for f in range(3):
            tr, va = folds != f, folds == f
            w, b = fit_logreg(xtr[tr], ytr[tr], l2)
            accs.append((((xtr[va] @ w + b) > 0).float() == ytr[va]).float().mean().item())
        cv[l2] = sum(accs) / len(accs)
    best = max(cv, key=cv.get)
    w, b = fit_logreg(xtr, ytr, best)
    return {"l2": best, "cv_train": round(cv[best], 3),
            "fit_train": round((((xtr @ w + b) > 0).float() == ytr).float().mean().item(), 3),
            "held_out": round((((xte @ w + b) > 0).float() == yte).float().mean().item(), 3)}


def main(arg: str | None = None, n_train: int = 600, n_test: int = 300) -> dict:
    t0 = time.time()
    if arg and not arg.lstrip().startswith("{"):
        path = arg
    else:
        path = str(nano.build_nano(nano.NanoConfig(**(json.loads(arg) if arg else {}))))
    model, processor = nano.load_model(path)
    size = json.loads(open(f"{path}/nano.json").read())["config"].get("image_size", 112)
    views = sample_views(load_photos("skimage", "train"), n_train, seed=5_000, size=size)
    train_rows = build_rows(views, SPEC, n_items=n_train, seed="probe:train")
    test_rows = heldout_rows(n_test)
    ftr, fte = features(model, processor, train_rows), features(model, processor, test_rows)
    labels = {
        "swapped": (torch.tensor([swapped_label(r) for r in train_rows]).float(),
                    torch.tensor([swapped_label(r) for r in test_rows]).float()),
        "gold": (torch.tensor([r["solution"] == "A" for r in train_rows]).float(),
                 torch.tensor([r["solution"] == "A" for r in test_rows]).float()),
    }
    report = {"checkpoint": path, "model_letter_acc": {
        "train": round(((ftr["pred_a"] == 1) == (labels["gold"][0] == 1)).float().mean().item(), 3),
        "held_out": round(((fte["pred_a"] == 1) == (labels["gold"][1] == 1)).float().mean().item(), 3),
        "share_A_held_out": round(fte["pred_a"].mean().item(), 3)}}
    for lab, (ytr, yte) in labels.items():
        for feat in ("last", "img_final", "img_embed"):
            report[f"{lab}/{feat}"] = probe(ftr[feat], ytr, fte[feat], yte)
    meta = json.loads(open(f"{path}/nano.json").read())
    report["pretraining_held_out"] = meta.get("pretraining", {}).get("held_out_accuracy")
    report["seconds"] = round(time.time() - t0, 1)
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else None), indent=1))
