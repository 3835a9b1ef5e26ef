"""Study layer: papermill batch runs → self-contained HTML reports → an index page.

A *study* is a YAML file under ``studies/`` listing notebook runs (notebook + name +
parameters). Each run executes one notebook with papermill into ``<reports>/<name>/``:

- ``<name>.ipynb``  the executed notebook (partial, with the traceback, if it failed);
- ``index.html``    a self-contained HTML report (figures embedded as base64 PNG; code inputs hidden
                    behind a "Show code" toggle; a summary block the notebook displays comes first);
- ``run.log``       the stderr, warnings and progress output of every cell, which the report leaves
                    out except in a failed cell (linked from the report's top and from the index);
- ``run.json``      the run record (parameters, hash, status, git commit, package
                    versions, hardware, timings, and the metrics the notebook wrote);
- whatever the notebook itself writes into ``run_dir`` (injected as a parameter),
  notably ``metrics.json`` (see :func:`read_notebook_metrics`).

``<reports>/index.html`` lists every run and is rebuilt after every run, so a study
killed midway still leaves a valid index. Every file this module writes is written
atomically (temporary file in the same directory, then ``os.replace``).

A run is "ok" only when its outputs are there. :func:`execute_run` first writes ``run.json``
with status ``"running"`` (before it touches anything else in the folder), and writes the final
record last, listing the files the run produced (``outputs``). :func:`run_study` reuses a run
("ok (cached)") only when its record says ``ok``, its hash matches and every listed output still
exists; a run killed midway (its record still says ``running``) is run again. Each run can have a
wall-clock limit (``timeout_s``: study YAML, :class:`RunSpec`, or the ``timeout_s`` argument).

Runs are independent, so :func:`run_study` hands them to an executor (:mod:`jrl_core.executor`): this
process one after another (default), local worker processes (``jobs``), or submitit (its local mode, or
Slurm). Wherever a run executes, :func:`execute_run` writes its folder; only the study's own process writes
the index.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import html
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jrl_core import runs
from jrl_core.atomic import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from jrl_core.executor import SlurmOptions

_log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Repository root: notebooks execute with this as their working directory."""
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
"""Where relative ``RunSpec.notebook`` paths are resolved."""
STUDIES_DIR = REPO_ROOT / "studies"
"""Where study names (``"quick"``) are resolved to ``studies/<name>.yaml``."""

METRICS_FILE = runs.METRICS_FILE
"""File name a notebook may write into ``run_dir`` to report key metrics."""
RUN_RECORD_FILE = "run.json"
REPORT_FILE = "index.html"
LOG_FILE = "run.log"
"""Beside the report: the stderr, warnings and progress output its page leaves out (see :func:`split_logs`)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RUN_KEYS = {"notebook", "name", "parameters", "timeout_s"}
_STUDY_KEYS = {"runs", "defaults", "description", "timeout_s"}
_VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "papermill", "numpy")


@dataclass(frozen=True)
class RunSpec:
    """One notebook run of a study.

    Attributes:
        notebook: notebook path relative to the repo's ``notebooks/`` directory
            (e.g. ``"rq1_jigsaw.ipynb"``), or an absolute path.
        name: run name; also the report directory name, so it must match
            ``[A-Za-z0-9][A-Za-z0-9._-]*``.
        parameters: papermill parameters injected into the notebook (JSON-serialisable);
            ``run_dir`` is added by :func:`execute_run` and must not be given here.
        timeout_s: wall-clock limit in seconds for executing the notebook, counted from the start
            of execution (kernel start-up included), or None for no limit. When it fires, the
            running cell is stopped, the kernel shut down and the run recorded as failed with a
            message saying so. Not part of
            :func:`run_hash` (a finished run stays finished whatever its limit was).
    """

    notebook: str
    name: str
    parameters: dict = field(default_factory=dict)
    timeout_s: float | None = None


@dataclass
class RunResult:
    """Outcome of one run of :func:`execute_run` or :func:`run_study`.

    Attributes:
        name: the run name.
        status: ``"ok"`` or ``"failed"``.
        run_dir: ``<reports_dir>/<name>``.
        record: the content of ``run.json``.
        skipped: True when :func:`run_study` reused a finished run with the same hash.
        note: why :func:`run_study` ran it again although a record was there (e.g. ``"previous
            attempt was interrupted ..."``), else None.
    """

    name: str
    status: str
    run_dir: Path
    record: dict
    skipped: bool = False
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True when the notebook ran to the end without an error."""
        return self.status == "ok"

    @property
    def error(self) -> str | None:
        """The error message of a failed run, else None."""
        return self.record.get("error")

    @property
    def wall_s(self) -> float | None:
        """Wall-clock duration of the run in seconds (of the original run if skipped)."""
        return self.record.get("wall_s")

    @property
    def html_path(self) -> Path:
        """Path of the run's HTML report."""
        return self.run_dir / REPORT_FILE

    @property
    def notebook_path(self) -> Path:
        """Path of the executed notebook."""
        return self.run_dir / f"{self.name}.ipynb"


# ----------------------------------------------------------------------------- helpers


BYTECODE_CACHE_DIR = REPO_ROOT / ".cache" / "pycache"
"""Where a study's processes keep compiled bytecode when the environment forbids writing it beside the
sources (see :func:`enable_bytecode_cache`)."""


def enable_bytecode_cache(environ: Any = None, cache_dir: str | os.PathLike = BYTECODE_CACHE_DIR) -> Path | None:
    """Let a study's child processes share compiled bytecode when ``PYTHONDONTWRITEBYTECODE`` is set.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machines) and a ``pip install --no-compile``
    environment, every process of a study (the notebook's kernel, each seed worker, the next notebook's
    kernel) compiles torch, transformers, TRL and datasets again: ~20 s each here against ~8 s from
    bytecode (README, session 18). This points ``PYTHONPYCACHEPREFIX`` at ``cache_dir`` and drops
    ``PYTHONDONTWRITEBYTECODE`` in ``environ``, which child processes inherit: the first compiles and
    writes its bytecode there (a tree mirroring the sources' absolute paths, outside the sources and the
    environment), the others read it. Python checks each file against its source's mtime and size, so a
    changed source is compiled again; nothing a program computes changes.

    Nothing is changed when bytecode is already written normally (``PYTHONDONTWRITEBYTECODE`` unset or
    empty: a prefix would hide the bytecode pip compiled), when the user chose a prefix
    (``PYTHONPYCACHEPREFIX`` set), or when ``JRL_BYTECODE_CACHE=0`` (the opt-out).

    Args:
        environ: the mapping to change (default ``os.environ``: this process's children inherit it;
            this process's own imports are unaffected).
        cache_dir: the prefix directory (default ``<repo>/.cache/pycache``, git-ignored); created if missing.

    Returns:
        The prefix set for child processes, or None when this call changed nothing.

    Raises:
        OSError: ``cache_dir`` cannot be created.
    """
    env = os.environ if environ is None else environ
    if env.get("JRL_BYTECODE_CACHE", "1").strip() == "0":
        return None
    if env.get("PYTHONPYCACHEPREFIX") or not env.get("PYTHONDONTWRITEBYTECODE"):
        return None  # a prefix already chosen (by the user or an earlier call), or bytecode written normally
    prefix = Path(cache_dir).resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return prefix


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _check_name(name: Any, where: str = "run name") -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{where} {name!r} is not a valid run name: use letters, digits, '.', '_', '-' "
            "(it becomes a directory name)"
        )


def _check_timeout(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where} {value!r} is not a valid timeout: give seconds > 0 (e.g. 3600), or null for none")
    return float(value)


def resolve_notebook(notebook: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """Resolve a ``RunSpec.notebook`` to an absolute path.

    Args:
        notebook: absolute path, or a path relative to ``notebooks_dir``.
        notebooks_dir: directory of relative notebooks; default the repo's ``notebooks/``.

    Raises:
        FileNotFoundError: the notebook does not exist.
    """
    path = Path(notebook)
    if not path.is_absolute():
        path = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOKS_DIR
        path = (path / notebook).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    return path


def run_hash(spec: RunSpec, notebooks_dir: str | os.PathLike | None = None) -> str:
    """Stable identity of a run: first 12 hex digits of sha256(notebook bytes + parameters).

    Parameters are serialised as JSON with sorted keys, so their order does not matter.
    The run name is not part of the hash.

    Args:
        spec: the run.
        notebooks_dir: where relative notebook paths are resolved (default ``notebooks/``).

    Raises:
        FileNotFoundError: the notebook does not exist.
    """
    h = hashlib.sha256()
    h.update(resolve_notebook(spec.notebook, notebooks_dir).read_bytes())
    h.update(b"\0")
    h.update(json.dumps(spec.parameters, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- studies


def _study_path(path_or_name: str | os.PathLike) -> Path:
    s = str(path_or_name)
    looks_like_path = (
        isinstance(path_or_name, os.PathLike) or s.endswith((".yaml", ".yml")) or "/" in s or os.sep in s
    )
    if looks_like_path:
        path = Path(path_or_name)
        if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
            return REPO_ROOT / path  # "studies/quick.yaml" from outside the repo root
        return path
    return STUDIES_DIR / f"{s}.yaml"


def _check_parameters(notebook: str, parameters: dict, where: str) -> None:
    """A study run's parameters must be names its notebook's ``parameters`` cell declares (a typo would
    otherwise run the defaults and be recorded "ok"). A missing notebook is left to ``execute_run``."""
    from jrl_core.config import notebook_parameters

    try:
        path = resolve_notebook(notebook)
        declared = notebook_parameters(path)
    except (FileNotFoundError, ValueError):
        return
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown} of {Path(notebook).name}; "
                         f"known: {sorted(k for k in declared if k != 'run_dir')}")


def load_study(path_or_name: str | os.PathLike) -> list[RunSpec]:
    """Read a study file into run specs.

    Format (YAML)::

        description: optional free text
        defaults: {seed: 0}            # optional; merged under each run's parameters
        timeout_s: 7200                # optional; wall-clock limit per run in seconds (default none)
        runs:
          - notebook: rq1_jigsaw.ipynb # relative to notebooks/
            name: rq1_jigsaw_2x1_pair  # report directory name
            parameters: {}             # optional; overrides defaults
            timeout_s: 600             # optional; overrides the study's timeout_s

    Args:
        path_or_name: a path to a YAML file, or a study name resolved to
            ``studies/<name>.yaml``.

    Raises:
        FileNotFoundError: the study file does not exist.
        ValueError: malformed YAML or structure; the message names the file and key.
    """
    path = _study_path(path_or_name)
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping with key 'runs', got {type(data).__name__}")
    unknown = set(data) - _STUDY_KEYS
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level key(s) {sorted(map(str, unknown))}; allowed: {sorted(_STUDY_KEYS)}"
        )
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"{path}: 'defaults' must be a mapping, got {type(defaults).__name__}")
    study_timeout = _check_timeout(data.get("timeout_s"), f"{path}: 'timeout_s'")
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: 'runs' must be a non-empty list, got {runs!r}")

    specs: list[RunSpec] = []
    seen: set[str] = set()
    for i, run in enumerate(runs):
        where = f"{path}: runs[{i}]"
        if not isinstance(run, dict):
            raise ValueError(f"{where} must be a mapping, got {type(run).__name__}")
        unknown = set(run) - _RUN_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(_RUN_KEYS)}"
            )
        for key in ("notebook", "name"):
            if not isinstance(run.get(key), str) or not run[key]:
                raise ValueError(f"{where}: '{key}' is required and must be a non-empty string")
        _check_name(run["name"], f"{where}: 'name'")
        if run["name"] in seen:
            raise ValueError(f"{where}: 'name' {run['name']!r} is duplicated")
        seen.add(run["name"])
        params = run.get("parameters") or {}
        if not isinstance(params, dict):
            raise ValueError(f"{where}: 'parameters' must be a mapping, got {type(params).__name__}")
        merged = {**defaults, **params}
        if "run_dir" in merged:
            raise ValueError(f"{where}: 'parameters.run_dir' is reserved (injected by the study runner)")
        timeout = _check_timeout(run["timeout_s"], f"{where}: 'timeout_s'") if "timeout_s" in run else study_timeout
        _check_parameters(run["notebook"], merged, where)
        specs.append(RunSpec(notebook=run["notebook"], name=run["name"], parameters=merged, timeout_s=timeout))
    return specs


# ----------------------------------------------------------------------------- provenance


def git_info(repo: str | os.PathLike = REPO_ROOT) -> dict | None:
    """Commit of ``repo``: ``{"commit": sha, "dirty": bool}``, or None if not a git repo."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when not installed), plus python."""
    versions: dict[str, str | None] = {}
    for dist in _VERSIONED_PACKAGES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["python"] = platform.python_version()
    return versions


@functools.lru_cache(maxsize=1)
def hardware_info() -> dict:
    """Platform, CPU count and CUDA device of this process (cached; imports torch once if installed)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda_available": None,
        "cuda_device": None,
    }
    try:
        import torch  # slow import: only when a run is recorded, once

        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception as e:  # torch missing or broken: record why, do not fail the run
        info["cuda_error"] = f"{type(e).__name__}: {e}"
    return info


def read_notebook_metrics(run_dir: str | os.PathLike) -> tuple[dict, Any, str | None]:
    """Read the ``<run_dir>/metrics.json`` a notebook wrote (:class:`jrl_core.runs.MetricsRecord`).

    A record's flat ``metrics`` are returned with its ``paper_vs_ours`` rows under that key; its
    ``skipped_inputs`` separately. A plain JSON object (older runs, hand-written notebooks) is read as
    the metrics themselves, with a ``skipped_inputs`` key taken out.

    Returns:
        ``(metrics, skipped_inputs, error)``: ``({}, None, None)`` when there is no file;
        ``error`` is a message when the file exists but is not a JSON object.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}, None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {}, None, f"{METRICS_FILE}: {type(e).__name__}: {e}"
    if not isinstance(data, dict):
        return {}, None, f"{METRICS_FILE}: expected a JSON object, got {type(data).__name__}"
    data = dict(data)
    skipped = data.pop("skipped_inputs", None)
    if "kind" in data and isinstance(data.get("metrics"), dict):  # a MetricsRecord
        return {**data["metrics"], "paper_vs_ours": data.get("paper_vs_ours") or []}, skipped, None
    if set(data) == {"metrics"} and isinstance(data["metrics"], dict):
        data = data["metrics"]
    return data, skipped, None


# ----------------------------------------------------------------------------- execution


def _render_html(nb: Any, title: str, log_href: str | None = None) -> str:
    """The self-contained HTML page of ``nb`` (already cleaned by :func:`split_logs`).

    ``log_href`` (relative URL of the run's log) is linked from the bar at the top of the page, beside the
    "Show code" toggle (see ``templates/jrl_offline/index.html.j2``).
    """
    from nbconvert import HTMLExporter

    # "jrl_offline" = nbconvert's lab template minus CDN scripts (require.js, MathJax), with code inputs
    # hidden behind a toggle and a link to the log.
    exporter = HTMLExporter(template_name="jrl_offline",
                            extra_template_basedirs=[str(Path(__file__).resolve().parent / "templates")])
    resources = {"metadata": {"name": title}, "jrl_log_href": log_href}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SUMMARY_MARKER = "data-jrl-summary"
"""Attribute of the block :func:`jrl_core.report.summary_row` returns: the report shows that block first."""

# Batch kernels only (papermill runs of a study): deprecation warnings that these libraries raise about
# their own calls are noise this project cannot fix (TRL's GRPOTrainer reads transformers' deprecated
# `is_gradient_checkpointing` once per step: a FutureWarning attributed to transformers.modeling_utils).
# A deprecation attributed to our code (a library warning with stacklevel pointing at jrl_core or a notebook)
# still reaches run.log, to be fixed; interactive kernels (JupyterLab) and the library itself filter nothing.
_THIRD_PARTY = r"(transformers|trl|peft|accelerate|torch|torchvision|datasets|huggingface_hub)(\.|$)"
BATCH_KERNEL_SETUP = "; ".join(
    f"__import__('warnings').filterwarnings('ignore', category={category}, module={_THIRD_PARTY!r})"
    for category in ("FutureWarning", "DeprecationWarning")
)
"""Code every batch kernel runs before the notebook's first cell (``IPKernelApp.exec_lines``; binds no name)."""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _html_to_text(markup: str) -> str:
    """Readable text of a small HTML fragment (a progress bar with its table): cells tab-separated."""
    text = re.sub(r"</t[dh]>", "\t", re.sub(r"\s+", " ", markup), flags=re.I)
    text = re.sub(r"</tr>|</div>|</p>|<br\s*/?>", "\n", text, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    lines = ("\t".join(part.strip() for part in line.split("\t")).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _widget_text(view: dict, state: dict) -> str | None:
    """The last state of a progress widget (tqdm.notebook's HBox: description, bar, counts) as one line."""
    model = state.get(str(view.get("model_id")), {}).get("state", {})
    parts, stopped = [], False
    for child in model.get("children") or []:
        child_state = state.get(str(child).removeprefix("IPY_MODEL_"), {}).get("state", {})
        if "max" in child_state:  # the bar: tqdm marks a bar left unfinished by an exception "danger"
            stopped = child_state.get("bar_style") == "danger"
        elif child_state.get("value"):
            parts.append(html.unescape(str(child_state["value"])).replace("\u2007", " "))
    if not parts:
        return None
    layout = state.get(str(model.get("layout", "")).removeprefix("IPY_MODEL_"), {}).get("state", {})
    if layout.get("visibility") == "hidden" and not stopped:  # tqdm's leave=False hides a finished bar
        return "|".join(parts) + " (closed; its last drawn state)"
    return "|".join(parts) + (" (stopped)" if stopped else "")


def _progress_text(output: dict, state: dict) -> str | None:
    """The text of a progress output (a widget, or an HTML ``<progress>`` bar such as transformers' notebook
    callback with its per-step table), else None: the output is not progress."""
    data = output.get("data") or {}
    if _WIDGET_VIEW in data:  # no widget state kept: the text it was first shown with
        return _widget_text(data[_WIDGET_VIEW], state) or _text(data.get("text/plain"))
    markup = _text(data.get("text/html"))
    if "<progress" in markup.lower():
        return _html_to_text(markup)
    return None


def split_logs(nb: Any, *, failed: bool = False) -> tuple[Any, str]:
    """Split an executed notebook into the page a reader sees and the log that goes beside it.

    Of every code cell that ran without an error, the stderr stream outputs (warnings, text progress bars)
    and the progress outputs (tqdm widgets, HTML ``<progress>`` bars with their tables) leave the page for
    the log. A cell with an error output keeps all its outputs in the page (its traceback and what the cell
    wrote to stderr before it), and so does the last cell with outputs of a ``failed`` run (a timed-out cell
    shows no error); their stderr is copied to the log as well. Widget views are turned into their text
    everywhere in the page and the notebook's widget state is dropped, so the page needs no widget script
    from the network. The block :func:`jrl_core.report.summary_row` made (:data:`SUMMARY_MARKER`) moves to the
    top of the page. ``nb`` itself is not changed.

    Args:
        nb: the executed notebook (nbformat v4 node).
        failed: the run ended with an error or a timeout.

    Returns:
        ``(page, log)``: a cleaned deep copy of ``nb`` and the log text (``""`` when nothing was moved),
        one ``## cell N (In [k])`` section per cell with its texts in output order.
    """
    import nbformat

    page = copy.deepcopy(nb)
    state = (page.metadata.get("widgets") or {}).get(_WIDGET_STATE, {}).get("state", {})
    page.metadata.pop("widgets", None)
    code = [i for i, c in enumerate(page.cells) if c.cell_type == "code"]
    keep = {i for i in code if any(o.get("output_type") == "error" for o in page.cells[i].get("outputs", []))
            or page.cells[i].metadata.get("papermill", {}).get("exception")}
    with_outputs = [i for i in code if page.cells[i].get("outputs")]
    if failed and with_outputs:
        keep.add(with_outputs[-1])
    sections, summary = [], None
    for i in code:
        cell = page.cells[i]
        kept, logged = [], []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                logged.append(_text(out.get("text")).replace("\r\n", "\n").replace("\r", "\n"))
                if i in keep:
                    kept.append(out)
                continue
            progress = _progress_text(out, state)
            if progress is not None:
                logged.append(progress.rstrip("\n") + "\n")
                if i in keep:  # the text only: a widget view needs a widget manager from the network
                    out.data = {"text/plain": progress}
                    kept.append(out)
                continue
            if summary is None and SUMMARY_MARKER in _text((out.get("data") or {}).get("text/html")):
                summary = out
                continue
            kept.append(out)
        cell.outputs = kept
        text = "".join(logged).strip("\n")
        if text:
            count = cell.get("execution_count")
            sections.append(f"## cell {i}" + (f" (In [{count}])" if count is not None else "") + f"\n{text}\n")
    if summary is not None:
        top = nbformat.v4.new_code_cell(source="")
        top.outputs = [summary]
        top.metadata["transient"] = {"remove_source": True}  # nbconvert: no input box at all
        page.cells.insert(0, top)
    return page, "\n".join(sections)


def _error_notebook(spec: RunSpec, message: str) -> Any:
    """A one-cell notebook standing in for a run that failed before producing any output."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        source=f"# run {spec.name!r} of {spec.notebook!r} failed before executing"
    )
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=message)]
    nb.cells = [cell]
    return nb


_TEMP_SUFFIX = ".tmp"


def _remove_stale_temp_files(run_dir: Path, name: str) -> list[Path]:
    """Delete the temporary files a killed run of ``name`` left in ``run_dir``: its papermill output
    (``.NAME.*.tmp.ipynb``) and half-written atomic writes of the files this module and
    :func:`jrl_core.runs.write_metrics` write (``.FILE.*.tmp``). Returns the removed paths."""
    patterns = [f".{name}.*.tmp.ipynb"] + [
        f".{f}.*{_TEMP_SUFFIX}" for f in (RUN_RECORD_FILE, REPORT_FILE, LOG_FILE, f"{name}.ipynb", METRICS_FILE)
    ]
    removed = []
    for pattern in patterns:
        for path in run_dir.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _expected_outputs(record: dict) -> list[str]:
    """Files a finished run's folder must still hold for the run to count as done.

    Records written since ``outputs`` exists list them; older records need the report, the executed
    notebook and, when they carry metrics, ``metrics.json``.
    """
    outputs = record.get("outputs")
    if isinstance(outputs, list) and all(isinstance(o, str) for o in outputs):
        return list(outputs)
    name = str(record.get("name", ""))
    expected = [REPORT_FILE, f"{name}.ipynb"]
    if record.get("metrics"):
        expected.append(METRICS_FILE)
    return expected


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


def _is_interrupted(record: dict) -> bool:
    """True for a ``running`` record whose process is gone; a record written on another host is not
    judged (False)."""
    if record.get("status") != "running":
        return False
    if record.get("host") not in (None, socket.gethostname()):
        return False  # cannot tell from here
    return not _pid_alive(record.get("pid"))


def cached_record(
    spec: RunSpec, reports_dir: str | os.PathLike = "reports", notebooks_dir: str | os.PathLike | None = None
) -> tuple[dict | None, str]:
    """Whether :func:`run_study` may reuse the finished run of ``spec`` instead of running it again.

    Reusable means: ``run.json`` is readable, says status ``ok``, has the current :func:`run_hash`,
    and every output it lists (the report, the executed notebook, ``metrics.json`` when the notebook
    wrote one last time) still exists and is not empty.

    Returns:
        ``(record, "")`` when reusable, else ``(None, reason)`` with a short sentence saying why not
        (no record, unreadable record, interrupted or failed attempt, changed notebook or
        parameters, missing outputs).

    Raises:
        FileNotFoundError: the notebook does not exist.
    """
    run_dir = Path(reports_dir) / spec.name
    if not (run_dir / RUN_RECORD_FILE).exists():
        return None, "no run record yet"
    record, problem = load_run_record(run_dir)
    if record is None:
        return None, f"run record unreadable ({problem})"
    status = record.get("status")
    if status == "running":
        return None, (
            f"previous attempt (started {record.get('started')}, pid {record.get('pid')}) did not finish: "
            "it was interrupted or is still running"
        )
    if status != "ok":
        return None, f"previous attempt ended with status {status!r}"
    if record.get("hash") != run_hash(spec, notebooks_dir):
        return None, "notebook or parameters changed"
    missing = [
        f for f in _expected_outputs(record) if not (run_dir / f).is_file() or (run_dir / f).stat().st_size == 0
    ]
    if missing:
        return None, f"outputs missing or empty: {', '.join(missing)}"
    return record, ""


def execute_run(
    spec: RunSpec,
    reports_dir: str | os.PathLike = "reports",
    *,
    kernel_name: str | None = None,
    progress: bool = True,
    notebooks_dir: str | os.PathLike | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Execute one notebook with papermill and write its report and run record.

    The notebook runs in a fresh kernel with the repository root as working directory,
    with ``spec.parameters`` plus ``run_dir`` (absolute path of ``<reports_dir>/<name>``,
    str) injected after its ``parameters`` cell; the (IPython) kernel first runs :data:`BATCH_KERNEL_SETUP`
    (drops third-party libraries' deprecation warnings about their own calls). Writes, atomically, into ``run_dir``:
    ``<name>.ipynb`` (executed notebook, every output kept), ``index.html`` (self-contained "lab" HTML,
    figures as base64 PNG, code inputs behind a "Show code" toggle; the stderr and progress output of
    cells that ran without an error left out, see :func:`split_logs`), ``run.log`` (what the page left
    out, linked from its top) and ``run.json`` (record; see module doc).

    Order, so that a run killed at any point is never taken for finished: (1) temporary
    files left by a killed earlier attempt are removed; (2) ``run.json`` is replaced by a
    ``"running"`` record (name, hash, started, pid, host); (3) the stale ``metrics.json`` is
    removed and the notebook executed; (4) notebook and HTML are written; (5) the final record,
    with ``outputs`` (the files present: notebook, report, ``metrics.json`` if written), is
    written last.

    A notebook that raises does not raise here: its partial executed notebook and HTML
    (with the traceback) are still written and the run is recorded as ``failed``. The same
    holds when the wall-clock limit fires: the running cell is stopped, the kernel shut down
    and ``error`` says ``"timed out after N s ..."`` (``timed_out`` is true in the record).
    A ``KeyboardInterrupt`` records status ``"interrupted"`` and is re-raised.

    Args:
        spec: the run.
        reports_dir: root of the reports (relative paths are relative to the caller's cwd).
        kernel_name: Jupyter kernel; default ``"python3"``, which jupyter_client launches
            with this interpreter (``sys.executable``) when the kernelspec says ``python``.
        progress: show papermill's per-cell progress bar.
        notebooks_dir: where relative notebook paths are resolved (default ``notebooks/``).
        timeout_s: wall-clock limit in seconds for executing the notebook (kernel start-up
            included; overrides ``spec.timeout_s``); None uses ``spec.timeout_s``.

    Returns:
        The :class:`RunResult`.

    Raises:
        ValueError: invalid run name or timeout, or ``run_dir`` given as a parameter.
        FileNotFoundError: the notebook does not exist.
    """
    import nbformat
    import papermill

    _check_name(spec.name)
    if "run_dir" in spec.parameters:
        raise ValueError(f"run {spec.name!r}: parameter 'run_dir' is reserved (injected by the study runner)")
    limit = _check_timeout(timeout_s if timeout_s is not None else spec.timeout_s, f"run {spec.name!r}: timeout_s")
    notebook = resolve_notebook(spec.notebook, notebooks_dir)
    digest = run_hash(spec, notebooks_dir)
    run_dir = Path(reports_dir).resolve() / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(run_dir, spec.name)

    started, t0 = _now(), time.perf_counter()
    kernel = kernel_name or "python3"
    base = {
        "name": spec.name,
        "notebook": spec.notebook,
        "parameters": spec.parameters,
        "hash": digest,
        "kernel": kernel,
        "timeout_s": limit,
        "started": started,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    # Mark the run as started before anything in its folder changes: until the final record
    # replaces this one, the run is not finished, whatever files are there.
    atomic_write_json(run_dir / RUN_RECORD_FILE, {**base, "status": "running", "error": None})
    (run_dir / METRICS_FILE).unlink(missing_ok=True)

    out_path = run_dir / f"{spec.name}.ipynb"
    fd, tmp_name = tempfile.mkstemp(dir=run_dir, prefix=f".{spec.name}.", suffix=".tmp.ipynb")
    os.close(fd)
    tmp_nb = Path(tmp_name)

    error: str | None = None
    timed_out = False
    nb = None
    # Progress bars inside a batch run print at most one line a minute, so that a report is not
    # buried under thousands of tqdm updates (the kernel inherits the environment; tqdm >= 4.66
    # reads TQDM_* defaults from it). An explicit setting of the user's wins.
    os.environ.setdefault("TQDM_MININTERVAL", "60")
    enable_bytecode_cache()
    engine_kwargs: dict[str, Any] = {"extra_arguments": [f"--IPKernelApp.exec_lines={BATCH_KERNEL_SETUP}"]}
    if limit is not None:
        deadline = time.monotonic() + limit
        # nbclient asks for each cell's timeout: what is left of the run's budget (a small positive
        # number once it is spent, since 0 would mean "no limit").
        engine_kwargs["timeout_func"] = lambda cell: max(0.01, deadline - time.monotonic())
    try:
        nb = papermill.execute_notebook(
            str(notebook),
            str(tmp_nb),
            parameters={**spec.parameters, "run_dir": str(run_dir)},
            kernel_name=kernel,
            progress_bar=progress,
            cwd=str(REPO_ROOT),
            **engine_kwargs,
        )
    except papermill.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue} (cell {e.exec_count})"
    except Exception as e:  # kernel died, bad notebook, cell timeout, ...: record and go on
        if limit is not None and isinstance(e, TimeoutError):
            timed_out = True
            error = (
                f"timed out after {limit:g} s (wall-clock limit timeout_s of run {spec.name!r}); the running cell "
                "was stopped and the kernel shut down. Raise timeout_s in the study YAML (per run or study-wide) "
                "or in the call, or make the notebook cheaper."
            )
        else:
            error = f"{type(e).__name__}: {e}"
        if not tmp_nb.stat().st_size:
            nb = _error_notebook(spec, error if timed_out else traceback.format_exc())
    except BaseException as e:  # KeyboardInterrupt: leave no temporary file and no "running" record behind
        tmp_nb.unlink(missing_ok=True)
        atomic_write_json(
            run_dir / RUN_RECORD_FILE,
            {**base, "status": "interrupted", "error": f"{type(e).__name__} during execution", "finished": _now()},
        )
        raise
    wall_s = time.perf_counter() - t0
    finished = _now()

    if nb is None:  # papermill saved the partial notebook before raising
        try:
            nb = nbformat.read(tmp_nb, as_version=4)
        except Exception:
            nb = _error_notebook(spec, error or "no executed notebook")
    if timed_out:  # say so at the top of the report: the stopped cell itself shows no error
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Run stopped: {html.escape(error or '')}**"))
    tmp_nb.unlink(missing_ok=True)
    atomic_write_text(out_path, nbformat.writes(nb))
    page, log = split_logs(nb, failed=error is not None)
    atomic_write_text(run_dir / LOG_FILE, (
        f"# {LOG_FILE} of run {spec.name!r} ({spec.notebook}, started {started}): the stderr, warnings and\n"
        f"# progress output of every cell; {REPORT_FILE} leaves them out except in a cell that failed.\n\n"
        + (log or "(nothing: no cell wrote to stderr or showed progress)") + "\n"))
    atomic_write_text(run_dir / REPORT_FILE, _render_html(page, spec.name, log_href=LOG_FILE))

    metrics, skipped_inputs, metrics_error = read_notebook_metrics(run_dir)
    outputs = [f for f in (out_path.name, REPORT_FILE, METRICS_FILE) if (run_dir / f).is_file()]
    record = {
        **base,
        "status": "failed" if error else "ok",
        "error": error,
        "timed_out": timed_out,
        "git": git_info(),
        "versions": package_versions(),
        "hardware": hardware_info(),
        "finished": finished,
        "wall_s": round(wall_s, 3),
        "outputs": outputs,
        "metrics": metrics,
        "skipped_inputs": skipped_inputs,
    }
    if metrics_error:
        record["metrics_error"] = metrics_error
    atomic_write_json(run_dir / RUN_RECORD_FILE, record)  # last: from now on the run counts as finished
    return RunResult(name=spec.name, status=record["status"], run_dir=run_dir, record=record)


def _unencodable(value: Any, where: str = "") -> str | None:
    """Where ``value`` (JSON data) holds a string that is not valid Unicode (a lone surrogate), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "a value"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _unencodable(k, f"{where}.<key>") or _unencodable(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _unencodable(v, f"{where}[{i}]")
            if found:
                return found
    return None


def load_run_record(run_dir: str | os.PathLike) -> tuple[dict | None, str | None]:
    """The ``run.json`` of a run directory, with the reason when it cannot be used.

    Returns:
        ``(record, None)``, or ``(None, reason)`` when the file is missing, unreadable, not JSON,
        not a JSON object, or holds text that is not valid Unicode (e.g. a lone surrogate escape
        ``"\\ud800"``, which cannot be written into an HTML page).
    """
    path = Path(run_dir) / RUN_RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{RUN_RECORD_FILE} missing"
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    bad = _unencodable(data)
    if bad:
        return None, f"field {bad!r} holds text that is not valid Unicode (a lone surrogate)"
    return data, None


def read_run_record(run_dir: str | os.PathLike) -> dict | None:
    """The ``run.json`` of a run directory, or None if missing or unreadable (see :func:`load_run_record`)."""
    return load_run_record(run_dir)[0]


_ORDINARY_RERUNS = {"forced", "no run record yet", "notebook or parameters changed",
                    "previous attempt ended with status 'failed'"}


def _record_lost_run(spec: RunSpec, reports: Path, digest: str | None, error: str, executor: str) -> dict:
    """Write a ``failed`` record for a run whose child never returned (its process died, the engine failed),
    unless its folder already holds a final record of the same run: a run left ``running`` is never
    reported as finished, and a finished one is not overwritten. Returns the record on disk."""
    run_dir = reports / spec.name
    current, _ = load_run_record(run_dir)
    if current is not None and current.get("status") != "running" and digest and current.get("hash") == digest:
        return current
    run_dir.mkdir(parents=True, exist_ok=True)
    started = (current or {}).get("started") if (current or {}).get("status") == "running" else None
    record = {
        "name": spec.name, "notebook": spec.notebook, "parameters": spec.parameters, "hash": digest,
        "started": started, "status": "failed", "error": error, "timed_out": False, "executor": executor,
        "finished": _now(), "outputs": [], "metrics": {},
    }
    atomic_write_json(run_dir / RUN_RECORD_FILE, record)
    return record


def run_study(
    specs: list[RunSpec],
    reports_dir: str | os.PathLike = "reports",
    *,
    force: bool = False,
    kernel_name: str | None = None,
    progress: bool = True,
    notebooks_dir: str | os.PathLike | None = None,
    timeout_s: float | None = None,
    executor: str = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
) -> list[RunResult]:
    """Execute the runs of a study through an executor, rebuilding ``<reports_dir>/index.html`` after each.

    A run is reused (``RunResult.skipped``, "ok (cached)") only when :func:`cached_record` says so:
    status ``ok``, the same :func:`run_hash`, and its outputs still on disk; otherwise, or with
    ``force``, it is executed again (:func:`execute_run`). A run whose earlier attempt was killed (its
    record still says ``running``) or lost outputs is executed again and a warning says why
    (``RunResult.note``). Failed runs do not stop the study.

    Where runs execute (:mod:`jrl_core.executor`): ``"local"`` with ``jobs=1`` runs them in order in this
    process; ``"local"`` with ``jobs>1`` in that many worker processes; ``"submitit-local"`` as submitit
    jobs on this machine, ``"slurm"`` as submitit Slurm jobs, at most ``jobs`` at once. Each run writes only
    its own folder, with :func:`execute_run`'s guarantees wherever it executes; only this process writes
    the index, after each run completes. A run whose process dies, or that the engine cannot run, is
    recorded ``failed`` with the engine's error (never left as finished), and the other runs go on.
    Child processes get ``OMP_NUM_THREADS`` = cores // ``jobs`` (at least 1; a smaller value already set
    is kept; Slurm: ``cpus_per_task``) and show no per-cell progress bar.

    Args:
        specs: the runs (e.g. from :func:`load_study`); names must be unique.
        reports_dir: root of the reports; for ``"slurm"`` on a filesystem the compute nodes share.
            submitit keeps its pickles and job logs in ``<reports_dir>/.submitit/``.
        force: re-run finished runs too.
        kernel_name: passed to :func:`execute_run`.
        progress: show progress bars (over runs, and papermill's over cells when runs execute here).
        notebooks_dir: where relative notebook paths are resolved (default ``notebooks/``).
        timeout_s: wall-clock limit in seconds for every run, overriding each ``RunSpec.timeout_s``
            (e.g. from a command-line flag); None keeps the runs' own limits.
        executor: ``"local"`` (default), ``"submitit-local"`` or ``"slurm"``
            (:data:`jrl_core.executor.EXECUTORS`).
        jobs: runs at once, a whole number >= 1 (default 1).
        slurm: :class:`jrl_core.executor.SlurmOptions` for ``"slurm"`` (partition, time, CPUs, GPUs,
            memory); None for its defaults. Only with ``executor="slurm"``.

    Returns:
        One :class:`RunResult` per spec, in order.

    Raises:
        ValueError: duplicate or invalid run names, an invalid timeout, an unknown executor, ``jobs``
            < 1, Slurm options without ``executor="slurm"``, a Slurm run without a time limit, or no
            Slurm here (all checked before anything runs).
        FileNotFoundError: a notebook does not exist (checked before anything runs).
    """
    from tqdm.auto import tqdm

    from jrl_core import executor as engines

    engines.check_executor(executor, jobs, slurm)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate run names: {dupes}")
    _check_timeout(timeout_s, "timeout_s")
    for s in specs:
        _check_name(s.name)
        _check_timeout(s.timeout_s, f"run {s.name!r}: timeout_s")
        if "run_dir" in s.parameters:
            raise ValueError(f"run {s.name!r}: parameter 'run_dir' is reserved (injected by the study runner)")
        resolve_notebook(s.notebook, notebooks_dir)

    reports = Path(reports_dir).resolve()
    notebooks = Path(notebooks_dir).resolve() if notebooks_dir is not None else None  # children may start elsewhere
    in_process = executor == "local" and jobs == 1
    results: dict[int, RunResult] = {}
    notes: dict[int, str | None] = {}
    calls, todo = [], []
    for i, spec in enumerate(specs):
        previous, reason = (None, "forced") if force else cached_record(spec, reports, notebooks)
        if previous is not None:
            results[i] = RunResult(spec.name, "ok", reports / spec.name, previous, skipped=True)
            continue
        notes[i] = None
        if reason not in _ORDINARY_RERUNS:  # interrupted, lost outputs, unreadable record: say so
            notes[i] = reason
            _log.warning("run %s: %s; running it again", spec.name, reason)
        limit = timeout_s if timeout_s is not None else spec.timeout_s
        calls.append(engines.Call(
            spec.name, execute_run, (spec, reports),
            {"kernel_name": kernel_name, "progress": progress and in_process, "notebooks_dir": notebooks,
             "timeout_s": timeout_s}, limit_s=limit))
        todo.append(i)
    completed = engines.run_calls(calls, executor=executor, jobs=jobs, folder=reports / engines.ENGINE_FOLDER,
                                  slurm=slurm)

    bar = tqdm(total=len(specs), desc="study", unit="run", disable=not progress)
    bar.update(len(results))
    try:
        for k, result, error in completed:
            i = todo[k]
            spec = specs[i]
            if error is not None:
                message = str(error) if isinstance(error, engines.ExecutorError) else f"{type(error).__name__}: {error}"
                _log.error("run %s: %s", spec.name, message)
                try:
                    digest = run_hash(spec, notebooks)
                except OSError:  # the notebook went away meanwhile
                    digest = None
                record = _record_lost_run(spec, reports, digest, message, executor)
                result = RunResult(spec.name, "failed", reports / spec.name, {**record, "error": message})
            result.note = notes[i]
            results[i] = result
            bar.set_postfix_str(spec.name)
            bar.update(1)
            write_index(reports)
    finally:
        close = getattr(completed, "close", None)
        if close is not None:
            close()  # an interrupt here cancels what the executor has not finished
        bar.close()
    write_index(reports)
    return [results[i] for i in range(len(specs))]


# ----------------------------------------------------------------------------- index

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
p.meta { color: #656d76; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
tr:hover td { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
.ok { color: #1a7f37; font-weight: 600; } .failed { color: #cf222e; font-weight: 600; }
.running { color: #9a6700; font-weight: 600; } .muted { color: #656d76; }
.err { color: #cf222e; font-size: .85em; } .dirty { color: #9a6700; }
ul.metrics { list-style: none; margin: 0; padding: 0; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
"""


def _esc(value: Any) -> str:
    # Text that is not valid Unicode (lone surrogates) is shown as \\udcXX escapes instead of
    # making the page unwritable as UTF-8.
    text = html.escape("" if value is None else str(value), quote=True)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_value(value: Any) -> str:
    """Format a metric for display: floats with 3 decimals (3 significant digits when tiny/huge)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.3f}"
        return f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def format_duration(seconds: Any) -> str:
    """Format a wall time in seconds as ``"12.3 s"``, ``"4m 05s"`` or ``"1h 02m"`` ("" if not a number)."""
    if not isinstance(seconds, (int, float)):
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def _metrics_cell(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    items = [
        f"<li><code>{_esc(k)}</code> = {_esc(format_value(v))}</li>"
        for k, v in metrics.items()
        if k != "paper_vs_ours"
    ]
    return f'<ul class="metrics">{"".join(items)}</ul>'


def _commit_cell(git: Any) -> str:
    if not isinstance(git, dict) or not git.get("commit"):
        return ""
    out = f'<span class="mono" title="{_esc(git["commit"])}">{_esc(str(git["commit"])[:10])}</span>'
    if git.get("dirty"):
        out += ' <span class="dirty">(dirty)</span>'
    return out


def _skipped_cell(skipped: Any) -> str:
    """Photo files skipped while loading, by reason: a ``SkipRecord.to_dict()`` (``{"skipped": {reason:
    count}, "total", "examples"}``) or a plain ``{reason: count}``; examples in the tooltip."""
    if not isinstance(skipped, dict) or not skipped:
        return ""
    counts = skipped.get("skipped") if isinstance(skipped.get("skipped"), dict) else {
        k: v for k, v in skipped.items() if k not in ("total", "examples")
    }
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return '<span class="muted">none</span>'
    examples = skipped.get("examples") if isinstance(skipped.get("examples"), list) else []
    title = f' title="{_esc(chr(10).join(map(str, examples)))}"' if examples else ""
    items = "".join(f"<li><code>{_esc(k)}</code>: {_esc(format_value(v))}</li>" for k, v in sorted(counts.items()))
    return f'<ul class="metrics"{title}>{items}</ul>'


def _status_cell(rec: dict) -> str:
    status = str(rec.get("status", "?"))
    error = rec.get("error")
    css = "ok" if status == "ok" else "failed"
    if status == "running":
        if _is_interrupted(rec):
            status, css = "interrupted", "failed"
            error = (f"killed before it finished (started {rec.get('started')}); its outputs are incomplete: "
                     "run the study again to redo it")
        else:
            css = "running"
    out = f'<span class="{css}">{_esc(status)}</span>'
    if error:
        out += f'<div class="err">{_esc(error)}</div>'
    return out


_INDEX_COLUMNS = ("run", "notebook", "status", "wall", "metrics", "skipped inputs", "commit", "finished")


def _log_link(run_dir: Path) -> str:
    """A small link to the run's log (stderr, warnings, progress), when it has one."""
    if not (run_dir / LOG_FILE).is_file():
        return ""
    href = _esc(urllib.parse.quote(os.fsencode(run_dir.name)) + "/" + LOG_FILE)
    return f' <a class="muted log" href="{href}" title="stderr, warnings and progress of the run">log</a>'


def _index_row(run_dir: Path, href: str) -> tuple[str, list[tuple[str, dict]]]:
    """One index row and the run's paper-vs-ours items; raises ``ValueError`` for an unusable record."""
    rec, problem = load_run_record(run_dir)
    if rec is None:
        raise ValueError(problem)
    name = rec.get("name", run_dir.name)
    finished = rec.get("finished") or (f"started {rec['started']}" if rec.get("started") else "")
    row = (
        "<tr>"
        f'<td><a href="{href}">{_esc(name)}</a>{_log_link(run_dir)}</td>'
        f'<td class="mono">{_esc(rec.get("notebook"))}</td>'
        f"<td>{_status_cell(rec)}</td>"
        f'<td class="num">{_esc(format_duration(rec.get("wall_s")))}</td>'
        f"<td>{_metrics_cell(rec.get('metrics'))}</td>"
        f"<td>{_skipped_cell(rec.get('skipped_inputs'))}</td>"
        f"<td>{_commit_cell(rec.get('git'))}</td>"
        f"<td>{_esc(finished)}</td>"
        "</tr>"
    )
    metrics = rec.get("metrics")
    pvo = metrics.get("paper_vs_ours") if isinstance(metrics, dict) else None
    items = [(name, item) for item in pvo if isinstance(item, dict)] if isinstance(pvo, list) else []
    return row, items


def _run_findings(run_dir: Path) -> list[dict]:
    """Every tested claim of a run's ``metrics.json`` (``details["findings"]``, else ``details["finding"]``);
    [] for a run without one or with an unreadable record."""
    try:
        record = runs.read_metrics(run_dir)
    except Exception:  # the runs table reports unreadable records; the findings table just skips them
        return []
    details = (record or {}).get("details") if isinstance(record, dict) else None
    if not isinstance(details, dict):
        return []
    items = details.get("findings")
    if not isinstance(items, list):
        items = [details.get("finding")]
    return [f for f in items if isinstance(f, dict)]


def _finding_order(claim_id) -> tuple:
    """Sort key of a claim id: ``F1`` < ``F2`` < ``F5`` < ``F5b`` < ``F10``; unnamed claims last."""
    m = re.fullmatch(r"([A-Za-z]*)(\d+)(.*)", str(claim_id or ""))
    return (0, m.group(1), int(m.group(2)), m.group(3)) if m else (1, "", 0, str(claim_id or ""))


def write_index(reports_dir: str | os.PathLike = "reports") -> Path:
    """Write ``<reports_dir>/index.html``: a self-contained page listing every run.

    Lists each subdirectory holding a ``run.json`` (sorted by name): name linked to its
    report, notebook, status (failed in red, with the error; ``running`` in amber, or
    ``interrupted`` when its process is gone), wall time, metrics (floats to 3 decimals),
    skipped inputs (photo files skipped while loading, count by reason, from the record's
    ``skipped_inputs``), commit and finished time; plus a "paper vs ours" table built from
    every run's ``metrics["paper_vs_ours"]`` (list of ``{metric, paper, ours, scale,
    model}``). Every string from run records is HTML-escaped. No external resources.

    A ``run.json`` that cannot be used (not JSON, not an object, text that is not valid
    Unicode such as a lone surrogate, or any value the row cannot be built from) does not
    stop the index: the run gets a row saying its record is unreadable, and why.

    Args:
        reports_dir: root of the reports (created if missing).

    Returns:
        Path of the index file.
    """
    reports = Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    rows, comparisons = [], []
    for run_dir in sorted(p for p in reports.iterdir() if p.is_dir() and (p / RUN_RECORD_FILE).is_file()):
        href = _esc(urllib.parse.quote(os.fsencode(run_dir.name)) + "/" + REPORT_FILE)
        try:
            row, items = _index_row(run_dir, href)
        except Exception as e:  # one bad record must not cost the whole index
            reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            row, items = (
                f'<tr><td><a href="{href}">{_esc(run_dir.name)}</a></td><td></td>'
                f'<td><span class="failed">unreadable run.json</span><div class="err">{_esc(reason)}</div></td>'
                + "<td></td>" * (len(_INDEX_COLUMNS) - 3) + "</tr>"
            ), []
        rows.append(row)
        comparisons += items

    findings = []
    for run_dir in sorted(p for p in reports.iterdir() if p.is_dir() and (p / RUN_RECORD_FILE).is_file()):
        href = _esc(urllib.parse.quote(os.fsencode(run_dir.name)) + "/" + REPORT_FILE)
        for finding in _run_findings(run_dir):
            findings.append((_finding_order(finding.get("id")), run_dir.name,
                             f"<tr><td>{_esc(finding.get('id') or '')}</td>"
                             + "".join(f"<td>{_esc(finding.get(k))}</td>" for k in ("claim", "paper", "ours", "difference"))
                             + f'<td><b>{_esc(finding.get("verdict"))}</b></td>'
                             f'<td><a href="{href}">{_esc(run_dir.name)}</a></td></tr>'))
    findings = [html for *_, html in sorted(findings, key=lambda t: (t[0], t[1]))]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>jrl study reports</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Study reports</h1>",
    ]
    if findings:
        parts += ["<h2>Findings</h2>",
                  '<table class="findings"><thead><tr><th></th><th>claim</th><th>paper</th><th>ours (mean, 95% interval, seeds)'
                  "</th><th>difference (95% interval)</th><th>verdict</th><th>report</th></tr></thead><tbody>",
                  *findings, "</tbody></table>", "<h2>Runs</h2>"]
    parts += [
        f'<p class="meta">{len(rows)} run(s) · index written {_esc(_now())}</p>',
        "<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in _INDEX_COLUMNS) + "</tr></thead><tbody>",
        *(rows or [f'<tr><td colspan="{len(_INDEX_COLUMNS)}">no runs yet</td></tr>']),
        "</tbody></table>",
    ]
    if comparisons:
        parts += [
            "<h2>Paper vs ours</h2>",
            "<table><thead><tr><th>run</th><th>model</th><th>scale</th><th>metric</th>"
            '<th class="num">paper</th><th class="num">ours</th></tr></thead><tbody>',
        ]
        for run_name, item in comparisons:
            parts.append(
                "<tr>"
                f"<td>{_esc(run_name)}</td><td>{_esc(item.get('model'))}</td>"
                f"<td>{_esc(item.get('scale'))}</td><td>{_esc(item.get('metric'))}</td>"
                f'<td class="num">{_esc(format_value(item.get("paper")))}</td>'
                f'<td class="num">{_esc(format_value(item.get("ours")))}</td>'
                "</tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    path = reports / "index.html"
    atomic_write_text(path, "\n".join(parts))
    return path


__all__ = [
    "BATCH_KERNEL_SETUP",
    "LOG_FILE",
    "METRICS_FILE",
    "NOTEBOOKS_DIR",
    "REPO_ROOT",
    "STUDIES_DIR",
    "SUMMARY_MARKER",
    "RunResult",
    "RunSpec",
    "cached_record",
    "execute_run",
    "format_duration",
    "format_value",
    "git_info",
    "hardware_info",
    "load_run_record",
    "load_study",
    "package_versions",
    "read_notebook_metrics",
    "read_run_record",
    "resolve_notebook",
    "run_hash",
    "run_study",
    "split_logs",
    "write_index",
]
