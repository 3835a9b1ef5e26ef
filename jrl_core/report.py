"""Report pieces a notebook displays: puzzle examples, metric tables, completions, metrics.json.

Model completions are untrusted text: every string from a model or a record goes
through ``html.escape`` before it reaches HTML. Images are embedded as base64 PNG so
that a report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from jrl_core.atomic import atomic_write_text
from jrl_core.plots import PAPER_TABLES


def _img_tag(image, size: int = 112) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    return f'<img src="data:image/png;base64,{b64}" width="{size}" height="{size}" alt="puzzle">'


def _pre(text) -> str:
    return f"<pre style='white-space:pre-wrap;margin:0;text-align:left'>{html.escape(str(text))}</pre>"


class HTMLBlock(str):
    """A string that Jupyter renders as HTML (``_repr_html_``)."""

    def _repr_html_(self) -> str:
        return str(self)


def puzzle_examples(rows: list[dict], table: pd.DataFrame | None = None) -> HTMLBlock:
    """An HTML table of puzzles: image, prompt text, solution and (optionally) the
    model's completion from ``table`` (same order). All text escaped."""
    head = ("<tr style='text-align:left'><th>puzzle</th><th>prompt</th><th>solution</th>"
            "<th>completion</th></tr>")
    body = []
    for i, r in enumerate(rows):
        prompt = r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][0]["content"][-1]["text"]
        comp = table.iloc[i]["completion"] if table is not None and i < len(table) else ""
        body.append(f"<tr style='text-align:left;vertical-align:top'><td>{_img_tag(r['image'])}</td><td>{_pre(prompt)}</td><td>{_pre(r['solution'])}</td>"
                    f"<td>{_pre(comp)}</td></tr>")
    return HTMLBlock(f"<table>{head}{''.join(body)}</table>")


def completions_html(table: pd.DataFrame, columns=("image_id", "solution", "completion", "score", "format")) -> HTMLBlock:
    """Completions as an escaped HTML table (``pandas.to_html(escape=True)``)."""
    cols = [c for c in columns if c in table]
    return HTMLBlock(table[cols].to_html(index=False, escape=True))


def metrics_table(before, after) -> pd.DataFrame:
    """Before/after summary (accuracy %, 95% CI, valid answers %, share of "A" %)."""
    rows = []
    for name, r in (("base", before), ("after GRPO", after)):
        s = r.summary()
        rows.append({"model": name, "accuracy %": 100 * s["accuracy"],
                     "95% CI": f"{100 * s['ci_low']:.1f}–{100 * s['ci_high']:.1f}",
                     "valid %": 100 * s["valid"], "answers 'A' %": 100 * s["share_A"],
                     "random %": 100 * s["random"], "n": s["n"]})
    return pd.DataFrame(rows).round(1)


def paper_rows_table1(question_type: str, m: int, n: int, think: bool, model: str = "Qwen2.5-VL-3B") -> list[dict]:
    """Jigsaw-R1 Table 1 (pair) / Table 7 (full) for ``model`` before and after its
    2x1 training, as ``[{"label", "accuracy"}]`` with accuracy in [0, 1]; empty if the
    paper has no such cell."""
    table = "table1_pair" if question_type == "pair" else "table7_full"
    df = pd.read_csv(PAPER_TABLES / "jigsaw_r1.csv")
    mode = "thinking" if think else "non-thinking"
    col = f"{m}x{n}" if m >= n else f"{n}x{m}"
    out = []
    for variant, label in (("base", f"{model} base"), (f"+jigsaw-2x1-{question_type}", f"{model} + GRPO 2x1")):
        hit = df[(df.table == table) & (df.model == model) & (df["mode"] == mode) & (df.variant == variant)
                 & (df.column == col)]
        if len(hit):
            out.append({"label": label, "accuracy": float(hit.value.iloc[0]) / 100})
    return out


def arms_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a readable table: accuracy %, 95% CI, valid %, answers 'A' %, wall time."""
    out = summary.copy()
    out["accuracy %"] = 100 * out["accuracy"]
    out["95% CI"] = [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(out["ci_low"], out["ci_high"], strict=True)]
    out["valid %"] = 100 * out["valid"]
    out["answers 'A' %"] = 100 * out["share_A"]
    out["random %"] = 100 * out["random"]
    cols = ["arm", "mode", "algorithm", "accuracy %", "95% CI", "valid %", "answers 'A' %", "random %", "n", "wall_s"]
    return out[[c for c in cols if c in out]].round(1)


def write_comparison_metrics(run_dir, *, title: str, model: str, scale: str, summary: pd.DataFrame,
                             paper_vs_ours: list[dict] = (), extra: dict | None = None,
                             details: dict | None = None) -> dict:
    """The metrics record of a comparison notebook (``jrl_core.runs.write_metrics``, kind ``"comparison"``):
    per-arm accuracy ``acc_<arm>`` in [0, 1] plus ``extra`` flat metrics, the paper-vs-ours rows the study
    index shows (each with its scale and model), every arm's row in ``details["arms"]``; and ``summary.csv``
    (every arm) beside it. Returns the record as a dict."""
    from jrl_core import runs

    metrics = {**{f"acc_{r['arm']}": r["accuracy"] for r in summary.to_dict("records")}, **(extra or {})}
    atomic_write_text(Path(run_dir) / "summary.csv", summary.to_csv(index=False))
    record = runs.MetricsRecord(kind="comparison", title=title, model=model, scale=scale, metrics=metrics,
                                paper_vs_ours=list(paper_vs_ours),
                                details={"arms": summary.to_dict("records"), **(details or {})})
    runs.write_metrics(run_dir, record)
    return record.to_dict()


def paper_vs_ours(pairs: list[tuple[str, float | None, float]], *, scale: str, model: str,
                  paper_model: str = "Qwen2.5-VL-3B") -> list[dict]:
    """Rows for the study index's paper-vs-ours table: ``(metric, paper value in [0, 1] or None, ours)``
    -> ``{"metric", "paper", "ours", "scale", "model"}``, each labelled with both scales and models."""
    return [{"metric": metric, "paper": p, "ours": o, "scale": f"paper: {paper_model} / ours: {scale}", "model": model}
            for metric, p, o in pairs if p is not None]


def paper_grid(question_type: str, think: bool, model: str = "Qwen2.5-VL-3B") -> dict:
    """Jigsaw-R1 Table 1 (pair) / Table 7 (full) for ``model``: ``{"<model> base (paper)": {size:
    accuracy in [0, 1]}, "<model> + GRPO 2x1 (paper)": {...}}`` over the sizes the paper reports."""
    table = "table1_pair" if question_type == "pair" else "table7_full"
    df = pd.read_csv(PAPER_TABLES / "jigsaw_r1.csv")
    df = df[(df.table == table) & (df.model == model) & (df["mode"] == ("thinking" if think else "non-thinking"))]
    out = {}
    for variant, label in (("base", f"{model} base (paper)"), (f"+jigsaw-2x1-{question_type}", f"{model} + GRPO 2x1 (paper)")):
        rows = df[df.variant == variant]
        if len(rows):
            out[label] = {c: v / 100 for c, v in zip(rows.column, rows.value, strict=True) if "x" in c}
    return out


JIGSAW_R1_MODES = ("non_thinking", "thinking")
"""The thinking modes Jigsaw-R1 Tables 1 and 7 report (the other modes come from other papers)."""


def table1_paper_vs_ours(summary: pd.DataFrame, arms: dict, *, model: str, scale: str) -> list[dict]:
    """Paper-vs-ours rows of a comparison against Jigsaw-R1 Table 1 (pair) / Table 7 (full): for each GRPO
    arm in a Jigsaw-R1 mode (:data:`JIGSAW_R1_MODES`), the paper's base and trained accuracy beside our base
    row and that arm's accuracy.

    Args:
        summary: :func:`jrl_core.experiment.compare_arms` ``["summary"]`` (base rows labelled
            ``"base (<mode>, <m>x<n> <question type>)"``, accuracy in [0, 1]).
        arms: label -> :class:`jrl_core.config.Experiment`, the arms that were compared.
        model, scale: ours, for the rows' labels.
    Returns:
        :func:`paper_vs_ours` rows (values in [0, 1]); arms the paper has no cell for give none.
    """
    acc = {r["arm"]: r["accuracy"] for r in summary.to_dict("records")}
    pairs, seen = [], set()
    for label, exp in arms.items():
        if exp.mode not in JIGSAW_R1_MODES or exp.algorithm != "grpo" or exp.question_type not in ("pair", "full"):
            continue
        m, n = exp.curriculum_().sizes[0]
        where = f"{m}x{n} {exp.question_type} {exp.mode}"
        for p in paper_rows_table1(exp.question_type, m, n, exp.think):
            variant = p["label"].split(" ", 1)[1]
            is_base = " base" in p["label"]
            metric = f"{where}: {variant}" + ("" if is_base or label == exp.mode else f" (arm {label})")
            ours = acc.get(f"base ({exp.mode}, {m}x{n} {exp.question_type})" if is_base else label)
            if ours is not None and metric not in seen:
                seen.add(metric)
                pairs.append((metric, p["accuracy"], ours))
    return paper_vs_ours(pairs, scale=scale, model=model)


def generalization_eval(*, suite_items: int, mode: str = "non_thinking", grid_sizes=(), grid_items: int = 100,
                        benchmarks: dict | None = None, seed: int = 0):
    """The ``extra_eval`` of :func:`jrl_core.experiment.compare_arms` for the generalization tables (RQ2's
    Tables 2-4 analogue, RQ5's Table 6 analogue): what a notebook displays beside in-domain accuracy.

    Args:
        suite_items: questions per family of the offline generalization suite
            (:func:`jrl_core.generalization.evaluate_suite`, held-out photos).
        mode: thinking mode the suite and grid are prompted in (``jrl_core.modes.MODES``).
        grid_sizes: ``(m, n)`` sizes of a pair-question evaluation grid
            (:func:`jrl_core.evaluate.evaluate_grid`, the fixed held-out sets); empty: no grid.
        grid_items: puzzles per grid cell.
        benchmarks: ``{name: local path or hub id}`` of downstream benchmarks
            (:func:`jrl_core.downstream.evaluate_downstream`); empty: none.
        seed: the suite's item seed (the same questions for every model and training seed).
    Returns:
        ``(model, processor, label) -> {"suite": DataFrame, "grid": DataFrame | None, "downstream":
        DataFrame | None}``.
    """
    from jrl_core import downstream, evaluate, generalization

    sizes = [tuple(int(v) for v in s) for s in grid_sizes]

    def score(model, processor, label: str) -> dict:
        suite = generalization.evaluate_suite(model, processor, n_items=suite_items, seed=seed, think=mode,
                                              progress=False)
        grid = evaluate.evaluate_grid(model, processor, sizes=sizes, question_types=("pair",), thinks=(mode,),
                                      n_items=grid_items, progress=False) if sizes else None
        down = downstream.evaluate_downstream(model, processor, benchmarks, progress=False) if benchmarks else None
        return {"suite": suite, "grid": grid, "downstream": down}

    return score
