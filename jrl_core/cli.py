"""The ``jrl`` command line.

Subcommands register themselves with :func:`subcommand`: adding one is one function that
receives the argparse subparsers object, adds its parser and sets ``func`` (a handler
taking the parsed args and returning the exit status)::

    @subcommand
    def _nano(sub):
        p = sub.add_parser("nano", help="...")
        ...
        p.set_defaults(func=lambda args: ...)

Examples::

    jrl study quick                       # studies/quick.yaml → reports/
    jrl study full --only rq1_jigsaw_2x1_pair --force
    jrl study full --jobs 2                # two runs at once in worker processes
    jrl study full --executor slurm --jobs 8 --slurm-partition gpu --slurm-gpus 1 --slurm-time 240
    jrl run rq1_jigsaw.ipynb -p steps 20 -p lr 1e-5 --name try1
    jrl index
    jrl lab --port 8888 --no-browser     # JupyterLab on notebooks/, this environment's kernel
    jrl train --recipe nano/rq1_2x1_pair --set grpo.steps=20
    accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml -m jrl_core.cli train \
        --recipe paper/qwen2.5-vl-3b_2x1_pair_nothink
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


class UsageError(Exception):
    """An expected error (a bad recipe, override, file or parameter): :func:`main` prints its message as
    one line on stderr and exits with status 2, without a traceback."""


@contextlib.contextmanager
def expected(*errors: type[BaseException]) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into :class:`UsageError` (default: ``ValueError`` and
    ``FileNotFoundError``); anything else keeps its traceback."""
    caught = errors or (ValueError, FileNotFoundError)
    try:
        yield
    except caught as e:
        raise UsageError(" ".join(str(e).split()) or type(e).__name__) from e


def subcommand(register: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Register a function that adds one subcommand to the ``jrl`` parser (decorator)."""
    _SUBCOMMANDS.append(register)
    return register


def _print_summary(results: list) -> None:
    from jrl_core.study import format_duration, format_value

    rows = [("run", "status", "wall", "metrics")]
    for r in results:
        status = r.status + (" (cached)" if r.skipped else "")
        metrics = r.record.get("metrics") or {}
        shown = ", ".join(
            f"{k}={format_value(v)}" for k, v in metrics.items() if not isinstance(v, (dict, list))
        )
        rows.append((r.name, status, format_duration(r.wall_s), shown))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    for r in results:
        if getattr(r, "note", None):
            print(f"note {r.name}: {r.note}", file=sys.stderr)
        if r.status != "ok":
            print(f"FAILED {r.name}: {r.error}  → {r.html_path}", file=sys.stderr)


@subcommand
def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run every notebook of a study (studies/<name>.yaml or a path)")
    p.add_argument("study", help="study name (e.g. 'quick') or path to a study YAML")
    p.add_argument("--reports", default="reports", help="reports directory (default: reports)")
    p.add_argument("--force", action="store_true", help="re-run runs already finished with the same hash")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these run names")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="wall-clock limit per run (overrides the study's timeout_s); a run past it is marked failed")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="where runs execute: local (default; this process, or --jobs worker processes), "
                        "submitit-local (submitit jobs on this machine), slurm (submitit Slurm jobs)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once (default 1); each gets OMP_NUM_THREADS = cores // N")
    slurm = p.add_argument_group("Slurm (with --executor slurm)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="partition (default: the cluster's)")
    slurm.add_argument("--slurm-time", type=int, metavar="MINUTES",
                       help="time limit per job (default: the run's timeout_s + 15 min; required without one)")
    slurm.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per job (default 2)")
    slurm.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (default 0)")
    slurm.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="memory per job (default: the cluster's)")
    p.set_defaults(func=_cmd_study)


def _slurm_options(args: argparse.Namespace):
    """The ``--slurm-*`` options as a :class:`jrl_core.executor.SlurmOptions`, or None when none was given."""
    from jrl_core.executor import SlurmOptions

    given = {field: value for field, value in (
        ("partition", args.slurm_partition), ("time_min", args.slurm_time), ("cpus_per_task", args.slurm_cpus),
        ("gpus_per_node", args.slurm_gpus), ("mem_gb", args.slurm_mem_gb)) if value is not None}
    return SlurmOptions(**given) if given else None


def _cmd_study(args: argparse.Namespace) -> int:
    from jrl_core.study import load_study, run_study

    with expected():
        specs = load_study(args.study)
        if args.only:
            unknown = sorted(set(args.only) - {s.name for s in specs})
            if unknown:
                raise ValueError(f"--only: unknown run name(s) {unknown}; known: {[s.name for s in specs]}")
            specs = [s for s in specs if s.name in set(args.only)]
        results = run_study(specs, args.reports, force=args.force, timeout_s=args.timeout,
                            executor=args.executor, jobs=args.jobs, slurm=_slurm_options(args))
    _print_summary(results)
    print(f"index: {Path(args.reports).resolve() / 'index.html'}")
    return min(sum(r.status != "ok" for r in results), 100)


@subcommand
def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one notebook (path relative to notebooks/, or absolute)")
    p.add_argument("notebook", help="notebook, e.g. rq1_jigsaw.ipynb")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="papermill parameter declared in the notebook's parameters cell; VALUE is parsed as YAML "
        "(numbers, bools, lists work; a parameter whose default is a string keeps the text)",
    )
    p.add_argument("--name", help="run name / report directory (default: the notebook's stem)")
    p.add_argument("--reports", default="reports", help="reports directory (default: reports)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="wall-clock limit of the run (default: none)")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from jrl_core.config import notebook_overrides
    from jrl_core.study import RunSpec, execute_run, resolve_notebook, write_index

    with expected():
        parameters = notebook_overrides(resolve_notebook(args.notebook), args.parameter)
        spec = RunSpec(notebook=args.notebook, name=args.name or Path(args.notebook).stem, parameters=parameters)
        result = execute_run(spec, args.reports, timeout_s=args.timeout)
        index = write_index(args.reports)
    _print_summary([result])
    print(f"report: {result.html_path}\nindex: {index.resolve()}")
    return 0 if result.ok else 1


@subcommand
def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="rebuild reports/index.html from the run records")
    p.add_argument("--reports", default="reports", help="reports directory (default: reports)")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args: argparse.Namespace) -> int:
    from jrl_core.study import write_index

    with expected():
        print(write_index(args.reports).resolve())
    return 0


@subcommand
def _add_lab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="open JupyterLab on notebooks/ with this environment (kernels start in the repo root)")
    p.add_argument("--port", type=int, help="port to listen on (default: JupyterLab's, 8888 or the next free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser (e.g. on a remote machine)")
    p.add_argument("options", nargs="*", metavar="-- OPTION",
                   help="more `jupyter lab` options after `--` (e.g. -- --allow-root --ServerApp.ip=0.0.0.0)")
    p.set_defaults(func=_cmd_lab)


def lab_command(port: int | None = None, no_browser: bool = False, options: Sequence[str] = ()) -> list[str]:
    """The command ``jrl lab`` runs: JupyterLab of this interpreter's environment (``sys.executable -m jupyter
    lab``) showing ``notebooks/``, its kernels started in the repository root, as in a study run
    (``jrl_core.study.execute_run``), so that relative paths (a notebook's default ``runs/<name>_interactive``
    folder, ``data/``) resolve the same in both. ``options`` are appended as they are."""
    from jrl_core.study import NOTEBOOKS_DIR, REPO_ROOT

    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={NOTEBOOKS_DIR}",
           f"--MappingKernelManager.root_dir={REPO_ROOT}"]
    if port is not None:
        cmd.append(f"--port={port}")
    if no_browser:
        cmd.append("--no-browser")
    return cmd + list(options)


def _cmd_lab(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    if importlib.util.find_spec("jupyterlab") is None:
        raise UsageError(f"JupyterLab is not installed in this environment ({sys.prefix}): pip install -e .")
    cmd = lab_command(args.port, args.no_browser, args.options)
    print(" ".join(cmd), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # JupyterLab takes over this process: Ctrl-C and signals reach it directly
    return 0  # not reached


@subcommand
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run one training recipe (recipes/<name>.yaml): evaluate, train, evaluate")
    p.add_argument("--recipe", required=True, help="recipe name under recipes/ (e.g. nano/rq1_2x1_pair) or a path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set grpo.steps=10 --set mode=thinking (YAML values)")
    p.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the recipe, print the resolved experiment and settings, load and train nothing")
    p.add_argument("--restart", action="store_true",
                   help="start the GRPO stage over instead of resuming from the run folder's last checkpoint")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    """Load and check the recipe (exit 2 with one line on any bad value), check the model can be opened
    (a hub id without network fails in seconds), then run it; errors while training keep their traceback."""
    from jrl_core.config import check_model_reachable, load_recipe

    with expected():
        exp = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(json.dumps({"experiment": exp.to_dict(), **exp.plan.to_dict()}, indent=2, default=str))
        return 0
    with expected():
        check_model_reachable(exp.model)
    from jrl_core.experiment import run_experiment

    out = run_experiment(exp, args.out or Path("runs") / exp.name, resume=not args.restart)
    print(json.dumps({"before": out["before"], "after": out["after"],
                      "resumed_from_step": out.get("resumed_from_step")}, indent=2))
    return 0


@subcommand
def _add_nano(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nano", help="the nano base model: build it (with its build card) or verify the shipped one")
    p.add_argument("action", choices=("build", "verify"), help="build: pretrain, score and write a base; "
                   "verify: check the shipped files against their card")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="NanoConfig field, e.g. --set pretrain_steps=1200 (YAML values); default: the current recipe")
    p.add_argument("--out", help="output folder (default: data/nano/<BASE_VERSION>, the shipped base)")
    p.set_defaults(func=_cmd_nano)


def _cmd_nano(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from jrl_core import config, nano

    with expected():
        fields = {f.name for f in dataclasses.fields(nano.NanoConfig)}
        overrides = {}
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep or key not in fields:
                raise UsageError(f"--set {item!r}: expected KEY=VALUE with KEY a NanoConfig field ({', '.join(sorted(fields))}).")
            overrides[key] = yaml.safe_load(value)
        config.nano_config(overrides)  # a bad value is a clear error now, not after the vision stage
        if args.action == "verify":
            folder = Path(args.out) if args.out else nano.shipped_base()
            problems = nano.verify_base(folder, None if args.out else nano.NanoConfig())
            for line in problems:
                print(f"{folder}: {line}", file=sys.stderr)
            print(f"{folder}: {'intact' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
    out = nano.build_base(args.out, overrides=overrides)
    card = nano.read_card(out)
    print(json.dumps({k: card[k] for k in ("version", "config_hash", "base_rq1_2x1_pair", "probe_halves_swapped",
                                           "build_seconds")}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``jrl`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="jrl", description="Jigsaw-RL reproducibility workbook")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jrl`` console script.

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        Exit status: for ``study`` the number of failed runs (capped at 100), for ``run``
        1 if the notebook failed, else 0. Expected errors (bad arguments, recipe, override, study
        file or notebook parameter; a model that cannot be reached) exit with status 2 and one
        line ``jrl COMMAND: error: …`` on stderr; unexpected errors keep their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        parser.exit(2, f"jrl {args.command}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
