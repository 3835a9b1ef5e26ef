"""Report figures in one consistent seaborn style.

Every figure labels its scale and model: nano measurements and the papers' numbers
are drawn side by side in separate, labelled bars, never mixed on one unlabelled axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

PAPER_TABLES = Path(__file__).resolve().parent.parent / "data" / "paper_tables"


def set_style() -> None:
    """The workbook's seaborn style (whitegrid, muted palette, readable fonts)."""
    sns.set_theme(style="whitegrid", palette="muted", context="notebook", font_scale=1.0)


def paper_value(table: str, model: str, mode: str, variant: str, column: str, study: str = "jigsaw_r1") -> float | None:
    """One number from the papers' tables (``data/paper_tables/<study>.csv``), in %, or None."""
    df = pd.read_csv(PAPER_TABLES / f"{study}.csv")
    hit = df[(df.table == table) & (df.model == model) & (df["mode"] == mode) & (df.variant == variant)
             & (df.column == column)]
    return float(hit.value.iloc[0]) if len(hit) else None


def training_curves(log: pd.DataFrame, *, title: str = "", smooth: int = 10):
    """Reward curves over GRPO steps: accuracy reward, format reward, KL, zero-std groups.

    ``log`` is :meth:`jrl_core.train.MetricsTable.frame` (one row per step). Thin lines
    are per step; thick lines a rolling mean over ``smooth`` steps.
    """
    set_style()
    panels = [(c, lbl) for c, lbl in [
        ("rewards/accuracy_reward/mean", "accuracy reward"),
        ("rewards/format_reward/mean", "format reward"),
        ("kl", "KL to reference"),
        ("frac_reward_zero_std", "share of groups with zero reward std"),
    ] if c in log]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels, strict=False):
        ax.plot(log["step"], log[col], alpha=0.3, lw=1)
        ax.plot(log["step"], log[col].rolling(smooth, min_periods=1).mean(), lw=2)
        ax.set_xlabel("GRPO step")
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_before_after(results: Sequence[dict], *, random: float, paper: Sequence[dict] = (), title: str = ""):
    """Held-out accuracy bars with 95% intervals against the random-guess line.

    Args:
        results: ours, e.g. ``[{"label": "nano base", "accuracy": .5, "ci_low": .44, "ci_high": .56}, …]``
            (shares in [0, 1]).
        random: random-guess accuracy in [0, 1] (protocol §5).
        paper: the paper's numbers, ``[{"label": "Qwen2.5-VL-3B base (paper)", "accuracy": .522}, …]``,
            drawn in a separate hatched panel.
    """
    set_style()
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 3.6), squeeze=False, sharey=True)
    ax = axes[0][0]
    labels = [r["label"] for r in results]
    acc = [100 * r["accuracy"] for r in results]
    err = [[100 * (r["accuracy"] - r.get("ci_low", r["accuracy"])) for r in results],
           [100 * (r.get("ci_high", r["accuracy"]) - r["accuracy"]) for r in results]]
    ax.bar(labels, acc, yerr=err, capsize=5, color=sns.color_palette()[:len(labels)])
    for i, a in enumerate(acc):
        ax.text(i, a + 2, f"{a:.1f}", ha="center")
    ax.axhline(100 * random, ls="--", color="grey", label=f"random ({100 * random:.1f}%)")
    ax.set_ylim(0, 105)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("ours (measured)")
    ax.legend(loc="upper left")
    if paper:
        ax2 = axes[0][1]
        pl = [p["label"] for p in paper]
        pa = [100 * p["accuracy"] for p in paper]
        ax2.bar(pl, pa, color="white", edgecolor="black", hatch="//")
        for i, a in enumerate(pa):
            ax2.text(i, a + 2, f"{a:.1f}", ha="center")
        ax2.axhline(100 * random, ls="--", color="grey")
        ax2.set_title("paper (reported)")
    for a in axes[0]:
        a.tick_params(axis="x", labelrotation=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
