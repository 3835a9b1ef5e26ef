"""Executors: a study's runs through this process, local worker processes, or submitit (its local mode).

Tiny notebooks (a parameters cell and one cell writing metrics.json) are written on the fly; each
study here has two cheap runs, so the file starts about a dozen kernels and trains nothing.
Slurm itself cannot run here: its job parameters are checked with ``srun`` faked on the PATH lookup.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from notebook_helpers import write_notebook

from jrl_core import executor as engines
from jrl_core.cli import main
from jrl_core.study import RunSpec, run_study

CHEAP = (
    "import json, os, pathlib\n"
    "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({'label': label, 'double': 2 * scale}))\n"
    "pathlib.Path(run_dir, 'env.json').write_text(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS'),\n"
    "                                                         'parent': os.getppid()}))"
)
DIES = "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(30)"
"""Kills the process that started this kernel: the run's own process, which then never returns."""


def _write(path: Path, *cells: str) -> Path:
    return write_notebook(path, "label = 'default'\nscale = 1.0\nrun_dir = None", *cells)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks")
    _write(d / "cheap.ipynb", CHEAP)
    _write(d / "bad.ipynb", "raise RuntimeError('the-rollout-exploded')")
    _write(d / "dies.ipynb", DIES, CHEAP)
    return d


SPECS = [RunSpec("cheap.ipynb", "first", {"label": "a", "scale": 1.5}), RunSpec("cheap.ipynb", "second", {"label": "b"})]


@pytest.fixture(scope="module")
def local(tmp_path_factory, notebooks):
    reports = tmp_path_factory.mktemp("local")
    return reports, run_study(SPECS, reports, notebooks_dir=notebooks, progress=False)


@pytest.fixture(scope="module")
def submitit_local(tmp_path_factory, notebooks):
    reports = tmp_path_factory.mktemp("submitit")
    return reports, run_study(SPECS, reports, notebooks_dir=notebooks, progress=False,
                              executor="submitit-local", jobs=2)


def _record(reports: Path, name: str) -> dict:
    return json.loads((reports / name / "run.json").read_text())


_SAME = ("name", "notebook", "parameters", "hash", "status", "error", "timed_out", "outputs", "metrics")


def _index_rows(reports: Path) -> list[list[str]]:
    """Index rows without the cells that vary between two runs of the same study (wall, commit, finished)."""
    page = (reports / "index.html").read_text()
    rows = re.findall(r"<tr><td>.*?</tr>", page, flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in rows]
    return [[c[0], c[1], c[2], c[4], c[5]] for c in cells]


# ----------------------------------------------------------------------------- same results wherever runs execute


def test_submitit_local_gives_the_same_records_and_index_as_local(local, submitit_local):
    (here, here_results), (there, there_results) = local, submitit_local
    assert [r.status for r in here_results] == [r.status for r in there_results] == ["ok", "ok"]
    for spec in SPECS:
        a, b = _record(here, spec.name), _record(there, spec.name)
        assert {k: a[k] for k in _SAME} == {k: b[k] for k in _SAME}
        assert b["pid"] != os.getpid()  # executed in a submitit job, not here
    assert _index_rows(here) == _index_rows(there) and len(_index_rows(here)) == 2
    assert list(there.glob(f"{engines.ENGINE_FOLDER}/*"))  # the engine's pickles and logs, beside the reports


def test_runs_in_this_process_by_default_with_the_environment_untouched(local):
    reports, _ = local
    for spec in SPECS:
        assert _record(reports, spec.name)["pid"] == os.getpid()
        env = json.loads((reports / spec.name / "env.json").read_text())
        assert env["omp"] == os.environ.get("OMP_NUM_THREADS")


def test_submitit_children_get_their_share_of_the_cores(submitit_local):
    reports, _ = submitit_local
    for spec in SPECS:
        env = json.loads((reports / spec.name / "env.json").read_text())
        assert env["omp"] == str(engines.child_threads(2))


def test_local_jobs_2_runs_in_parallel_worker_processes_and_writes_both_reports(tmp_path, notebooks):
    results = run_study(SPECS, tmp_path, notebooks_dir=notebooks, progress=False, jobs=2)
    assert [r.name for r in results] == ["first", "second"] and all(r.ok for r in results)
    records = [_record(tmp_path, s.name) for s in SPECS]
    pids = {rec["pid"] for rec in records}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes
    assert max(rec["started"] for rec in records) <= min(rec["finished"] for rec in records)  # side by side
    for spec in SPECS:
        assert (tmp_path / spec.name / "index.html").stat().st_size > 0
        assert json.loads((tmp_path / spec.name / "env.json").read_text())["omp"] == str(engines.child_threads(2))
    assert "second" in (tmp_path / "index.html").read_text()


# ----------------------------------------------------------------------------- failures and resumption


def test_failed_or_dead_runs_under_submitit_are_recorded_failed_while_the_other_finishes(tmp_path, notebooks):
    specs = [RunSpec("bad.ipynb", "bad"), RunSpec("dies.ipynb", "dies"), RunSpec("cheap.ipynb", "fine")]
    bad, dies, fine = run_study(specs, tmp_path, notebooks_dir=notebooks, progress=False,
                                executor="submitit-local", jobs=2)
    assert fine.ok and _record(tmp_path, "fine")["status"] == "ok"
    assert bad.status == "failed" and "the-rollout-exploded" in bad.error
    assert dies.status == "failed" and "did not return" in dies.error and "engine log" in dies.error
    rec = _record(tmp_path, "dies")
    assert rec["status"] == "failed" and rec["outputs"] == [] and "did not return" in rec["error"]
    assert not (tmp_path / "dies" / "metrics.json").exists()
    page = (tmp_path / "index.html").read_text()
    assert page.count('class="failed"') == 2 and "did not return" in page


def test_killed_study_resumes_under_submitit_without_redoing_finished_runs(submitit_local, tmp_path, notebooks):
    reports = tmp_path / "reports"
    shutil.copytree(submitit_local[0], reports)
    finished = _record(reports, "first")
    killed = {**_record(reports, "second"), "status": "running", "pid": 2**22 + 7, "outputs": None}
    (reports / "second" / "run.json").write_text(json.dumps(killed))
    (reports / "second" / "metrics.json").unlink()

    first, second = run_study(SPECS, reports, notebooks_dir=notebooks, progress=False, executor="submitit-local")
    assert first.skipped and _record(reports, "first") == finished  # not redone
    assert not second.skipped and second.ok and "did not finish" in second.note
    assert _record(reports, "second")["started"] >= killed["started"]
    assert (reports / "second" / "metrics.json").is_file()
    assert all(r.skipped for r in run_study(SPECS, reports, notebooks_dir=notebooks, progress=False,
                                            executor="submitit-local"))


@pytest.mark.parametrize(("executor", "jobs"), [("local", 1), ("local", 2), ("submitit-local", 2)])
def test_a_call_that_raises_is_yielded_with_its_error_and_the_others_return(executor, jobs, tmp_path):
    import operator

    calls = [engines.Call("div", operator.truediv, (1, 0)), engines.Call("add", operator.add, (1, 2))]
    out = {calls[i].name: (result, error) for i, result, error in
           engines.run_calls(calls, executor=executor, jobs=jobs, folder=tmp_path)}
    assert out["add"] == (3, None)
    assert out["div"][0] is None and "ZeroDivisionError" in f"{type(out['div'][1]).__name__}: {out['div'][1]}"


# ----------------------------------------------------------------------------- choices checked before anything runs


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"executor": "ray"}, r"executor 'ray' is unknown: use one of 'local', 'submitit-local', 'slurm'"),
    ({"executor": "local", "jobs": 0}, r"jobs 0 is not valid: give a whole number >= 1"),
    ({"executor": "submitit-local", "jobs": 1.5}, r"jobs 1.5 is not valid"),
    ({"executor": "local", "slurm": engines.SlurmOptions(partition="gpu")}, r"use --executor slurm"),
])
def test_bad_executor_choice_is_a_value_error_naming_the_input_and_the_fix(kwargs, says, tmp_path, notebooks):
    with pytest.raises(ValueError, match=says):
        run_study(SPECS, tmp_path, notebooks_dir=notebooks, progress=False, **kwargs)
    assert not (tmp_path / "first").exists()  # nothing ran


def test_cli_bad_executor_exits_2_with_one_line(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text("runs:\n  - {notebook: puzzles.ipynb, name: p}\n")
    with pytest.raises(SystemExit) as e:
        main(["study", str(study), "--reports", str(tmp_path), "--executor", "dask"])
    assert e.value.code == 2
    assert "executor 'dask' is unknown" in capsys.readouterr().err


def test_cli_passes_executor_jobs_and_slurm_options_to_the_study(tmp_path, monkeypatch, capsys):
    import jrl_core.study

    seen = {}
    monkeypatch.setattr(jrl_core.study, "run_study", lambda specs, reports, **kw: seen.update(kw) or [])
    study = tmp_path / "s.yaml"
    study.write_text("runs:\n  - {notebook: puzzles.ipynb, name: p}\n")
    assert main(["study", str(study), "--reports", str(tmp_path), "--executor", "slurm", "--jobs", "3",
                 "--slurm-partition", "gpu", "--slurm-time", "60", "--slurm-gpus", "1"]) == 0
    assert seen["executor"] == "slurm" and seen["jobs"] == 3
    assert seen["slurm"] == engines.SlurmOptions(partition="gpu", time_min=60, gpus_per_node=1)
    assert main(["study", str(study), "--reports", str(tmp_path)]) == 0
    assert (seen["executor"], seen["jobs"], seen["slurm"]) == ("local", 1, None)


def test_child_threads_share_the_cores_and_keep_a_smaller_setting():
    assert engines.child_threads(1, cores=2, current="") == 2
    assert engines.child_threads(2, cores=2, current="") == 1
    assert engines.child_threads(3, cores=2, current="") == 1
    assert engines.child_threads(2, cores=16, current="4") == 4
    assert engines.child_threads(2, cores=16, current="32") == 8


def test_slurm_needs_srun_and_a_time_limit(tmp_path, notebooks, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(ValueError, match="'srun' not found.*--executor local or submitit-local"):
        run_study(SPECS, tmp_path, notebooks_dir=notebooks, progress=False, executor="slurm",
                  slurm=engines.SlurmOptions(time_min=30))
    with pytest.raises(ValueError, match="run 'first' has no time limit.*--slurm-time MINUTES"):
        run_study(SPECS, tmp_path, notebooks_dir=notebooks, progress=False, executor="slurm")
    with pytest.raises(ValueError, match="slurm cpus_per_task 0 is not valid"):
        engines.SlurmOptions(cpus_per_task=0)


def test_slurm_job_asks_for_the_partition_time_and_resources_given(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    options = engines.SlurmOptions(partition="gpu", cpus_per_task=8, gpus_per_node=1, mem_gb=32)
    call = engines.Call("rq1_seed0", print, limit_s=3600)
    ex = engines.submitit_executor("slurm", tmp_path, call, options)
    sbatch = ex._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    assert "#SBATCH --partition=gpu" in sbatch
    assert f"#SBATCH --time={(3600 + engines.ENGINE_MARGIN_S) // 60}" in sbatch  # the run's limit + margin
    assert "#SBATCH --cpus-per-task=8" in sbatch and "#SBATCH --gpus-per-node=1" in sbatch
    assert "#SBATCH --mem=32GB" in sbatch and "#SBATCH --job-name=jrl-rq1_seed0" in sbatch


def test_a_child_call_sets_torch_threads_too_when_torch_is_already_imported():
    """Unpickling a call may import torch before OMP_NUM_THREADS is set, and torch then ignores the variable: the
    call must set torch's thread count itself (3 workers on 2 cores ran 2 threads each otherwise)."""
    import os

    import torch

    from jrl_core.executor import call_with_threads

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        torch.set_num_threads(2)
        assert call_with_threads(1, torch.get_num_threads, (), {}) == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env
