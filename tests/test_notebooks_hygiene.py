"""Committed notebooks are papermill-ready: a `parameters` cell and no outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks/*.ipynb yet")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, (
        f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    )
    assert tagged[0].cell_type == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_no_committed_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"
    )


# Smoke parameters per notebook: a handful of steps, a tiny test set, a tiny nano pretraining (recipe overrides, the
# keys of `jrl train --set`; the nano build is cached per test, so every arm of a notebook shares it).
NANO_SMOKE = {"nano.pretrain_steps": 3, "nano.vision_pretrain_steps": 3, "nano.vision_pretrain_pool": 64}
TINY_GRPO = {"grpo.steps": 2, "grpo.prompts_per_step": 2}
SMOKE = {
    "rq1_jigsaw.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "n_test": 8}, "seeds": [0, 1], "jobs": 2,
                         "grid_sizes": [[2, 1], [2, 2]], "grid_items": 2},
    "rq3_thinking.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "grpo.steps": 1, "n_test": 4},
                           "arm_overrides": {"thinking": {"grpo.steps": 1, "grpo.prompts_per_step": 2}}},
    "rq5_sft_vs_rl.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "grpo.steps": 1, "n_test": 4},
                            "arm_overrides": {"SFT": {"sft.steps": 2}, "SFT-RL": {"sft.steps": 1}}, "suite_items": 2},
    "grpo_d.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "n_test": 4}, "suite_items": 2},
    "rq4_reasoning.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "n_test": 4}, "sizes": ["2x1", "3x1"],
                            "size_overrides": {"grpo.steps": 1, "n_test": 4}},
    "rq2_generalization.ipynb": {"overrides": {**NANO_SMOKE, **TINY_GRPO, "grpo.steps": 1, "n_test": 2},
                                 "arms": {"2x1-pair": "nano/rq1_2x1_pair"}, "grid_items": 2, "suite_items": 2,
                                 "grid_sizes": [[2, 1], [2, 2]]},
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_through_papermill_in_a_smoke_setting(path, tmp_path, monkeypatch):
    from jrl_core import study

    monkeypatch.setenv("JRL_CACHE", str(tmp_path / "cache"))  # the kernel inherits it: no repo cache touched
    spec = study.RunSpec(notebook=path.name, name=f"smoke_{path.stem}", parameters=SMOKE.get(path.name, {}))
    result = study.execute_run(spec, reports_dir=tmp_path / "reports", progress=False)
    assert result.ok, result.error
    html = (tmp_path / "reports" / spec.name / "index.html").read_text()
    assert "Traceback" not in html
