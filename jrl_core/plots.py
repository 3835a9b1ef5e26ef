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


def paper_value(table: str, model: str, mode: str | None, variant: str, column: str, study: str = "jigsaw_r1") -> float | None:
    """One number from the papers' tables (``data/paper_tables/<study>.csv``), in %, or None.
    ``mode=None`` for tables without a thinking mode (OThink-MR1)."""
    df = pd.read_csv(PAPER_TABLES / f"{study}.csv")
    hit = df[(df.table == table) & (df.model == model) & (df.variant == variant) & (df.column == column)]
    if mode is not None and "mode" in df:
        hit = hit[hit["mode"] == mode]
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
    width = max(5.0, 1.1 * max(len(results), len(paper)))
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.2), squeeze=False, sharey=True)
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
        a.tick_params(axis="x", labelrotation=25)
        for t in a.get_xticklabels():
            t.set_horizontalalignment("right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def arms_comparison(summary: pd.DataFrame, *, paper: Sequence[dict] = (), title: str = "",
                    ours_label: str = "ours (measured)", per_seed: pd.DataFrame | None = None):
    """Held-out accuracy per arm (bars with 95% intervals, random line) and, in a separate hatched
    panel, the paper's numbers for the same comparison.

    Args:
        summary: :func:`jrl_core.experiment.compare_arms` ``["summary"]`` (accuracy etc. in [0, 1]).
        paper: ``[{"label": "Qwen2.5-VL-3B +RL (paper)", "accuracy": 0.988}, …]`` in [0, 1].
        per_seed: ``compare_arms(...)["per_seed"]`` (arm, seed, accuracy): every seed drawn as a dot on its
            arm's bar; None: bars only.
    """
    rows = summary.to_dict("records")
    results = [{"label": r["arm"], "accuracy": r["accuracy"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
               for r in rows]
    fig = accuracy_before_after(results, random=float(summary["random"].iloc[0]), paper=paper, title=title)
    ax = fig.axes[0]
    ax.set_title(ours_label)
    if per_seed is not None and len(per_seed):
        labelled = False
        for i, r in enumerate(rows):
            acc = per_seed.loc[per_seed["arm"] == r["arm"], "accuracy"]
            if len(acc):
                ax.scatter([i] * len(acc), 100 * acc, s=14, color="black", zorder=3,
                           label=None if labelled else "one seed")
                labelled = True
        ax.legend(loc="upper left")
    return fig


def training_curves_by_arm(logs: dict, columns: Sequence[tuple[str, str]] = (
        ("rewards/accuracy_reward/mean", "accuracy reward"), ("completions/mean_length", "completion length (tokens)"),
        ("kl", "KL to reference"), ("beta", "KL coefficient β")), *, smooth: int = 5, title: str = ""):
    """One panel per metric, one line per arm (rolling mean over ``smooth`` steps); metrics an arm
    did not log are skipped (e.g. ``beta`` for constant-β runs, accuracy for the equality reward,
    whose reward is ``rewards/equality_reward/mean``).

    Args:
        logs: arm -> per-step training table, or arm -> {seed: table} (``compare_arms(...)["logs"]``): with
            several seeds each seed is drawn faint and the mean over seeds bold in the arm's colour.
    """
    set_style()
    by_arm = {}
    for arm, v in logs.items():
        seeds = v if isinstance(v, dict) else {None: v}
        seeds = {s: lg for s, lg in seeds.items() if lg is not None and len(lg)}
        if seeds:
            by_arm[arm] = seeds
    frames = [lg for seeds in by_arm.values() for lg in seeds.values()]
    cols = [(c, lbl) for c, lbl in columns if any(c in v for v in frames)]
    if any("rewards/equality_reward/mean" in v for v in frames):
        cols.insert(1, ("rewards/equality_reward/mean", "equality reward"))
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(4.2 * max(1, len(cols)), 3.2), squeeze=False)
    palette = sns.color_palette()
    for ax, (col, label) in zip(axes[0], cols, strict=False):
        for k, (arm, seeds) in enumerate(by_arm.items()):
            color = palette[k % len(palette)]
            curves = {s: lg.set_index("step")[col].rolling(smooth, min_periods=1).mean() for s, lg in seeds.items()
                      if col in lg}
            if not curves:
                continue
            if len(curves) > 1:
                for c in curves.values():
                    ax.plot(c.index, c.values, lw=1, alpha=0.3, color=color)
            mean = pd.DataFrame(curves).mean(axis=1)
            ax.plot(mean.index, mean.values, lw=2, color=color,
                    label=arm if len(curves) == 1 else f"{arm} (mean of {len(curves)} seeds)")
        ax.set_xlabel("step")
        ax.set_title(label)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def beta_schedules(total_steps: int, schedules: dict, *, title: str = "KL coefficient β(s)"):
    """β against the step for named schedules (``{"GRPO-D counting": callable(step) -> β, …}``),
    e.g. OThink-MR1 Eq. 3 for both presets beside constant-β baselines."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    steps = list(range(total_steps + 1))
    for name, fn in schedules.items():
        ax.plot(steps, [fn(s) for s in steps], lw=2, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("β")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reasoning_over_steps(analysis: pd.DataFrame, *, x: str = "step", smooth: int = 3, title: str = ""):
    """Jigsaw-R1 Fig. 2 (right) and Fig. 3 (left, middle) from :func:`jrl_core.analysis.analyse`
    output grouped by step: completion length, accuracy with think/answer consistency, and
    keyword frequencies (every ``kw_*`` column), each a rolling mean over ``smooth`` steps."""
    set_style()
    a = analysis.reset_index() if x not in analysis else analysis
    kw = [c for c in a if c.startswith("kw_")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))

    def line(ax, col, label):
        if col in a and a[col].notna().any():
            ax.plot(a[x], a[col].rolling(smooth, min_periods=1).mean(), lw=2, label=label)

    line(axes[0], "tokens_mean", "tokens (mean)")
    axes[0].set_title("completion length (tokens)")
    line(axes[1], "accuracy", "accuracy reward")
    line(axes[1], "consistent_share", "think/answer consistent")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_title("accuracy and consistency")
    for c in kw:
        line(axes[2], c, c.removeprefix("kw_").replace("_", " "))
    axes[2].set_title("share of completions with a keyword")
    for ax in axes:
        ax.set_xlabel(x)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def keywords_by_size(analysis: pd.DataFrame, *, x: str = "train_size", title: str = ""):
    """Jigsaw-R1 Fig. 3 (right): keyword frequency against the training puzzle size, one bar group
    per keyword set (``kw_*`` columns of :func:`jrl_core.analysis.analyse` grouped by ``x``)."""
    set_style()
    a = analysis.reset_index() if x not in analysis else analysis
    kw = [c for c in a if c.startswith("kw_")]
    long = a.melt(id_vars=[x], value_vars=kw, var_name="keywords", value_name="frequency")
    long["keywords"] = long["keywords"].str.removeprefix("kw_").str.replace("_", " ")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.barplot(long, x=x, y="frequency", hue="keywords", ax=ax)
    ax.set_xlabel("training puzzle size")
    ax.set_ylabel("share of completions")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def suite_comparison(tables: dict, *, title: str = ""):
    """Generalization-suite accuracy per task family (bars) for several models, with each family's
    chance level; ``tables`` maps a model label to :func:`jrl_core.generalization.evaluate_suite`
    output (columns ``family``/``name``, ``accuracy``, ``random``)."""
    set_style()
    frames = []
    for label, t in tables.items():
        t = t.copy()
        t["model"] = label
        frames.append(t)
    df = pd.concat(frames, ignore_index=True)
    fam = next(c for c in ("suite", "family", "name") if c in df)
    df = df[~df[fam].astype(str).str.isupper()]  # drop SEEN/UNSEEN mean rows if present
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * df[fam].nunique()), 3.6))
    sns.barplot(df, x=fam, y="accuracy", hue="model", ax=ax)
    if "random" in df:
        for i, (_, r) in enumerate(df.drop_duplicates(fam).iterrows()):
            ax.hlines(r["random"], i - 0.4, i + 0.4, colors="grey", linestyles="--")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("")
    ax.set_ylabel("accuracy (held-out photos)")
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def grid_comparison(ours: dict, paper: dict | None = None, *, question_type: str = "pair", title: str = ""):
    """Accuracy by evaluation puzzle size (Jigsaw-R1 Table 1 for pair, Table 7 for full questions):
    ours (``{label: evaluate_grid DataFrame}``) in one panel, the paper's (``{label: {size: accuracy in
    [0, 1]}}``) in a separate hatched panel, with each size's random-guess level."""
    set_style()
    frames = [g[g["question_type"] == question_type].assign(model=label) for label, g in ours.items()]
    df = pd.concat(frames, ignore_index=True)
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 3.6), squeeze=False, sharey=True)
    sns.barplot(df, x="size", y="accuracy", hue="model", ax=axes[0][0])
    rnd = df.drop_duplicates("size").reset_index(drop=True)
    for i, r in rnd.iterrows():
        axes[0][0].hlines(r["random"], i - 0.4, i + 0.4, colors="grey", linestyles="--")
    axes[0][0].set_title(f"ours (measured), {question_type}")
    axes[0][0].set_ylim(0, 1.05)
    if paper:
        p = pd.DataFrame([{"size": s, "accuracy": a, "model": label} for label, d in paper.items() for s, a in d.items()])
        sns.barplot(p, x="size", y="accuracy", hue="model", ax=axes[0][1], fill=False, hatch="//")
        axes[0][1].set_title(f"paper (reported), {question_type}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def arm_beta_schedules(arms: dict, *, title: str = "KL coefficient β(s)"):
    """β against the step for the arms of a comparison (``{label: jrl_core.config.Experiment}``): a GRPO-D
    arm's OThink-MR1 Eq. 3 schedule (its ``kl_schedule``), a constant-β arm's ``grpo.beta``; every GRPO-D
    preset (``schedules.GRPO_D_PRESETS``) no arm runs is drawn too, labelled "not run", for reference."""
    import functools

    from jrl_core import schedules

    total = max(exp.grpo_settings().steps for exp in arms.values())
    curves, used = {}, set()
    for label, exp in arms.items():
        steps = exp.grpo_settings().steps
        cb = exp.kl_callback(steps)
        if cb is None:
            beta = exp.grpo_settings().beta
            curves[f"{label} (constant β={beta:g})"] = lambda s, b=beta: b
        else:
            used.add(exp.plan.kl.preset)
            curves[f"{label} (GRPO-D, Eq. 3)"] = lambda s, f=cb.schedule, t=steps: f(min(s, t))
    for name, (lo, hi) in schedules.GRPO_D_PRESETS.items():
        if name not in used:
            curves[f"GRPO-D {name} preset (not run)"] = functools.partial(
                schedules.grpo_d_beta, total_steps=total, beta_min=lo, beta_max=hi)
    return beta_schedules(total, curves, title=title)


def seed_curves(logs: dict, *, columns: Sequence[tuple[str, str]] = (
        ("rewards/accuracy_reward/mean", "accuracy reward"), ("frac_reward_zero_std", "groups with zero reward std"),
        ("kl", "KL to reference")), smooth: int = 10, title: str = ""):
    """Training curves over seeds: each seed faint, the mean over seeds bold, a band of ±1 sd across seeds.

    Args:
        logs: seed -> per-step training table (:meth:`jrl_core.train.MetricsTable.frame`; ``step`` + columns).
        columns: ``(column, panel title)`` pairs; absent columns are skipped.
        smooth: rolling mean over this many steps before averaging.
    Returns:
        The matplotlib figure (one panel per column).
    """
    set_style()
    logs = {s: lg for s, lg in logs.items() if lg is not None and len(lg)}
    panels = [(c, t) for c, t in columns if any(c in lg for lg in logs.values())]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels, strict=False):
        curves = {s: lg.set_index("step")[col].rolling(smooth, min_periods=1).mean() for s, lg in logs.items()
                  if col in lg}
        for s, c in curves.items():
            ax.plot(c.index, c.values, lw=1, alpha=0.35, label=f"seed {s}")
        frame = pd.DataFrame(curves)
        mean, sd = frame.mean(axis=1), frame.std(axis=1).fillna(0)
        ax.plot(mean.index, mean.values, lw=2.5, color="black", label=f"mean of {len(curves)} seeds")
        ax.fill_between(mean.index, (mean - sd).values, (mean + sd).values, color="black", alpha=0.12, lw=0)
        ax.set_xlabel("GRPO step")
        ax.set_title(label)
    if panels:
        axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def seed_accuracies(table: pd.DataFrame, *, random: float | None = None, paper: Sequence[dict] = (),
                    interval: dict | None = None, title: str = ""):
    """Held-out accuracy per seed before and after training (one dot per seed, Wilson 95% bars), the mean after
    training with its bootstrap interval over seeds and photos (``interval``: ``stats.bootstrap`` output) as a
    band, the random-guess line, and the paper's numbers in a separate labelled panel.

    Args:
        table: ``experiment.run_seeds(...)["table"]`` (seed, before, after, after_ci_low, after_ci_high).
    """
    set_style()
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 + 3 * (ncols - 1), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1] if paper else [1]}, sharey=True)
    ax = axes[0][0]
    x = range(len(table))
    ax.scatter(x, table["before"], marker="o", color="grey", label="base", zorder=3)
    err = [table["after"] - table["after_ci_low"], table["after_ci_high"] - table["after"]]
    ax.errorbar(x, table["after"], yerr=err, fmt="o", color="C0", capsize=3, label="after GRPO", zorder=3)
    if interval:
        ax.axhspan(interval["low"], interval["high"], color="C0", alpha=0.12, lw=0,
                   label=f"mean {100 * interval['mean']:.1f}% ({100 * interval['low']:.1f}–{100 * interval['high']:.1f}%)")
    if random is not None:
        ax.axhline(random, color="grey", ls="--", lw=1, label="random guess")
    ax.set_xticks(list(x), [f"seed {s}" for s in table["seed"]])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy")
    ax.set_title("ours (measured)")
    ax.legend(fontsize=8, loc="lower right")
    if paper:
        p = pd.DataFrame(paper)
        axes[0][1].bar(range(len(p)), p["accuracy"], fill=False, hatch="//", edgecolor="C1", linewidth=1.2)
        for i, v in enumerate(p["accuracy"]):
            axes[0][1].text(i, v + 0.02, f"{100 * v:.1f}%", ha="center", va="bottom", fontsize=8)
        axes[0][1].set_xticks(range(len(p)), p["label"], rotation=20, ha="right", fontsize=8)
        axes[0][1].set_title("paper (reported)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def breakdown_heatmap(frame: pd.DataFrame, *, by: str = "answer cell", title: str = ""):
    """Held-out accuracy per group (rows) and seed (columns), base and trained side by side, as annotated
    heatmaps (0 red, 0.5 white, 1 blue): a photo the model cannot read, or a prompt variant it answers with
    one letter whatever the image, shows as a red row.

    Args:
        frame: :func:`jrl_core.experiment.seed_breakdown` output.
        by: ``"answer cell"`` or ``"photo"``.
    Returns:
        The matplotlib figure (one panel per stage present: base, after training).
    Raises:
        ValueError: ``frame`` has no rows for ``by``.
    """
    set_style()
    part = frame[frame["by"] == by]
    if part.empty:
        raise ValueError(f"breakdown_heatmap: no rows with by={by!r}; have {sorted(frame['by'].unique())}.")
    stages = [s for s in ("before", "after") if s in set(part["stage"])]
    groups = sorted(part["group"].unique())
    fig, axes = plt.subplots(1, len(stages), figsize=(2.2 + 1.1 * part["seed"].nunique() * len(stages),
                                                      0.9 + 0.32 * len(groups)), squeeze=False, sharey=True)
    for ax, stage in zip(axes[0], stages, strict=True):
        grid = part[part["stage"] == stage].pivot_table(index="group", columns="seed", values="accuracy").reindex(groups)
        sns.heatmap(grid, ax=ax, vmin=0, vmax=1, center=0.5, cmap="RdBu", annot=True, fmt=".2f", cbar=False,
                    annot_kws={"fontsize": 7})
        ax.set_title("base" if stage == "before" else "after training", fontsize=9)
        ax.set_xlabel("seed")
        ax.set_ylabel(by if ax is axes[0][0] else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rollout_cells_heatmap(frame: pd.DataFrame, *, value: str = "accuracy", title: str = ""):
    """Training rollouts per answer cell (rows) and window of steps (columns), one annotated heatmap per seed
    (0 red, 0.5 white, 1 blue). With ``value="accuracy"`` a prompt variant that locks onto one letter shows as
    a row turning red and staying red; with ``value="zero_std"`` as a row near 1 (its groups give no gradient).

    Args:
        frame: :func:`jrl_core.experiment.seed_rollout_cells` output (``seed``, ``first_step``, ``answer``,
            ``letter`` and ``value``).
        value: ``"accuracy"`` (mean accuracy reward, in [0, 1]) or ``"zero_std"`` (share of zero-std groups).
    Returns:
        The matplotlib figure (one panel per seed).
    Raises:
        ValueError: ``frame`` is empty or has no ``value`` column.
    """
    if frame.empty or value not in frame:
        raise ValueError(f"rollout_cells_heatmap: need experiment.seed_rollout_cells rows with a {value!r} column "
                         f"(got {len(frame)} rows, columns {list(frame.columns)}).")
    set_style()
    part = frame.assign(cell=frame["answer"] + " as (" + frame["letter"] + ")")
    seeds = sorted(part["seed"].unique())
    cells = sorted(part["cell"].unique())
    windows = part["first_step"].nunique()
    fig, axes = plt.subplots(1, len(seeds), figsize=(2.4 + 0.45 * windows * len(seeds), 1.0 + 0.32 * len(cells)),
                             squeeze=False, sharey=True)
    for ax, seed in zip(axes[0], seeds, strict=True):
        grid = part[part["seed"] == seed].pivot_table(index="cell", columns="first_step", values=value).reindex(cells)
        sns.heatmap(grid, ax=ax, vmin=0, vmax=1, center=0.5, cmap="RdBu", annot=True, fmt=".1f", cbar=False,
                    annot_kws={"fontsize": 6})
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.set_xlabel("from step")
        ax.set_ylabel("answer cell" if ax is axes[0][0] else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
