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
