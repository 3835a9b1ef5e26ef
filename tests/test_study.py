"""Study layer: papermill runs → executed notebook + self-contained HTML + run.json → index.

Tiny notebooks are written on the fly; one module-scoped study (ok, failing, ok) is
executed once and shared, so the whole file starts only a handful of kernels.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from notebook_helpers import write_notebook

from jrl_core.cli import main
from jrl_core.study import (
    RunSpec,
    execute_run,
    load_study,
    run_hash,
    run_study,
    write_index,
)

XSS = "<script>alert(1)</script>"

PARAMETERS = "label = 'default'\nscale = 1.0\nrun_dir = None"
FIGURE = (
    "%matplotlib inline\n"
    "import matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots(figsize=(2, 2))\n"
    "ax.plot([0, 1], [0, scale])\n"
    "plt.show()"
)
METRICS = (
    "import json, os, sys, pathlib\n"
    "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({\n"
    "    'acc_before': 0.25, 'acc_after': 0.123456 * scale, 'label': label,\n"
    "    'kernel_prefix': sys.prefix, 'cwd': os.getcwd(),\n"
    "    'skipped_inputs': {'too_small': 2},\n"
    "    'paper_vs_ours': [{'metric': 'acc 2x1', 'paper': 0.98, 'ours': 0.5, 'scale': 'nano', 'model': label}],\n"
    "}))\n"
    "print('scale is', scale)"
)


def _write_notebook(path: Path, *, fail: bool = False) -> Path:
    failing = ("raise RuntimeError('the-rollout-exploded')", "print('never reached')") if fail else ()
    return write_notebook(path, PARAMETERS, FIGURE, METRICS, *failing)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks")
    _write_notebook(d / "ok.ipynb")
    _write_notebook(d / "bad.ipynb", fail=True)
    return d


@pytest.fixture(scope="module")
def specs() -> list[RunSpec]:
    return [
        RunSpec("ok.ipynb", "alpha", {"label": XSS, "scale": 2.0}),
        RunSpec("bad.ipynb", "broken", {}),
        RunSpec("ok.ipynb", "after_broken", {}),
    ]


@pytest.fixture(scope="module")
def study(tmp_path_factory, notebooks, specs):
    reports = tmp_path_factory.mktemp("reports")
    results = run_study(specs, reports, notebooks_dir=notebooks, progress=False)
    return reports, {r.name: r for r in results}


# ----------------------------------------------------------------------------- execute_run


def test_successful_run_writes_executed_notebook(study):
    reports, _ = study
    nb = nbformat.read(reports / "alpha" / "alpha.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "run_dir" in injected[0].source and "scale = 2.0" in injected[0].source
    assert any(o.get("text", "").startswith("scale is 2.0") for c in nb.cells for o in c.get("outputs", []))


def test_successful_run_html_is_self_contained_with_embedded_figure(study):
    reports, _ = study
    page = (reports / "alpha" / "index.html").read_text()
    assert "data:image/png;base64," in page
    assert 'src="alpha_files' not in page  # no figure written next to the page


def test_run_json_records_provenance_and_notebook_metrics(study):
    reports, results = study
    rec = json.loads((reports / "alpha" / "run.json").read_text())
    assert rec == results["alpha"].record
    for key in (
        "name",
        "notebook",
        "parameters",
        "hash",
        "status",
        "error",
        "git",
        "versions",
        "hardware",
        "started",
        "finished",
        "wall_s",
        "metrics",
        "skipped_inputs",
    ):
        assert key in rec, key
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["parameters"] == {"label": XSS, "scale": 2.0}
    assert len(rec["hash"]) == 12
    assert rec["git"] is None or len(rec["git"]["commit"]) == 40
    assert {
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "papermill",
        "numpy",
        "python",
    } <= set(rec["versions"])
    assert {"platform", "cpu_count", "cuda_available", "cuda_device"} <= set(rec["hardware"])
    assert rec["wall_s"] > 0 and rec["started"] <= rec["finished"]
    assert rec["metrics"]["acc_after"] == pytest.approx(0.246912)
    assert rec["skipped_inputs"] == {"too_small": 2}


def test_kernel_is_this_interpreter_and_cwd_is_repo_root(study):
    reports, results = study
    metrics = results["alpha"].record["metrics"]
    assert metrics["kernel_prefix"] == sys.prefix
    assert Path(metrics["cwd"]) == Path(__file__).resolve().parent.parent


def test_writes_are_atomic_no_temporary_files_left(study):
    reports, _ = study
    leftovers = [p for p in reports.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []


def test_failed_run_keeps_partial_report_with_error(study):
    reports, results = study
    broken = results["broken"]
    assert broken.status == "failed"
    assert "the-rollout-exploded" in broken.error
    page = (reports / "broken" / "index.html").read_text()
    assert "the-rollout-exploded" in page
    assert "data:image/png;base64," in page  # cells before the error kept their outputs
    nb = nbformat.read(reports / "broken" / "broken.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert json.loads((reports / "broken" / "run.json").read_text())["status"] == "failed"


def test_run_after_a_failure_still_executes(study):
    _, results = study
    assert results["after_broken"].status == "ok"
    assert results["after_broken"].record["metrics"]["label"] == "default"


def test_run_dir_parameter_is_reserved(notebooks, tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        execute_run(RunSpec("ok.ipynb", "x", {"run_dir": "/tmp"}), tmp_path, notebooks_dir=notebooks)


def test_run_name_must_be_a_plain_directory_name(notebooks, tmp_path):
    with pytest.raises(ValueError, match="run name"):
        execute_run(RunSpec("ok.ipynb", "../escape"), tmp_path, notebooks_dir=notebooks)


# ----------------------------------------------------------------------------- run_study


def test_run_hash_is_stable_and_depends_on_parameters_and_notebook(notebooks):
    a = RunSpec("ok.ipynb", "a", {"x": 1, "y": 2})
    assert run_hash(a, notebooks) == run_hash(RunSpec("ok.ipynb", "b", {"y": 2, "x": 1}), notebooks)
    assert run_hash(a, notebooks) != run_hash(RunSpec("ok.ipynb", "a", {"x": 1, "y": 3}), notebooks)
    assert run_hash(a, notebooks) != run_hash(RunSpec("bad.ipynb", "a", {"x": 1, "y": 2}), notebooks)


def test_second_study_skips_finished_runs_and_reruns_changed_ones(study, specs, notebooks, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    alpha = specs[0]
    again = run_study([alpha], reports, notebooks_dir=notebooks, progress=False)
    assert again[0].skipped and again[0].status == "ok"
    assert again[0].record["finished"] == study[1]["alpha"].record["finished"]

    changed = RunSpec(alpha.notebook, alpha.name, {**alpha.parameters, "scale": 3.0})
    rerun = run_study([changed], reports, notebooks_dir=notebooks, progress=False)
    assert not rerun[0].skipped and rerun[0].status == "ok"
    assert rerun[0].record["hash"] != again[0].record["hash"]
    assert rerun[0].record["metrics"]["acc_after"] == pytest.approx(0.123456 * 3)


def test_study_rejects_duplicate_names(notebooks, tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        run_study([RunSpec("ok.ipynb", "a"), RunSpec("ok.ipynb", "a")], tmp_path, notebooks_dir=notebooks)


# ----------------------------------------------------------------------------- index


def test_index_lists_every_run_with_links_and_status(study):
    reports, _ = study
    page = (reports / "index.html").read_text()
    for name in ("alpha", "broken", "after_broken"):
        assert f'href="{name}/index.html"' in page
    assert 'class="failed"' in page and "the-rollout-exploded" in page
    assert "0.247" in page  # acc_after formatted to 3 digits
    assert "Paper vs ours" in page
    assert "http://" not in page and "https://" not in page  # no external resources


def test_index_escapes_untrusted_strings(study, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    evil = reports / "evil"
    evil.mkdir()
    (evil / "run.json").write_text(
        json.dumps(
            {
                "name": XSS,
                "notebook": XSS,
                "status": XSS,
                "error": XSS,
                "finished": XSS,
                "metrics": {XSS: XSS},
                "git": {"commit": XSS, "dirty": True},
            }
        )
    )
    page = write_index(reports).read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_index_of_empty_reports_dir_is_valid(tmp_path):
    page = write_index(tmp_path / "nothing").read_text()
    assert "no runs yet" in page


# ----------------------------------------------------------------------------- load_study


def test_load_study_merges_defaults_under_run_parameters(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "defaults: {seed: 0, steps: 5}\n"
        "runs:\n"
        "  - {notebook: a.ipynb, name: a, parameters: {steps: 7}}\n"
        "  - {notebook: b.ipynb, name: b}\n"
    )
    a, b = load_study(path)
    assert a == RunSpec("a.ipynb", "a", {"seed": 0, "steps": 7})
    assert b.parameters == {"seed": 0, "steps": 5}


def test_repository_studies_load():
    for name in ("quick", "full"):
        specs = load_study(name)
        assert [s.name for s in specs][:1] == ["rq1_jigsaw_2x1_pair"]
        assert specs[0].notebook == "rq1_jigsaw.ipynb"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("runs: [\n", "invalid YAML"),
        ("- a\n- b\n", "runs"),
        ("defaults: {}\n", "runs"),
        ("runs: []\n", "runs"),
        ("runs: [{name: a}]\n", "notebook"),
        ("runs: [{notebook: a.ipynb}]\n", "name"),
        ("runs: [{notebook: a.ipynb, name: a, parameters: [1, 2]}]\n", "parameters"),
        ("runs: [{notebook: a.ipynb, name: a, paramters: {}}]\n", "paramters"),
        ("runs: [{notebook: a.ipynb, name: a}]\ndefaults: [1]\n", "defaults"),
        ("runs: [{notebook: a.ipynb, name: a}, {notebook: b.ipynb, name: a}]\n", "duplicated"),
        ("runs: [{notebook: a.ipynb, name: 'a/b'}]\n", "name"),
    ],
)
def test_load_study_malformed_raises_value_error_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_study(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_load_study_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_study(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- cli


def test_cli_index(study, capsys):
    assert main(["index", "--reports", str(study[0])]) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")


def test_cli_study_exit_status_counts_failures_and_only_filters(study, notebooks, tmp_path, capsys):
    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    # a study file whose notebooks are absolute paths; the finished run is skipped
    path = tmp_path / "s.yaml"
    path.write_text(
        "runs:\n"
        f"  - {{notebook: {notebooks / 'ok.ipynb'}, name: alpha, parameters: {{label: '{XSS}', scale: 2.0}}}}\n"
        f"  - {{notebook: {notebooks / 'bad.ipynb'}, name: broken}}\n"
    )
    assert main(["study", str(path), "--reports", str(reports), "--only", "alpha"]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "cached" in out and "index.html" in out
    # without --only the failed run is retried (it is never cached) and the exit status counts it
    assert main(["study", str(path), "--reports", str(reports)]) == 1
    assert "FAILED broken" in capsys.readouterr().err


def test_cli_only_unknown_name_exits_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("runs: [{notebook: a.ipynb, name: a}]\n")
    with pytest.raises(SystemExit) as info:
        main(["study", str(path), "--reports", str(tmp_path), "--only", "nope"])
    assert info.value.code == 2


def test_cli_run_parses_parameter_values_as_yaml(notebooks, tmp_path):
    status = main(
        [
            "run",
            str(notebooks / "ok.ipynb"),
            "-p",
            "scale",
            "0.5",
            "-p",
            "label",
            "yes please",
            "--name",
            "single",
            "--reports",
            str(tmp_path),
        ]
    )
    assert status == 0
    rec = json.loads((tmp_path / "single" / "run.json").read_text())
    assert rec["parameters"] == {"scale": 0.5, "label": "yes please"}
    assert (tmp_path / "index.html").is_file()


# ----------------------------------------------------------------------------- "ok" only when outputs are there

SLEEPY = (
    "import os, time\n"
    "time.sleep(float(os.environ.get('JRL_TEST_SLEEP', '0')))"
)


def _write_sleepy_notebook(path: Path, sleep_cell: str = SLEEPY) -> Path:
    return write_notebook(path, "run_dir = None", sleep_cell,
                          "import json, pathlib\npathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({'acc': 1.0}))")


def test_killed_forced_rerun_is_redone_never_cached(tmp_path):
    import os
    import signal
    import subprocess
    import time

    notebook = _write_sleepy_notebook(tmp_path / "slow.ipynb")
    reports = tmp_path / "reports"
    spec = RunSpec(str(notebook), "slow")
    [first] = run_study([spec], reports, progress=False)
    assert first.ok and (reports / "slow" / "metrics.json").is_file()

    # rerun with --force, SIGKILL it while the notebook runs
    code = (f"from jrl_core.study import RunSpec, run_study\n"
            f"run_study([RunSpec({str(notebook)!r}, 'slow')], {str(reports)!r}, force=True, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "JRL_TEST_SLEEP": "30"},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = reports / "slow"
    deadline = time.monotonic() + 120
    try:
        while not any(p.stat().st_size for p in run_dir.glob(".slow.*.tmp.ipynb")):
            assert proc.poll() is None and time.monotonic() < deadline, "the forced rerun never started"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert not (run_dir / "metrics.json").exists()
    assert list(run_dir.glob(".slow.*.tmp.ipynb"))  # what a kill leaves behind
    assert "interrupted" in write_index(reports).read_text()

    [again] = run_study([spec], reports, progress=False)
    assert not again.skipped and again.ok
    assert "did not finish" in again.note
    assert (run_dir / "metrics.json").is_file()
    assert list(run_dir.glob(".*.tmp*")) == []  # the killed attempt's temporary notebook is gone
    assert run_study([spec], reports, progress=False)[0].skipped  # now it is finished


def test_run_with_deleted_outputs_is_not_cached(study, specs, notebooks, tmp_path):
    from jrl_core.study import cached_record

    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    alpha = specs[0]
    rec, reason = cached_record(alpha, reports, notebooks)
    assert rec is not None and reason == ""
    assert set(rec["outputs"]) == {"alpha.ipynb", "index.html", "metrics.json"}
    (reports / "alpha" / "metrics.json").unlink()
    rec, reason = cached_record(alpha, reports, notebooks)
    assert rec is None and "metrics.json" in reason


def test_running_record_is_not_cached(study, specs, notebooks, tmp_path):
    from jrl_core.study import cached_record

    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    path = reports / "alpha" / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "running", "pid": 2**22 + 7}))
    rec, reason = cached_record(specs[0], reports, notebooks)
    assert rec is None and "did not finish" in reason


def test_timeout_stops_a_hanging_notebook_with_a_clear_message(tmp_path):
    import time

    notebook = _write_sleepy_notebook(tmp_path / "hang.ipynb", "import time\ntime.sleep(120)")
    t0 = time.monotonic()
    result = execute_run(RunSpec(str(notebook), "hang", timeout_s=3), tmp_path / "reports", progress=False)
    assert time.monotonic() - t0 < 60
    assert result.status == "failed" and result.record["timed_out"] is True
    assert "timed out after 3 s" in result.error and "timeout_s" in result.error
    assert "timed out after 3 s" in result.html_path.read_text()
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "failed"


def test_load_study_reads_timeouts(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("timeout_s: 600\nruns:\n  - {notebook: a.ipynb, name: a}\n"
                    "  - {notebook: b.ipynb, name: b, timeout_s: 5}\n")
    a, b = load_study(path)
    assert (a.timeout_s, b.timeout_s) == (600.0, 5.0)
    path.write_text("runs:\n  - {notebook: a.ipynb, name: a, timeout_s: soon}\n")
    with pytest.raises(ValueError, match="timeout_s.*seconds > 0"):
        load_study(path)


# ----------------------------------------------------------------------------- index robustness


def test_index_survives_a_run_record_with_a_lone_surrogate(study, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    (reports / "zzz").mkdir()
    (reports / "zzz" / "run.json").write_text('{"name": "zzz", "status": "ok", "error": "\\ud800"}')
    (reports / "notjson").mkdir()
    (reports / "notjson" / "run.json").write_text("{truncated")
    assert main(["index", "--reports", str(reports)]) == 0
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert page.count("unreadable run.json") == 2
    assert "lone surrogate" in page
    assert 'href="alpha/index.html"' in page  # the other runs are still listed


def test_index_shows_skipped_inputs(study, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(study[0], reports)
    (reports / "photos").mkdir()
    (reports / "photos" / "run.json").write_text(json.dumps({
        "name": "photos", "status": "ok",
        "skipped_inputs": {"skipped": {"bad_name": 1, "unreadable": 3}, "total": 4, "examples": ["caf\\xe9.jpg: bad"]},
    }))
    page = write_index(reports).read_text()
    assert "<th>skipped inputs</th>" in page
    assert "<code>too_small</code>: 2" in page  # alpha's notebook wrote {"too_small": 2}
    assert "<code>bad_name</code>: 1" in page and "<code>unreadable</code>: 3" in page


# ----------------------------------------------------------------------------- logs out of the page

NOISY = (  # the texts are assembled at run time, so that only outputs (not the hidden code) contain them
    "import sys, warnings\n"
    "from tqdm.auto import tqdm\n"
    "for _ in tqdm(range(3), desc='noisy-' + 'steps'):\n"
    "    pass\n"
    "print('noisy-' + 'stderr-line', file=sys.stderr)\n"
    "warnings.warn('noisy-' + 'own-warning')\n"
    "# a library's deprecation about its own call (as TRL reading transformers' is_gradient_checkpointing)\n"
    "warnings.warn_explicit('noisy-' + 'third-party-deprecation', FutureWarning, 'modeling_utils.py', 1,\n"
    "                       module='transformers.modeling_utils')\n"
    "print('noisy-' + 'stdout-line')"
)
SUMMARY = (
    "from jrl_core import report\n"
    "display(report.summary_row('noisy-question?', 'paper 98.8%', report.pct_ci(0.56, 0.503, 0.615)))"
)


def _write_noisy_notebook(path: Path, *, fail: bool = False) -> Path:
    failing = ("import sys\nprint('failing-cell-' + 'stderr', file=sys.stderr)\n"
               "raise RuntimeError('noisy-' + 'failure')",) if fail else ()
    return write_notebook(path, "run_dir = None", FIGURE.replace("scale", "1.0"), NOISY, SUMMARY, *failing)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    d = tmp_path_factory.mktemp("noisy")
    reports = d / "reports"
    results = run_study([RunSpec(str(_write_noisy_notebook(d / "noisy.ipynb")), "noisy"),
                         RunSpec(str(_write_noisy_notebook(d / "noisy_fail.ipynb", fail=True)), "noisy_fail")],
                        reports, progress=False)
    return reports, {r.name: r for r in results}


def test_successful_report_has_no_stderr_warning_or_progress_output(noisy):
    reports, results = noisy
    assert results["noisy"].ok, results["noisy"].error
    page = (reports / "noisy" / "index.html").read_text()
    for text in ("noisy-stderr-line", "noisy-own-warning", "noisy-steps", "UserWarning",
                 'data-mime-type="application/vnd.jupyter.stderr"', "widget-view+json", "widget-state+json"):
        assert text not in page, text
    assert "noisy-stdout-line" in page  # stdout stays
    assert "data:image/png;base64," in page


def test_log_beside_the_report_has_what_the_page_left_out(noisy):
    reports, _ = noisy
    log = (reports / "noisy" / "run.log").read_text()
    assert "noisy-stderr-line" in log and "noisy-own-warning" in log
    assert "noisy-steps: 100%" in log and "3/3" in log  # the progress bar's last state
    assert "noisy-stdout-line" not in log


def test_batch_kernel_drops_third_party_deprecations_only(noisy):
    reports, _ = noisy
    nb = nbformat.read(reports / "noisy" / "noisy.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "noisy-third-party-deprecation" not in text  # filtered in the batch kernel
    assert "noisy-own-warning" in text  # ours is not filtered: the executed notebook keeps every output


def test_report_links_its_log_and_the_index_links_it_too(noisy):
    reports, _ = noisy
    page = (reports / "noisy" / "index.html").read_text()
    assert 'href="run.log"' in page
    assert 'href="noisy/run.log"' in (reports / "index.html").read_text()


def test_failed_cell_keeps_its_traceback_and_stderr_in_the_page(noisy):
    reports, results = noisy
    assert results["noisy_fail"].status == "failed"
    page = (reports / "noisy_fail" / "index.html").read_text()
    assert "noisy-failure" in page and "failing-cell-stderr" in page
    assert "noisy-stderr-line" not in page  # the cells that ran fine are cleaned all the same
    assert "failing-cell-stderr" in (reports / "noisy_fail" / "run.log").read_text()


def test_code_inputs_are_hidden_behind_a_toggle_not_removed(noisy):
    reports, _ = noisy
    page = (reports / "noisy" / "index.html").read_text()
    assert 'id="jrl-show-code"' in page and 'for="jrl-show-code"' in page
    assert "#jrl-show-code:not(:checked) ~ main .jp-CodeCell .jp-Cell-inputWrapper { display: none; }" in page
    assert "noisy-steps" not in page.split("<main>")[0]
    assert "warn_explicit" in page  # the code is there, only hidden


def test_summary_block_opens_the_report(noisy):
    reports, _ = noisy
    page = (reports / "noisy" / "index.html").read_text()
    main_part = page.split("<main>", 1)[1]
    assert page.count("data-jrl-summary") == 1
    assert main_part.index("data-jrl-summary") < main_part.index("data:image/png;base64,")
    assert "56.0% (50.3–61.5%)" in page and "noisy-question?" in page


def test_split_logs_turns_widgets_and_html_progress_into_log_lines():
    from nbformat.v4 import new_output

    from jrl_core.study import split_logs

    view = {"version_major": 2, "version_minor": 0, "model_id": "bar"}
    cell = new_code_cell("train()")
    cell.execution_count = 3
    cell.outputs = [
        new_output("display_data", data={"application/vnd.jupyter.widget-view+json": view, "text/plain": "0%"}),
        new_output("display_data", data={"text/html": "<div><progress value='2' max='2'></progress> Epoch 2/2</div>"
                                                      "<table><tr><th>Step</th><th>Loss</th></tr>"
                                                      "<tr><td>1</td><td>0.5</td></tr></table>",
                                         "text/plain": "<IPython.core.display.HTML object>"}),
        new_output("stream", name="stderr", text="a\rb\n"),
        new_output("stream", name="stdout", text="kept\n"),
    ]
    nb = new_notebook(cells=[cell])
    state = {"bar": {"state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
             "l": {"state": {"value": "steps:\u2007100%"}}, "p": {"state": {"value": 2.0, "max": 2.0}},
             "r": {"state": {"value": "\u20072/2\u2007[00:01&lt;00:00]"}}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    page, log = split_logs(nb)
    assert [o.get("text") for o in page.cells[0].outputs] == ["kept\n"]
    assert "widgets" not in page.metadata and "widgets" in nb.metadata  # nb itself unchanged
    assert log.startswith("## cell 0 (In [3])")
    assert "steps: 100%| 2/2 [00:01<00:00]" in log
    assert "Epoch 2/2" in log and "Step\tLoss" in log and "1\t0.5" in log
    assert "a\nb" in log


def test_study_refuses_a_parameter_its_notebook_does_not_declare(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("runs:\n  - notebook: rq1_jigsaw.ipynb\n    name: rq1\n    parameters: {seeed: 3}\n")
    from jrl_core.study import load_study as load

    with pytest.raises(ValueError, match="unknown parameter.*seeed"):
        load(path)


def test_index_opens_with_the_findings_table_escaped(tmp_path):
    from jrl_core import runs
    from jrl_core.study import write_index as index

    run = tmp_path / "rq1_seeds"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "rq1_seeds", "notebook": "rq1_jigsaw.ipynb", "status": "ok"}))
    runs.write_metrics(run, runs.MetricsRecord(kind="seeds", details={"finding": {
        "claim": "GRPO raises <b>accuracy</b>", "paper": "52.2% → 98.8%", "ours": "72.0% (65.0–79.0%)",
        "difference": "+23.0 points (+15.0 to +31.0)", "verdict": "reproduced"}}))
    html_text = index(tmp_path).read_text()
    assert html_text.index("Findings") < html_text.index("Runs")
    assert "&lt;b&gt;accuracy&lt;/b&gt;" in html_text and "<b>reproduced</b>" in html_text


@pytest.mark.parametrize("name", ["quick", "full", "thorough", "paper"])
def test_every_study_file_names_real_recipes_and_valid_contrasts(name):
    """Each run of a shipped study resolves before any model loads: its recipes load with their overrides, and the
    contrasts it declares (or its notebook's defaults) name its arms and pair arms scored on the same puzzles."""
    import nbformat

    from jrl_core import experiment

    for spec in load_study(name):
        nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / spec.notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        params: dict = {}
        exec(cell.source, {}, params)  # literals only: the notebook's defaults
        params.update(spec.parameters)
        if "arms" in params:
            arms = experiment.load_arms(params["arms"], params.get("overrides"), params.get("arm_overrides"))
            base = spec.notebook == "rq2_generalization.ipynb"  # its claim is an arm against the base model
            declared = experiment.check_contrasts(arms, params.get("contrasts"), base=base)
            assert declared and all(c.id for c in declared), spec.name
        elif "recipe" in params:
            experiment.load_recipe(params["recipe"], params.get("overrides"))
    wanted = {"full": [0, 1, 2], "thorough": [0, 1, 2, 3, 4]}.get(name)
    if wanted:  # every claim over 3 (full) or 5 (thorough) seeds; rq1's notebook default is [0, 1, 2]
        assert all(s.parameters.get("seeds", [0, 1, 2]) == wanted for s in load_study(name)
                   if s.notebook != "puzzles.ipynb")


# --- bytecode cache for a study's child processes ----------------------------------------------------


def test_bytecode_cache_only_when_bytecode_is_forbidden(tmp_path):
    from jrl_core.study import enable_bytecode_cache

    env = {"PYTHONDONTWRITEBYTECODE": "1", "OTHER": "x"}
    prefix = enable_bytecode_cache(env, tmp_path / "pyc")
    assert prefix == (tmp_path / "pyc").resolve() and prefix.is_dir()
    assert env == {"PYTHONPYCACHEPREFIX": str(prefix), "OTHER": "x"}
    assert enable_bytecode_cache(env, tmp_path / "other") is None  # a second call keeps the first prefix
    assert env["PYTHONPYCACHEPREFIX"] == str(prefix)

    for untouched in ({}, {"PYTHONDONTWRITEBYTECODE": ""},
                      {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/mine"},
                      {"PYTHONDONTWRITEBYTECODE": "1", "JRL_BYTECODE_CACHE": "0"}):
        env = dict(untouched)
        assert enable_bytecode_cache(env, tmp_path / "never") is None
        assert env == untouched
    assert not (tmp_path / "never").exists()


def test_bytecode_cache_is_written_by_one_child_and_read_by_the_next(tmp_path):
    import os
    import subprocess

    from jrl_core.study import enable_bytecode_cache

    src = tmp_path / "src"
    src.mkdir()
    (src / "cached_mod.py").write_text("VALUE = 41 + 1\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("JRL_BYTECODE_CACHE", None)
    prefix = enable_bytecode_cache(env, tmp_path / "pyc")
    code = ("import sys, cached_mod; print(cached_mod.VALUE, cached_mod.__cached__)")
    first = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True, check=True)
    value, cached = first.stdout.split()
    assert value == "42" and Path(cached).is_relative_to(prefix) and Path(cached).is_file()
    assert not (src / "__pycache__").exists()  # nothing written beside the source
    mtime = Path(cached).stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True, check=True)
    assert second.stdout.split() == ["42", cached] and Path(cached).stat().st_mtime_ns == mtime  # read, not rewritten
