"""Linear probes: does a model's hidden state carry a transferable "halves swapped" feature?

The nano base must carry the ability GRPO elicits, as the paper's pretrained VLM does, while answering jigsaw
questions at chance (issue: a nano base model that makes RL reproducible). This module measures the first
half: 2x1 pair non-thinking puzzles (the RQ1 recipe's) on views of the *train* photos form the probe's training
set, the recipe's fixed held-out set (test photos) its test set; the model runs once with hidden states, and an
L2 logistic regression (torch LBFGS; L2 strength by 3-fold cross-validation on the training set only) is fit
for the label *swapped* (the puzzle's forward permutation is not the identity: a visual property alone).

Feature sets: ``last`` = final-layer state of the last prompt token (what the answer is read from);
``img_final`` = final-layer states of the image tokens, concatenated.
"""

from __future__ import annotations

import re

import torch

from jrl_core import experiment, nano, stats

RECIPE = "nano/rq1_2x1_pair"
"""The puzzles probed: RQ1's 2x1 pair, non-thinking."""


def swapped_label(row: dict) -> int:
    """1 when a 2x1 (or 1x2) pair puzzle's halves are exchanged, read back from its prompt and gold letter.

    The prompt asks about the patches at positions k and l and offers "k is directly above/below l"
    (left/right for 1x2); the gold choice says where patch k belongs; the halves are swapped exactly when
    that disagrees with the current order (k < l means k is now on top / on the left).

    Raises:
        ValueError: the row is not a 2x1/1x2 pair question.
    """
    if row.get("question_type", "pair") != "pair" or (row.get("m") or 0) * (row.get("n") or 0) != 2:
        raise ValueError("swapped_label needs a 2x1 or 1x2 pair question row (jrl_core.puzzles, question_type pair).")
    text = row["prompt"][0]["content"][-1]["text"] if not isinstance(row["prompt"], str) else row["prompt"]
    pos = re.search(r"positions (\d+) and (\d+)", text)
    gold = re.search(rf"\({row['solution']}\) (\d+) is directly (above|below|to the left of|to the right of) (\d+)",
                     text)
    if pos is None or gold is None:
        raise ValueError("swapped_label needs a 2x1 or 1x2 pair question row (jrl_core.puzzles, question_type pair).")
    k, l = map(int, pos.groups())  # noqa: E741 - the protocol's names
    k_first = gold.group(2) in ("above", "to the left of")
    return int(k_first != (k < l))


@torch.no_grad()
def features(model, processor, rows, batch_size: int = 50) -> dict[str, torch.Tensor]:
    """Hidden-state features of ``rows`` (one forward pass each, greedy answer letter too).

    Returns:
        ``{"last": (N, hidden), "img_final": (N, image tokens × hidden), "pred_a": (N,) 1.0 where the next-token
        logit of "A" beats "B"}``, float32.
    """
    image_id = model.config.image_token_id
    tok = processor.tokenizer
    ids_a, ids_b = tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B")
    out: dict[str, list] = {"last": [], "img_final": [], "pred_a": []}
    model.eval()
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        texts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in chunk]
        batch = processor(text=texts, images=[r["image"] for r in chunk], return_tensors="pt", padding=True)
        res = model(**batch, output_hidden_states=True)
        last = res.hidden_states[-1]
        mask = batch["input_ids"] == image_id
        n_img = int(mask[0].sum())
        out["last"].append(last[:, -1])
        out["img_final"].append(last[mask].reshape(len(chunk), n_img * last.shape[-1]))
        logits = res.logits[:, -1]
        out["pred_a"].append((logits[:, ids_a] > logits[:, ids_b]).float())
    return {k: torch.cat(v).float() for k, v in out.items()}


def _fit(x: torch.Tensor, y: torch.Tensor, l2: float, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
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


def linear_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
                 l2s: tuple[float, ...] = (1e-3, 1e-2, 1e-1), groups: list[str] | None = None) -> dict:
    """Standardise on the training set, pick the L2 strength by 3-fold CV there, fit, score held out.

    Args:
        xtr, xte: (N, D) features; ytr, yte: (N,) labels in {0, 1}.
        groups: optional (N_test,) group names of the held-out rows (e.g. their photo), to score each group too.
    Returns:
        ``{"l2", "cv_train", "fit_train", "held_out"}`` (accuracies in [0, 1], 3 decimals), with ``groups`` also
        ``"held_out_by_group"``: ``{group: accuracy}`` in sorted group order.
    Raises:
        ValueError: ``groups`` is not one name per held-out row.
    """
    if groups is not None and len(groups) != len(xte):
        raise ValueError(f"groups has {len(groups)} names for {len(xte)} held-out rows; give one per row.")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    folds = torch.arange(len(xtr)) % 3
    cv = {}
    for l2 in l2s:
        accs = []
        for f in range(3):
            tr, va = folds != f, folds == f
            w, b = _fit(xtr[tr], ytr[tr], l2)
            accs.append((((xtr[va] @ w + b) > 0).float() == ytr[va]).float().mean().item())
        cv[l2] = sum(accs) / len(accs)
    best = max(cv, key=cv.get)
    w, b = _fit(xtr, ytr, best)
    hits = (((xte @ w + b) > 0).float() == yte).float()
    out = {"l2": best, "cv_train": round(cv[best], 3),
           "fit_train": round((((xtr @ w + b) > 0).float() == ytr).float().mean().item(), 3),
           "held_out": round(hits.mean().item(), 3)}
    if groups is not None:
        out["held_out_by_group"] = {g: round(hits[[i for i, x in enumerate(groups) if x == g]].mean().item(), 3)
                                    for g in sorted(set(groups))}
    return out


def swap_probe(model, processor, *, n_train: int = 600, n_test: int = 300, recipe: str = RECIPE) -> dict:
    """The "halves swapped" probe of a loaded model (see the module docstring).

    Args:
        model, processor: the model to probe (e.g. from ``jrl_core.nano.load_model``).
        n_train: probe training puzzles on train-photo views (seed ``"probe"``; the recipe's photos without its
            procedural pictures, so the probe does not move with the GRPO training mix); n_test: held-out puzzles (the
            recipe's fixed held-out set, ``experiment.heldout_rows``).
    Returns:
        ``{"last": probe result, "img_final": probe result (each with its held-out accuracy by photo),
        "model_accuracy": greedy A/B accuracy on the held-out puzzles, "share_A": its share of "A", "n_train",
        "n_test", "second_heldout": {"last", "img_final"}}`` (see :func:`linear_probe`); ``second_heldout`` scores
        the same fits on ``n_test`` puzzles of the second held-out set (``experiment.second_heldout_rows``: five
        photos the defaults were not fitted to, but for the walls' count).
    """
    from jrl_core.images import split_procedural

    exp = experiment.load_recipe(recipe, {"n_test": n_test})
    size = nano.view_size(processor)
    photos_only = split_procedural(exp.photo_source)[0]  # the probe fits on photos only, whatever GRPO adds
    train = experiment.train_rows(experiment.load_recipe(recipe, {"seed": 9_999, "photo_source": photos_only}), steps=1,
                                  prompts_per_step=n_train, view_size=size, split="probe")
    test = experiment.heldout_rows(exp, view_size=size)
    ftr, fte = features(model, processor, train), features(model, processor, test)
    ytr = torch.tensor([swapped_label(r) for r in train]).float()
    yte = torch.tensor([swapped_label(r) for r in test]).float()
    gold_a = torch.tensor([r["solution"] == "A" for r in test]).float()
    photos = [stats.photo_of(str(r["image_id"])) for r in test]
    report = {feat: linear_probe(ftr[feat], ytr, fte[feat], yte, groups=photos) for feat in ("last", "img_final")}
    report["model_accuracy"] = round(((fte["pred_a"] == 1) == (gold_a == 1)).float().mean().item(), 3)
    report["share_A"] = round(fte["pred_a"].mean().item(), 3)
    report.update(n_train=n_train, n_test=n_test)
    second = experiment.second_heldout_rows(exp, view_size=size)  # the same fit (deterministic) on other photos
    fse = features(model, processor, second)
    yse = torch.tensor([swapped_label(r) for r in second]).float()
    report["second_heldout"] = {feat: linear_probe(ftr[feat], ytr, fse[feat], yse,
                                                   groups=[stats.photo_of(str(r["image_id"])) for r in second])
                                for feat in ("last", "img_final")}
    return report
