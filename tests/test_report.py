"""Report pieces: rounded numbers with units, the summary row, long tables as files beside the report."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jrl_core import report
from jrl_core.study import SUMMARY_MARKER

XSS = "<script>alert(1)</script>"


class _Eval:
    """Stands in for ``jrl_core.evaluate.EvalResult``: only ``summary()`` is read."""

    def __init__(self, **summary):
        self._summary = summary

    def summary(self):
        return self._summary


BEFORE = _Eval(accuracy=0.475, ci_low=0.36912, ci_high=0.5834, valid=1.0, share_A=0.5, random=0.5, n=80)
AFTER = _Eval(accuracy=0.56, ci_low=0.503420997979743, ci_high=0.6150617904205289, valid=0.9875, share_A=0.4,
              random=0.5, n=80)


def test_pct_ci_rounds_to_one_decimal_with_unit_and_interval():
    assert report.pct_ci(0.56, 0.503420997979743, 0.6150617904205289) == "56.0% (50.3–61.5%)"
    assert report.pct_ci(0.56) == "56.0%"
    assert report.pct_ci(None) == report.pct_ci(math.nan) == "n/a"


def test_metrics_table_shows_rounded_percentages_with_units():
    table = report.metrics_table(BEFORE, AFTER)
    after = table.set_index("model").loc["after GRPO"]
    assert after["accuracy (95% CI)"] == "56.0% (50.3–61.5%)"
    assert after["valid"] == "98.8%" and after["random guess"] == "50.0%" and after["n"] == 80


def test_arms_table_shows_rounded_percentages_and_wall_time():
    summary = pd.DataFrame([
        {"arm": "base", "mode": "non_thinking", "algorithm": "none", **BEFORE.summary(), "wall_s": None},
        {"arm": "grpo", "mode": "non_thinking", "algorithm": "grpo", **AFTER.summary(), "wall_s": 245.3},
    ])
    table = report.arms_table(summary)
    assert list(table["accuracy (95% CI)"]) == ["47.5% (36.9–58.3%)", "56.0% (50.3–61.5%)"]
    assert list(table["wall"]) == ["", "4m 05s"]


def test_summary_row_is_marked_escaped_and_embeds_its_figure():
    from PIL import Image

    block = report.summary_row(XSS, "52.2% base → 98.8%", report.before_after_text(BEFORE, AFTER, scale="nano"),
                               verdict=XSS, figure=Image.new("RGB", (8, 8)))
    assert SUMMARY_MARKER in block and block._repr_html_() == str(block)
    assert "<script>" not in block and "&lt;script&gt;" in block
    assert "47.5% (36.9–58.3%) base → 56.0% (50.3–61.5%) after GRPO (n = 80 held-out puzzles, nano scale)" in block
    assert "data:image/png;base64," in block


def test_summary_row_without_paper_number_or_verdict_says_so():
    block = report.summary_row("q?", None, "50.0%")
    assert "no paper number" in block and "Verdict" not in block


def test_paper_claim_reads_jigsaw_r1_table_1():
    claim = report.paper_claim_table1("pair", 2, 1, think=False)
    assert claim.startswith("52.2% base → 98.8% after GRPO") and "Table 1" in claim
    assert report.paper_claim_table1("pair", 7, 7, think=False) is None


def test_table_file_writes_the_whole_table_and_shows_an_escaped_head_with_a_link(tmp_path):
    df = pd.DataFrame({"step": range(150), "completion": [XSS + "x" * 300] * 150, "loss": [1 / 3] * 150})
    block = report.table_file(df, tmp_path, "steps", head=10)
    assert pd.read_csv(tmp_path / "steps.csv").shape == (150, 3)
    assert 'href="steps.csv"' in block and "150 rows × 3 columns; the first 10 shown" in block
    assert block.count("<tr") == 11  # header + 10 rows
    assert "<script>" not in block and "&lt;script&gt;" in block
    assert "0.3333" in block and "0.333333" not in block  # floats to 4 significant digits
    assert "x" * 250 not in block  # long text cut in the page; whole in the CSV
    assert [p.name for p in tmp_path.iterdir()] == ["steps.csv"]  # atomic: no temporary file left


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_table_file_name_must_be_a_plain_file_name(tmp_path, name):
    with pytest.raises(ValueError, match="file name"):
        report.table_file(pd.DataFrame({"a": [1]}), tmp_path, name)


def test_table_file_links_a_table_the_run_already_wrote_without_copying(tmp_path):
    import pandas as pd

    from jrl_core import report

    (tmp_path / "seed0").mkdir()
    df = pd.DataFrame({"a": range(20)})
    df.to_csv(tmp_path / "seed0" / "eval_after.csv", index=False)
    block = report.table_file(df, tmp_path, "seed0/eval_after.csv", write=False)
    assert 'href="seed0/eval_after.csv"' in block and sorted(p.name for p in tmp_path.iterdir()) == ["seed0"]
    with pytest.raises(ValueError, match="does not exist"):
        report.table_file(df, tmp_path, "seed1/eval_after.csv", write=False)
