"""Report pieces a notebook displays: a summary row, puzzle examples, metric tables, completions,
long tables as files beside the report, metrics.json.

Model completions are untrusted text: every string from a model or a record goes
through ``html.escape`` before it reaches HTML. Images are embedded as base64 PNG so
that a report is one self-contained file. Percentages are shown rounded, with their unit and
interval ("56.0% (50.3–61.5%)", :func:`pct_ci`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
from pathlib import Path

import pandas as pd

from jrl_core.atomic import atomic_write_text
from jrl_core.plots import PAPER_TABLES
from jrl_core.study import SUMMARY_MARKER, format_duration  # the study report puts a summary block first


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


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def pct(value, digits: int = 1) -> str:
    """A share in [0, 1] as a rounded percentage: ``0.56 -> "56.0%"``; ``"n/a"`` when missing or not finite."""
    return f"{100 * value:.{digits}f}%" if _is_number(value) else "n/a"


def pct_ci(value, low=None, high=None, digits: int = 1) -> str:
    """A share in [0, 1] with its interval, rounded, with the unit: ``pct_ci(.56, .503, .615)`` ->
    ``"56.0% (50.3–61.5%)"`` (an en dash between the bounds). Without both bounds: ``"56.0%"``;
    a missing value: ``"n/a"``."""
    if not _is_number(value):
        return "n/a"
    if not (_is_number(low) and _is_number(high)):
        return pct(value, digits)
    return f"{pct(value, digits)} ({100 * low:.{digits}f}–{pct(high, digits)})"


def metrics_table(before, after) -> pd.DataFrame:
    """Before/after summary, rounded with units: accuracy with its 95% Wilson interval, valid answers,
    share of "A" answers, the random-guess level (all %), and n (puzzles)."""
    rows = []
    for name, r in (("base", before), ("after GRPO", after)):
        s = r.summary()
        rows.append({"model": name, "accuracy (95% CI)": pct_ci(s["accuracy"], s["ci_low"], s["ci_high"]),
                     "valid": pct(s["valid"]), "answers 'A'": pct(s["share_A"]), "random guess": pct(s["random"]),
                     "n": int(s["n"])})
    return pd.DataFrame(rows)


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
    """The comparison as a readable table, rounded with units: accuracy with its 95% interval (for
    ``compare_arms``: mean over seeds, bootstrap over seeds and photos), seeds, valid %, answers 'A' %,
    random-guess %, n (puzzles) and wall time ("4m 05s"; empty for base rows)."""
    out = summary.copy()
    out["accuracy (95% CI)"] = [pct_ci(a, lo, hi) for a, lo, hi in
                                zip(out["accuracy"], out["ci_low"], out["ci_high"], strict=True)]
    for col, name in (("valid", "valid"), ("share_A", "answers 'A'"), ("random", "random guess")):
        if col in out:
            out[name] = [pct(v) for v in out[col]]
    if "wall_s" in out:
        out["wall"] = [format_duration(v) if _is_number(v) else "" for v in out["wall_s"]]
    if "n_seeds" in out:
        out["seeds"] = [str(int(v)) if _is_number(v) else "" for v in out["n_seeds"]]
    cols = ["arm", "mode", "algorithm", "accuracy (95% CI)", "seeds", "valid", "answers 'A'", "random guess", "n",
            "wall"]
    return out[[c for c in cols if c in out]]


def _figure_tag(figure) -> str:
    """An embedded PNG ``<img>`` of a matplotlib figure, a PIL image or PNG bytes."""
    if isinstance(figure, (bytes, bytearray)):
        png = bytes(figure)
    else:
        buf = io.BytesIO()
        if hasattr(figure, "savefig"):  # matplotlib
            figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        else:  # PIL
            figure.save(buf, format="PNG")
        png = buf.getvalue()
    b64 = base64.b64encode(png).decode()
    return (f'<img src="data:image/png;base64,{b64}" alt="key figure" '
            'style="max-width:560px;max-height:300px;width:auto;height:auto;display:block">')


def summary_row(question: str, paper_claim: str | None, ours: str, verdict: str | None = None,
                figure=None) -> HTMLBlock:
    """The block a report opens with: the question, the paper's claim with its number, our result with
    its interval, the verdict and the key figure, in one short row (about 300 px tall at 1,400 px wide).

    A study report moves this block to the top of the page (``jrl_core.study.split_logs``), wherever the
    notebook displays it; in JupyterLab it shows where it is displayed.

    Args:
        question: the research question, one sentence.
        paper_claim: the paper's number and where it comes from (e.g. ``"52.2% → 98.8% (Jigsaw-R1 Table 1,
            Qwen2.5-VL-3B, 2x1 pair, non-thinking)"``); None: "no paper number".
        ours: our result with its interval and scale (e.g. from :func:`before_after_text`).
        verdict: e.g. ``"reproduced"``, ``"not reproduced at nano scale"``; None: not shown.
        figure: the key figure (matplotlib figure, PIL image or PNG bytes), shown on the right; None: none.

    Returns:
        HTML (inline styles, every text escaped) marked with :data:`SUMMARY_MARKER`.
    """
    rows = [("Question", question), ("Paper", paper_claim if paper_claim else "no paper number"), ("Ours", ours)]
    if verdict:
        rows.append(("Verdict", verdict))
    cells = "".join(
        f'<dt style="font-weight:600;color:#656d76">{html.escape(k)}</dt>'
        f'<dd style="margin:0{";font-weight:600" if k == "Verdict" else ""}">{html.escape(str(v))}</dd>'
        for k, v in rows)
    text = (f'<dl style="display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0;'
            f'flex:1 1 420px;align-content:start">{cells}</dl>')
    fig = f'<div style="flex:0 0 auto">{_figure_tag(figure)}</div>' if figure is not None else ""
    return HTMLBlock(
        f'<section class="jrl-summary" {SUMMARY_MARKER}="1" style="display:flex;gap:1.5rem;flex-wrap:wrap;'
        f'align-items:flex-start;border:1px solid #d0d7de;border-left:4px solid #0969da;border-radius:6px;'
        f'padding:.8rem 1rem;margin:.5rem 0 1rem;font:14px/1.45 system-ui,-apple-system,sans-serif;'
        f'color:#1f2328;text-align:left">{text}{fig}</section>')


def before_after_text(before, after, *, scale: str | None = None) -> str:
    """Our before → after accuracy with Wilson 95% intervals, for :func:`summary_row`:
    ``"47.5% (36.9–58.3%) base → 56.0% (50.3–61.5%) after GRPO (n = 80 held-out puzzles, nano scale)"``.

    Args:
        before, after: ``jrl_core.evaluate.EvalResult`` (or their ``summary()`` dicts).
    """
    b = before.summary() if hasattr(before, "summary") else before
    a = after.summary() if hasattr(after, "summary") else after
    where = f"n = {int(a['n'])} held-out puzzles" + (f", {scale} scale" if scale else "")
    return (f"{pct_ci(b['accuracy'], b['ci_low'], b['ci_high'])} base → "
            f"{pct_ci(a['accuracy'], a['ci_low'], a['ci_high'])} after GRPO ({where})")


def paper_claim_table1(question_type: str, m: int, n: int, think: bool, model: str = "Qwen2.5-VL-3B") -> str | None:
    """The paper's before → after for :func:`summary_row`, from :func:`paper_rows_table1`:
    ``"52.2% base → 98.8% after GRPO (Jigsaw-R1 Table 1, Qwen2.5-VL-3B, 2x1 pair, non-thinking)"``; None when the
    paper has no such cell."""
    rows = {("base" if " base" in r["label"] else "after"): r["accuracy"]
            for r in paper_rows_table1(question_type, m, n, think, model)}
    if "after" not in rows:
        return None
    table = "Table 1" if question_type == "pair" else "Table 7"
    where = f"Jigsaw-R1 {table}, {model}, {max(m, n)}x{min(m, n)} {question_type}, {'thinking' if think else 'non-thinking'}"
    start = f"{pct(rows['base'])} base → " if "base" in rows else ""
    return f"{start}{pct(rows['after'])} after GRPO ({where})"


_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def table_file(df: pd.DataFrame, run_dir, name: str, head: int = 10, *, write: bool = True) -> HTMLBlock:
    """Write a long table (per step, per puzzle) as ``<run_dir>/<name>.csv`` and show its first rows with a
    link to the file, so that the report stays short and the whole table stays one click away.

    The CSV is written atomically (every row and column, full text). The head shown is escaped HTML, with
    floats to 4 significant digits and text cells cut at 200 characters. The link is relative
    (``<name>.csv``): it resolves from a study report, which lives in ``run_dir``.

    Args:
        df: the table.
        run_dir: folder of the run (created if missing).
        name: file name without folder, ``[A-Za-z0-9][A-Za-z0-9._-]*``; ``.csv`` is added unless given.
        head: rows shown.
        write: False when the run already wrote this table (e.g. ``seed0/eval_after.csv``): link to that file
            (``name`` may then hold sub-folders) instead of writing a copy.

    Raises:
        ValueError: ``name`` is not a plain file name (or, with ``write=False``, a path of such names), or
            ``write=False`` names a file that does not exist.
    """
    if not all(_FILE_NAME.match(part) for part in (name.split("/") if not write else [name])):
        raise ValueError(f"table name {name!r}: use letters, digits, '.', '_', '-' (it becomes a file name)")
    file = name if name.endswith(".csv") else f"{name}.csv"
    if write:
        atomic_write_text(Path(run_dir) / file, df.to_csv(index=False))
    elif not (Path(run_dir) / file).is_file():
        raise ValueError(f"table_file(write=False): {Path(run_dir) / file} does not exist; write it or pass write=True.")
    shown = df.head(head).copy()
    for col in shown.columns:
        if not pd.api.types.is_numeric_dtype(shown[col]):
            shown[col] = [v if not isinstance(v, str) or len(v) <= 200 else v[:199] + "…" for v in shown[col]]
    table = shown.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", border=0)
    link = f'<a href="{html.escape(file, quote=True)}" download>{html.escape(file)}</a>'
    caption = (f"{link}: {len(df):,} rows × {len(df.columns)} columns"
               + (f"; the first {min(head, len(df))} shown" if len(df) > head else ""))
    return HTMLBlock(f'<div class="jrl-table-file"><p style="margin:.3rem 0">{caption}</p>'
                     f'<div style="overflow-x:auto">{table}</div></div>')


def write_comparison_metrics(run_dir, *, title: str, model: str, scale: str, summary: pd.DataFrame | None = None,
                             paper_vs_ours: list[dict] = (), extra: dict | None = None,
                             details: dict | None = None, comparison: dict | None = None) -> dict:
    """The metrics record of a comparison (``jrl_core.runs.write_metrics``, kind ``"comparison"``): per-arm
    accuracy ``acc_<arm>`` in [0, 1] plus ``extra`` flat metrics, the paper-vs-ours rows the study index shows
    (each with its scale and model), every arm's row in ``details["arms"]``; and ``summary.csv`` (every arm)
    beside it.

    With ``comparison`` (a :func:`jrl_core.experiment.compare_arms` result, which writes this record itself and
    which a notebook passes again when it rewrites the record with its paper rows): its summary (unless
    ``summary`` is given); its findings in ``details["findings"]`` and the first in ``details["finding"]`` (what
    the study index's findings table reads), with flat metrics ``diff_<a>_vs_<b>`` (and ``_low``, ``_high``:
    the paired difference in [−1, 1]), ``verdict_<a>_vs_<b>`` and ``verdict`` (the first finding's); its seeds
    (``n_seeds``, ``details["seeds"]``) and per-seed table (``details["per_seed"]`` and ``per_seed.csv``).

    Returns:
        The record as a dict.
    Raises:
        ValueError: neither ``summary`` nor ``comparison`` given.
    """
    from jrl_core import runs

    comparison = comparison or {}
    summary = summary if summary is not None else comparison.get("summary")
    if summary is None:
        raise ValueError("write_comparison_metrics: pass summary= (a compare_arms summary) or comparison= "
                         "(its result).")
    metrics = {f"acc_{r['arm']}": r["accuracy"] for r in summary.to_dict("records")}
    details = {"arms": summary.to_dict("records"), **(details or {})}
    findings = list(comparison.get("findings") or [])
    for f in findings:
        name = f"{f['a']}_vs_{f['b']}"
        d = f["difference_interval"]
        metrics.update({f"diff_{name}": d["mean"], f"diff_{name}_low": d["low"], f"diff_{name}_high": d["high"],
                        f"verdict_{name}": f["verdict"]})
    if findings:
        metrics["verdict"] = findings[0]["verdict"]
        details.update(findings=findings, finding=findings[0])
    if comparison.get("seeds") is not None:
        metrics["n_seeds"] = len(comparison["seeds"])
        details["seeds"] = list(comparison["seeds"])
    per_seed = comparison.get("per_seed")
    if per_seed is not None:
        details["per_seed"] = per_seed.to_dict("records")
        atomic_write_text(Path(run_dir) / "per_seed.csv", per_seed.to_csv(index=False))
    metrics.update(extra or {})
    atomic_write_text(Path(run_dir) / "summary.csv", summary.to_csv(index=False))
    record = runs.MetricsRecord(kind="comparison", title=title, model=model, scale=scale, metrics=metrics,
                                paper_vs_ours=list(paper_vs_ours), details=details)
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
        ``(model, processor, label) -> {"suite": DataFrame, "suite_items": DataFrame (one row per question,
        ``generalization.evaluate_suite(return_items=True)``: what a paired interval against the base needs),
        "grid": DataFrame | None, "downstream": DataFrame | None}``, with a ``key`` attribute (these settings as JSON) that tells ``compare_arms``
        when a stored result was measured the same way.
    """
    from jrl_core import downstream, evaluate, generalization

    sizes = [tuple(int(v) for v in s) for s in grid_sizes]

    def score(model, processor, label: str) -> dict:
        suite, items = generalization.evaluate_suite(model, processor, n_items=suite_items, seed=seed, think=mode,
                                                     progress=False, return_items=True)
        grid = evaluate.evaluate_grid(model, processor, sizes=sizes, question_types=("pair",), thinks=(mode,),
                                      n_items=grid_items, progress=False) if sizes else None
        down = downstream.evaluate_downstream(model, processor, benchmarks, progress=False) if benchmarks else None
        return {"suite": suite, "suite_items": items, "grid": grid, "downstream": down}

    # its settings, so that compare_arms reads a stored result back only for the same evaluation
    score.key = {"suite_items": suite_items, "mode": mode, "grid_sizes": [list(s) for s in sizes],
                 "grid_items": grid_items, "benchmarks": dict(benchmarks or {}), "seed": seed, "items": True}
    return score


def seeds_text(res: dict, *, scale: str | None = None) -> str:
    """Our multi-seed result for :func:`summary_row`, from ``experiment.run_seeds``: the mean after training with
    its bootstrap interval over seeds and photos, the gain over the base with its paired interval, and every
    seed's accuracy (none selected), e.g. ``"78.0% (70.1–85.2%) after GRPO, mean of 3 seeds (71.3%, 80.0%,
    82.7%); base 45.0%; gain +33.0 points (25.1–40.2); 300 held-out puzzles of 5 photos, nano scale"``."""
    a, b, g = res["after"], res["before"], res["gain"]
    seeds = ", ".join(pct(x) for x in res["table"]["after"])
    where = f"{a['n_puzzles']} held-out puzzles of {a['n_photos']} photos" + (f", {scale} scale" if scale else "")
    return (f"{pct_ci(a['mean'], a['low'], a['high'])} after GRPO, mean of {a['n_runs']} seeds ({seeds}); "
            f"base {pct(b['mean'])}; gain {100 * g['mean']:+.1f} points ({100 * g['low']:+.1f} to "
            f"{100 * g['high']:+.1f}); {where}")


def second_heldout_text(second: dict, *, scale: str | None = None) -> str:
    """The second held-out set's result (``experiment.second_heldout``) in :func:`seeds_text`'s words: the mean
    after training with its bootstrap interval over seeds and photos, every seed, the base and the paired gain."""
    from jrl_core.images import split_procedural

    a, b, g = second["after"], second["before"], second["gain"]
    seeds = ", ".join(pct(float(t["correct"].mean())) for t in second["seeds"].values())
    photos = ", ".join(sorted(second["by_photo"]["group"].unique()))
    chosen = ("; the walls' count is the one setting chosen on them"
              if "tiling" in split_procedural(second.get("photo_source") or "")[1] else "")
    return (f"Second held-out set ({a['n_puzzles']} puzzles of {a['n_photos']} photos other packages ship: {photos}; "
            f"never trained on{chosen}{', ' + scale + ' scale' if scale else ''}): "
            f"{pct_ci(a['mean'], a['low'], a['high'])} after GRPO, mean of {a['n_runs']} seeds ({seeds}); base "
            f"{pct(b['mean'])}; gain {100 * g['mean']:+.1f} points ({100 * g['low']:+.1f} to {100 * g['high']:+.1f})")


def seeds_table(table: pd.DataFrame) -> pd.DataFrame:
    """``experiment.run_seeds(...)["table"]`` for reading: per seed, base and after-training accuracy with the
    Wilson 95% interval, the gain in points, the share of "A" answers, and whether the seed was read back."""
    return pd.DataFrame({
        "seed": table["seed"],
        "base": [pct(x) for x in table["before"]],
        "after GRPO (95% CI)": [pct_ci(a, lo, hi) for a, lo, hi in
                                zip(table["after"], table["after_ci_low"], table["after_ci_high"], strict=True)],
        "gain (points)": [f"{100 * x:+.1f}" for x in table["gain"]],
        "answers 'A'": [pct(x) for x in table["share_A_after"]],
        "read back": table["cached"],
    })


def grid_table(grids: dict) -> pd.DataFrame:
    """``experiment.seed_grids`` for reading: per question type and size, the base's accuracy with its Wilson
    95% interval, the trained models' mean over seeds with the seed range, and the random-guess level."""
    before = grids["before"].set_index(["question_type", "size"])
    after = grids["after"].set_index(["question_type", "size"])
    rows = []
    for key in before.index:
        b, a = before.loc[key], after.loc[key] if key in after.index else None
        rows.append({"question": key[0], "size": key[1], "puzzles": int(b["n"]),
                     "base (95% CI)": pct_ci(b["accuracy"], b["ci_low"], b["ci_high"]),
                     "after GRPO, mean of seeds (range)": "n/a" if a is None else
                     f"{pct(a['accuracy'])} ({pct(a['seed_min'])}–{pct(a['seed_max'])}, {int(a['n_seeds'])} seeds)",
                     "random": pct(b["random"])})
    return pd.DataFrame(rows)


def _points(value) -> str:
    return f"{100 * value:+.1f}" if _is_number(value) else "n/a"


def contrast_text(a: str, b: str, res: dict, *, scale: str | None = None) -> str:
    """Our result for a declared contrast (``stats.paired_contrast``), for :func:`summary_row`: each arm's mean
    with its 95% interval (bootstrap over seeds and photos) and every seed's accuracy (none selected), e.g.
    ``"RL 78.0% (70.1–85.2%) vs SFT 61.0% (55.0–67.3%), mean of 3 seeds each (RL 71.3%, 80.0%, 82.7%; SFT 60.0%,
    61.0%, 62.0%); 200 held-out puzzles of 5 photos, nano scale"``."""
    ra, rb = res["a"], res["b"]
    seeds = "; ".join(f"{name} " + ", ".join(pct(r[key]) for r in res["per_seed"])
                      for name, key in ((a, "a"), (b, "b")))
    n = ra["n_runs"]
    where = f"{ra['n_puzzles']} held-out puzzles of {ra['n_photos']} photos" + (f", {scale} scale" if scale else "")
    return (f"{a} {pct_ci(ra['mean'], ra['low'], ra['high'])} vs {b} {pct_ci(rb['mean'], rb['low'], rb['high'])}, "
            f"{'mean of ' + str(n) + ' seeds each' if n > 1 else 'one seed each'} ({seeds}); {where}")


def difference_text(res: dict, half_width: float = 0.05) -> str:
    """The paired difference a − b of a contrast (``stats.paired_contrast``) in points with its 95% interval,
    ``"+17.0 points (+9.1 to +25.2)"``; when the verdict is inconclusive: that the interval is already within
    ±``half_width`` (no difference of that size), else the seeds needed for a ±``half_width`` interval at the
    observed seed spread (``"; about 12 seeds for ±5 points"``), or, with one seed, that the spread is unknown."""
    d = res["difference"]
    text = f"{_points(d['mean'])} points"
    text += (f" ({_points(d['low'])} to {_points(d['high'])})" if _is_number(d["low"]) and _is_number(d["high"])
             else " (no interval: the held-out puzzles come from one photo)")
    if res["verdict"] == "inconclusive":
        hw = f"±{100 * half_width:.0f} points"
        narrow = _is_number(d["low"]) and _is_number(d["high"]) and (d["high"] - d["low"]) / 2 <= half_width
        if narrow:  # more seeds would not help: the difference itself is smaller than the interval resolves
            text += f"; the interval is already within {hw}: no difference of that size"
        elif res.get("seeds_needed") is not None:
            text += f"; about {res['seeds_needed']} seeds for {hw}"
        else:
            text += f"; one seed: the seed spread is unknown, run ≥ 2 seeds to size a {hw} interval"
    return text


def finding(contrast, res: dict, ours: str, **extra) -> dict:
    """The record of one tested claim, as the study index and :func:`finding_row` read it (``details["findings"]``
    of a run's ``metrics.json``).

    Args:
        contrast: the declared claim (``experiment.Contrast``: id, a, b, direction, claim, paper, rule()).
        res: its test (``stats.paired_contrast`` or ``stats.rate_contrast``: a, b, difference, verdict, per_seed,
            seed_sd, seeds_needed, pairing).
        ours: our result in words (:func:`contrast_text`, :func:`rate_text`).
        extra: more fields (e.g. ``on``: the table the claim was tested on).
    Returns:
        ``{id, claim, paper, ours, difference (:func:`difference_text`), verdict, rule, a, b, direction, arm_a,
        arm_b, difference_interval, per_seed, seed_sd, seeds_needed, n_seeds, pairing, **extra}``.
    """
    return {"id": contrast.id, "claim": contrast.claim, "paper": contrast.paper or "no paper number", "ours": ours,
            "difference": difference_text(res), "verdict": res["verdict"], "rule": contrast.rule(),
            "a": contrast.a, "b": contrast.b, "direction": contrast.direction, "arm_a": res["a"], "arm_b": res["b"],
            "difference_interval": res["difference"], "per_seed": res["per_seed"], "seed_sd": res["seed_sd"],
            "seeds_needed": res["seeds_needed"], "n_seeds": len(res["per_seed"]), "pairing": res["pairing"], **extra}


def rate_text(a: str, b: str, res: dict, *, unit: str = "prompt groups", scale: str | None = None) -> str:
    """Our result for an unpaired rate claim (``stats.rate_contrast``), e.g. keyword frequency late vs early in
    training: both rates with their 95% intervals and every seed's values, ``"late steps 12.0% (9.1–15.2%) vs
    early steps 8.0% (6.0–10.3%), mean of 3 seeds (late 11.0%, 12.5%, 12.5%; early …); 240 + 240 prompt groups,
    nano scale"``."""
    ra, rb = res["a"], res["b"]
    seeds = "; ".join(f"{name} " + ", ".join(pct(r[key]) for r in res["per_seed"])
                      for name, key in ((a, "a"), (b, "b")))
    n = ra["n_runs"]
    return (f"{a} {pct_ci(ra['mean'], ra['low'], ra['high'])} vs {b} {pct_ci(rb['mean'], rb['low'], rb['high'])}, "
            f"{'mean of ' + str(n) + ' seeds' if n > 1 else 'one seed'} ({seeds}); {ra['n_units']} + "
            f"{rb['n_units']} {unit}" + (f", {scale} scale" if scale else ""))


def agreement_text(evals: pd.DataFrame) -> str:
    """Jigsaw-R1 Finding 3's second half and Think-or-Not-Think Fig. 2 in words, for a thinking arm's finding: the
    share of held-out completions whose ``<think>`` conclusion differs from their ``<answer>``, and how often each
    is right among those (``analysis.consistency_summary`` of evaluation tables: ``completion``, ``solution``,
    ``answer_type``; several seeds' tables stacked)."""
    from jrl_core import analysis

    agree = analysis.consistency_summary(evals).iloc[0]
    return (f"after thinking RL {pct(1 - agree['consistent_share'])} of held-out completions conclude otherwise in "
            f"<think> than in <answer> (accuracy of the <answer> among those {pct(agree.get('accuracy_inconsistent'))}, "
            f"of the <think> conclusion {pct(agree.get('reasoning_accuracy_inconsistent'))}; "
            f"{pct(agree['undetermined_share'])} undetermined)")


def wall_time_text(summary: pd.DataFrame, arms: dict, labels) -> str:
    """No-Thinking-RL's cost claim in words: each arm's wall time per seed (training and evaluation, from a
    ``compare_arms`` summary) with its GRPO steps × prompts, e.g. ``"wall time per seed no_thinking_rl 86 s (40 steps
    × 16 prompts), thinking 165 s (40 steps × 16 prompts)"``; "" when a time is missing."""
    walls = {r["arm"]: r["wall_s"] / r["n_seeds"] for r in summary.to_dict("records")
             if r.get("n_seeds") and _is_number(r.get("wall_s"))}
    if not all(k in walls for k in labels):
        return ""
    parts = []
    for k in labels:
        g = arms[k].grpo_settings()
        parts.append(f"{k} {walls[k]:.0f} s ({g.steps} steps × {g.prompts_per_step} prompts)")
    return "wall time per seed " + ", ".join(parts)


def finding_row(question: str, finding: dict, figure=None) -> HTMLBlock:
    """:func:`summary_row` of a comparison's finding (``compare_arms(...)["findings"][i]``): the question, the
    paper's claim with its number, our two arms with their intervals and the paired difference, the verdict."""
    return summary_row(question, finding.get("paper"), f"{finding['ours']}; difference {finding['difference']}",
                       finding.get("verdict"), figure=figure)


def findings_table(findings: list[dict]) -> pd.DataFrame:
    """A comparison's declared claims for reading (``compare_arms(...)["findings"]``): claim, paper, ours (both
    arms with their intervals and every seed), the paired difference with its interval, the verdict and how
    arms were paired."""
    cols = {"claim": "claim", "paper": "paper", "ours": "ours", "difference": "difference (95% interval)",
            "verdict": "verdict", "pairing": "paired"}
    return pd.DataFrame([{name: f.get(key) for key, name in cols.items()} for f in findings],
                        columns=list(cols.values()))


def comparison_row(question: str, res: dict, figure=None) -> HTMLBlock:
    """The block a comparison report opens with: :func:`finding_row` of its first declared contrast (the main
    claim); without a contrast, each arm's mean with its interval and no verdict."""
    if res.get("findings"):
        return finding_row(question, res["findings"][0], figure=figure)
    arms = [r for r in res["summary"].to_dict("records") if r.get("n_seeds")]
    ours = "; ".join(f"{r['arm']} {pct_ci(r['accuracy'], r['ci_low'], r['ci_high'])}" for r in arms)
    n = len(res.get("seeds") or [])
    return summary_row(question, None, f"{ours} ({n} seed{'s' if n != 1 else ''} each; no contrast declared)",
                       None, figure=figure)


def suite_text(suites: dict, group: str = "UNSEEN", *, scale: str | None = None) -> str:
    """Generalization-suite accuracy of a comparison for :func:`summary_row`: per model (``experiment.pooled_extra
    (res, "suite")``) the ``group`` mean (``"UNSEEN"``: families the nano pretraining never trained) over seeds,
    with the seed range, e.g. ``"UNSEEN suite families: base 41.0%; 2x1-pair 45.0% (43.0–47.0% over 2 seeds)"``."""
    parts = []
    for label, table in suites.items():
        hit = table[table["suite"] == group]
        if not len(hit):
            continue
        if "seed" in hit and hit["seed"].nunique() > 1:
            parts.append(f"{label} {pct(hit['accuracy'].mean())} ({100 * hit['accuracy'].min():.1f}–"
                         f"{pct(hit['accuracy'].max())} over {hit['seed'].nunique()} seeds)")
        else:
            parts.append(f"{label} {pct(hit['accuracy'].mean())}")
    return f"{group} suite families: " + ("; ".join(parts) or "none") + (f" ({scale} scale)" if scale else "")
