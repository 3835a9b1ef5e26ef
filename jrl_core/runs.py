"""The run folder: one module owns its layout and reads and writes its files.

A run folder (``run_dir``) is what :func:`jrl_core.experiment.run_experiment` fills::

    run_dir/
      eval_before.csv, eval_after.csv   per-puzzle evaluation tables (evaluate.EvalResult.table)
      metrics.json                      the run's metrics record (:class:`MetricsRecord`), written last
      sft/                              SFT trainer output (train_log.csv, checkpoints)
      grpo/                             GRPO trainer output: train_log.csv (per logged step),
                                        completions.jsonl (one JSON line per rollout), checkpoint-*/, final/

      extra.json                        what a comparison's ``extra_eval`` measured on the trained model
                                        (:func:`write_extra`), so a finished seed is read back whole

A multi-seed run (``run_seeds``) writes one run folder per seed, ``<run_dir>/seed<s>/``, and its summary record in
``<run_dir>/metrics.json``. A comparison (``compare_arms``) writes one such multi-seed folder per arm,
``<run_dir>/<arm>/seed<s>/``; a study finds arms and seeds through :func:`arm_dirs`, :func:`arm_dir` and
:func:`seed_dirs`, never through hard-wired relative paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jrl_core.atomic import atomic_write_json, atomic_write_text

COMPLETION_LOG = "completions.jsonl"
"""File name of the per-rollout log in a trainer output folder (``grpo/completions.jsonl``)."""
TRAIN_LOG = "train_log.csv"
"""File name of the per-step training table in a trainer output folder."""
METRICS_FILE = "metrics.json"
"""File name of a run's metrics record (:class:`MetricsRecord`)."""
EVAL_TABLES = {"before": "eval_before.csv", "after": "eval_after.csv"}
"""Per-puzzle evaluation tables of a run, by stage."""
TRAINER_DIRS = ("sft", "grpo")
"""Trainer output folders inside a run folder, in the order they run."""
EXTRA_FILE = "extra.json"
"""File name of a run's extra evaluation results (:func:`write_extra`)."""


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder (nothing is created until a writer is called).

    Attributes:
        root: the run folder.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def trainer_dir(self, stage: str) -> Path:
        """``root/<stage>`` for ``stage`` in :data:`TRAINER_DIRS`; raises ``ValueError`` otherwise."""
        if stage not in TRAINER_DIRS:
            raise ValueError(f"trainer stage {stage!r}: use one of {TRAINER_DIRS}.")
        return self.root / stage

    def completion_log(self, stage: str = "grpo") -> Path:
        """The per-rollout log of a trainer stage."""
        return self.trainer_dir(stage) / COMPLETION_LOG

    def train_log(self, stage: str = "grpo") -> Path:
        """The per-step training table of a trainer stage."""
        return self.trainer_dir(stage) / TRAIN_LOG

    def eval_table(self, which: str) -> Path:
        """``eval_before.csv`` / ``eval_after.csv``; raises ``ValueError`` for another stage name."""
        if which not in EVAL_TABLES:
            raise ValueError(f"evaluation table {which!r}: use one of {sorted(EVAL_TABLES)}.")
        return self.root / EVAL_TABLES[which]

    @property
    def metrics(self) -> Path:
        """The metrics record (written last: its presence means the run finished)."""
        return self.root / METRICS_FILE

    @property
    def extra(self) -> Path:
        """The extra evaluation results of the trained model (:func:`write_extra`)."""
        return self.root / EXTRA_FILE


# ------------------------------------------------------------------ completion log


def append_completions(path: str | Path, records: Iterable[dict]) -> int:
    """Append rollout records to a completion log, one JSON object per line, flushed and fsynced.

    Each line is written whole (``json.dumps`` + newline in one ``write``), so a killed writer leaves at
    most one torn last line, which :func:`read_completion_records` skips and :func:`truncate_completions`
    removes. Returns the number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    if not lines:
        return 0
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    return len(lines)


def iter_completion_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for every line of a completion log; blank lines skipped.

    A malformed *last* line (a run killed mid-write) is skipped; a malformed line before the last raises
    ``ValueError`` naming the file and line, as does a line that is not a JSON object.
    """
    path = Path(path)
    with path.open(encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if i == last:
                return  # torn tail: the writer was killed in the middle of this line
            raise ValueError(f"{path}, line {i + 1}: malformed JSON ({err.msg}, column {err.colno}): "
                             f"{line.strip()[:80]!r}; each line must be one JSON object.") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}, line {i + 1}: expected a JSON object, got {type(rec).__name__}.")
        yield i + 1, rec


def read_completion_records(path: str | Path) -> list[dict]:
    """Every record of a completion log (see :func:`iter_completion_records`); ``[]`` if it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [rec for _, rec in iter_completion_records(path)]


def truncate_completions(path: str | Path, last_step: int) -> int:
    """Keep the records with ``step <= last_step`` (a resumed run rewrites the later ones) and drop a torn
    last line; written atomically. Returns the number of records kept (0 if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    keep = [r for r in read_completion_records(path) if int(r.get("step", 0)) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
    return len(keep)


# ------------------------------------------------------------------ metrics record


@dataclass
class MetricsRecord:
    """One schema for every run's ``metrics.json`` (experiments, comparisons, notebooks).

    Attributes:
        kind: ``"experiment"`` (one recipe), ``"comparison"`` (several arms), or a notebook's own kind.
        title: what the run measured, for the index.
        model: model name or path; ``scale``: ``"nano"`` / ``"paper"``.
        metrics: flat ``{name: number | str | None}``, the headline numbers the index shows (accuracies in
            [0, 1], times in seconds).
        paper_vs_ours: ``[{"metric", "paper", "ours", "scale", "model"}]`` rows for the index's
            paper-vs-ours table (values in [0, 1]; each row names both scales).
        skipped_inputs: ``jrl_core.images.SkipRecord.to_dict()`` of the photos skipped while loading.
        details: anything structured (the resolved recipe, settings, per-arm tables as records).
    """

    kind: str
    title: str = ""
    model: str = ""
    scale: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    paper_vs_ours: list[dict] = field(default_factory=list)
    skipped_inputs: dict | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (the file's schema)."""
        return {"kind": self.kind, "title": self.title, "model": self.model, "scale": self.scale,
                "metrics": dict(self.metrics), "paper_vs_ours": list(self.paper_vs_ours),
                "skipped_inputs": self.skipped_inputs, "details": dict(self.details)}


def write_metrics(run_dir: str | Path, record: MetricsRecord) -> Path:
    """Write ``record`` to ``<run_dir>/metrics.json`` atomically; returns the path."""
    path = RunFolder(Path(run_dir)).metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record.to_dict())
    return path


def read_metrics(run_dir: str | Path) -> dict | None:
    """The metrics record of a run folder as a dict, or None when it is missing or unreadable."""
    path = RunFolder(Path(run_dir)).metrics
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_run(p: Path) -> bool:
    return p.is_dir() and (any((p / s).is_dir() for s in TRAINER_DIRS) or (p / METRICS_FILE).exists())


def seed_dirs(run_dir: str | Path) -> dict[int, Path]:
    """``{seed: folder}`` of a multi-seed run (``<run_dir>/seed<s>/`` holding a trainer stage or a metrics
    record), sorted by seed; ``{}`` when there are none."""
    root = Path(run_dir)
    if not root.is_dir():
        return {}
    found = {int(p.name[4:]): p for p in root.glob("seed*") if p.name[4:].isdigit() and _is_run(p)}
    return dict(sorted(found.items()))


def arm_dirs(run_dir: str | Path) -> dict[str, Path]:
    """``{arm label: folder}`` of a comparison's arms (sub-folders holding a trainer stage, a metrics
    record, or seed folders ``seed<s>/`` with either), sorted by label."""
    root = Path(run_dir)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if _is_run(p) or seed_dirs(p)}


def arm_dir(run_dir: str | Path, label: str, seed: int | None = None) -> Path:
    """The run folder of one arm of a comparison (see :func:`arm_dirs`): for an arm run over seeds
    (``<arm>/seed<s>/``), the folder of ``seed`` (None: the lowest seed); for a single-run arm, the arm folder.

    Raises:
        FileNotFoundError: no such arm, naming the arms that exist; or no folder for ``seed``, naming the seeds.
    """
    arms = arm_dirs(run_dir)
    if label not in arms:
        raise FileNotFoundError(f"{run_dir}: no arm {label!r} (a sub-folder with a trainer stage or metrics.json); "
                                f"arms there: {sorted(arms) or 'none'}. Pass the comparison's run folder and one of its arms.")
    seeds = seed_dirs(arms[label])
    if not seeds:
        if seed is not None:
            raise FileNotFoundError(f"{arms[label]}: arm {label!r} has no seed folders; pass seed=None.")
        return arms[label]
    if seed is None:
        return next(iter(seeds.values()))
    if seed not in seeds:
        raise FileNotFoundError(f"{arms[label]}: no folder for seed {seed}; seeds there: {sorted(seeds)}.")
    return seeds[seed]


# ------------------------------------------------------------------ extra evaluation results


def write_extra(path: str | Path, values: dict, key: Any = None) -> Path:
    """Write what an extra evaluation measured (``compare_arms(extra_eval=...)``) as one JSON file, atomically.

    Args:
        path: the file (``RunFolder.extra``, or a comparison's ``extra_base.json``).
        values: name -> ``pandas.DataFrame`` (stored with its dtypes, ``orient="table"``), None, or a JSON value.
        key: JSON identity of the evaluation's settings; :func:`read_extra` returns the values only for the
            same key (a changed evaluation is measured again).
    Returns:
        The path written.
    Raises:
        TypeError: a value that is neither a DataFrame nor JSON, naming it; return DataFrames or plain values
            from ``extra_eval`` so a finished seed can be read back.
    """
    import pandas as pd

    stored = {}
    for name, value in values.items():
        if isinstance(value, pd.DataFrame):
            stored[name] = {"frame": json.loads(value.to_json(orient="table", index=False))}
        else:
            try:
                stored[name] = {"value": json.loads(json.dumps(value))}
            except (TypeError, ValueError):
                raise TypeError(f"extra evaluation value {name!r} is a {type(value).__name__}: return DataFrames, "
                                "None or JSON values (numbers, strings, lists, dicts) so it can be stored and "
                                "read back.") from None
    path = Path(path)
    atomic_write_json(path, {"key": json.loads(json.dumps(key, default=str)), "values": stored})
    return path


def read_extra(path: str | Path, key: Any = None) -> dict | None:
    """The values :func:`write_extra` stored (DataFrames rebuilt with their dtypes), or None when the file is
    missing, unreadable, or was written for another ``key``."""
    import io

    import pandas as pd

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    out = {}
    for name, item in (data.get("values") or {}).items():
        if "frame" in item:
            out[name] = pd.read_json(io.StringIO(json.dumps(item["frame"])), orient="table")
        else:
            out[name] = item.get("value")
    return out
