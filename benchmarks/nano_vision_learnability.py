"""Diagnostic: can the nano vision encoder *alone* learn a label that transfers to held-out photos?

    PYTHONPATH=. .venv/bin/python benchmarks/nano_vision_learnability.py '{"task": "continuity_v", "steps": 1200,
        "aug": 1, "image_size": 126, "merge_size": 3}'

Trains a random-init nano encoder (``model.model.visual``, patch embedding to merger) plus a linear head on its
mean-pooled image tokens, plain torch, on ``ntrain`` items of the train photos (re-drawn from that pool), and
prints train / held-out accuracy every 100 steps; then fits a linear probe for "halves swapped" on 2x1 puzzles
(train photos -> held-out photos) on the frozen pooled features. ``task``: a perception task with yes/no answers,
or ``"swap"`` (the 2x1 swap label itself: a diagnostic of what the architecture can learn, never used to build the
nano model). ``aug``: 0 none, 1 flips + channel permutation + inversion, 2 also 90-degree turns. Other keys are
:class:`jrl_core.nano.NanoConfig` fields. Measured (session 4): continuity_v at 112 px / 2x2 merge stays at chance
with or without augmentation; at 126 px / 3x3 merge with aug 1 it reaches 0.75 held-out and the swap probe 0.80.
The probe also prints its held-out accuracy by photo. Session 17, continuity_v, 1,200 steps: 126 px brick 0.49-0.56
(overall 0.88-0.90), 210 px brick 0.80-0.86 (overall 0.86-0.91; rocket and moon lower).
"""
import json
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jrl_core import nano, perception, puzzles  # noqa: E402
from jrl_core.images import load_photos, sample_views  # noqa: E402

ov = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
task, steps, bs = ov.pop("task", "continuity_v"), ov.pop("steps", 300), ov.pop("bs", 32)
lr, ntrain, aug = ov.pop("lr", 1e-3), ov.pop("ntrain", 4096), ov.pop("aug", 1)
cfg = nano.NanoConfig(pretrain_steps=0, vision_pretrain_steps=0, **ov)
proc = nano.build_processor(cfg)
vis = nano.build_model(cfg, proc.tokenizer).model.visual
per_image = (cfg.image_size // (cfg.patch_size * cfg.merge_size)) ** 2


def augment(img, rng, label_task):
    if aug >= 1:
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.ROTATE_180)
        bands = img.split()
        img = Image.merge("RGB", [bands[i] for i in rng.sample(range(3), 3)])
        if rng.random() < 0.3:
            img = ImageOps.invert(img)
    if aug >= 2 and label_task != "swap" and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.ROTATE_90)
    return img


def data(label_task, split, k, seed, augmented):
    photos = load_photos("skimage", split)
    rng = random.Random(seed)
    if label_task == "swap":
        imgs, ys = [], []
        for i, v in enumerate(sample_views(photos, k, seed=seed, size=cfg.image_size)):
            p = puzzles.make_grid_puzzle(v.image, 2, 1, seed=seed * 100_003 + i)
            imgs.append(augment(p.image, rng, label_task) if augmented else p.image)
            ys.append(int(list(p.forward) != [1, 2]))
        return imgs, ys
    items = perception.make_items(photos, k, seed=seed, tasks=[label_task], size=cfg.image_size)
    imgs = [augment(it.image, rng, label_task) if augmented else it.image for it in items]
    return imgs, [int(it.choices["ABCD".index(it.answer)] == "yes") for it in items]


def pooled(imgs):
    enc = proc.image_processor(images=imgs, return_tensors="pt")
    return vis(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output.view(len(imgs), per_image, -1).mean(1)


def accuracy(head, imgs, ys):
    vis.eval()
    with torch.no_grad():
        hits = sum(int((head(pooled(imgs[j:j + 128])).argmax(-1) == torch.tensor(ys[j:j + 128])).sum())
                   for j in range(0, len(imgs), 128))
    vis.train()
    return round(hits / len(imgs), 3)


tr_i, tr_y = data(task, "train", ntrain, 1, augmented=True)
te_i, te_y = data(task, "test", 512, 2, augmented=False)
head = torch.nn.Linear(cfg.hidden_size, 2)
params = list(vis.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
t0, running = time.time(), None
for s in range(steps):
    idx = random.Random(s).sample(range(len(tr_i)), bs)
    loss = torch.nn.functional.cross_entropy(head(pooled([tr_i[j] for j in idx])), torch.tensor([tr_y[j] for j in idx]))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
    if (s + 1) % 100 == 0:
        print(s + 1, "loss", round(running, 3), "train", accuracy(head, tr_i[:512], tr_y[:512]),
              "held-out", accuracy(head, te_i, te_y), f"{time.time() - t0:.0f} s", flush=True)

# linear probe for "halves swapped" on the frozen pooled features (L2 logistic regression, LBFGS)
pa, ya = data("swap", "train", 2048, 11, augmented=False)
pb, yb = data("swap", "test", 512, 12, augmented=False)
vis.eval()
with torch.no_grad():
    xa = torch.cat([pooled(pa[j:j + 128]) for j in range(0, len(pa), 128)])
    xb = torch.cat([pooled(pb[j:j + 128]) for j in range(0, len(pb), 128)])
mu, sd = xa.mean(0), xa.std(0) + 1e-6
xa, xb = (xa - mu) / sd, (xb - mu) / sd
names = [ph.image_id for ph in load_photos("skimage", "test")]  # view i is of photo i % 5 (sample_views: round robin)
for wd in (1e-3, 1e-2, 1e-1):
    lin = torch.nn.Linear(xa.shape[1], 2)
    lbfgs = torch.optim.LBFGS(lin.parameters(), max_iter=300)

    def closure(lin=lin, lbfgs=lbfgs, wd=wd):
        lbfgs.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xa), torch.tensor(ya)) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    with torch.no_grad():
        fit = (lin(xa).argmax(-1) == torch.tensor(ya)).float().mean().item()
        hits = (lin(xb).argmax(-1) == torch.tensor(yb)).float()
        held = hits.mean().item()
    by_photo = {n: round(hits[i::len(names)].mean().item(), 2) for i, n in enumerate(names)}
    print(f"swap probe (L2 {wd}): train {fit:.3f}, held-out {held:.3f}, by photo {by_photo}", flush=True)
