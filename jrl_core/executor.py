"""Executors: where the independent runs of a study execute.

A study's runs are independent calls (one papermill execution each, writing only its own report
folder), so they can go to an existing engine instead of running one after another here. Three
executors, by name (:data:`EXECUTORS`):

- ``"local"`` (default): this machine. ``jobs=1`` runs the calls one after another in this process
  (the study runner's behaviour before executors existed); ``jobs>1`` runs them in ``jobs`` worker
  processes of a :class:`concurrent.futures.ProcessPoolExecutor` (spawned, not forked: a script that
  calls it must keep its own code under ``if __name__ == "__main__":``, Python's rule for spawned workers;
  ``jrl study`` and notebooks need nothing).
- ``"submitit-local"``: `submitit <https://github.com/facebookincubator/submitit>`_'s ``LocalExecutor``,
  one subprocess per call on this machine: the engine's local mode, the same submission and
  result path as on a cluster (pickled call, log files under the engine folder).
- ``"slurm"``: submitit's ``AutoExecutor(cluster="slurm")``, one ``sbatch`` job per call (needs
  ``srun``/``sbatch`` on this machine and a folder shared with the compute nodes; :class:`SlurmOptions`).

This module schedules nothing itself: a process pool or submitit runs the calls, and a thread pool of
``jobs`` threads bounds how many submitit jobs are in flight at once. The function submitted
must be a picklable top-level function (``jrl_core.study.execute_run``). Every child process gets
``OMP_NUM_THREADS`` = :func:`child_threads` (``cores // jobs``, at least 1), so that ``jobs`` runs side by side
do not oversubscribe the cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXECUTORS: dict[str, str] = {
    "local": "this machine: in this process one run after another (jobs=1), or jobs worker processes",
    "submitit-local": "submitit's LocalExecutor: each run its own process on this machine (the engine's local mode)",
    "slurm": "submitit on Slurm: each run one sbatch job (srun/sbatch here, reports on a shared filesystem)",
}
"""Executor names accepted by :func:`run_calls` and ``jrl study --executor``, with what each does."""

ENGINE_MARGIN_S = 900
"""Seconds a submitit job gets beyond its run's own ``timeout_s`` (kernel start-up, report rendering,
provenance), so that the run's limit fires first and is recorded as a timeout, with the engine's as a backstop."""
NO_LIMIT_MIN = 30 * 24 * 60
"""Engine time limit (minutes) of a ``submitit-local`` job whose run has no ``timeout_s`` (submitit's own
default is 2 minutes)."""

ENGINE_FOLDER = ".submitit"
"""Folder under the reports where submitit keeps its pickles and each job's stdout/stderr logs."""


@dataclass(frozen=True)
class SlurmOptions:
    """What a ``"slurm"`` job asks the cluster for (submitit ``AutoExecutor`` parameters).

    Attributes:
        partition: ``--partition``; None leaves the cluster's default.
        time_min: job time limit in minutes (>= 1); None derives it from each run's ``timeout_s``
            (+ :data:`ENGINE_MARGIN_S`), and then every run must have one (Slurm's default through
            submitit would be 5 minutes).
        cpus_per_task: ``--cpus-per-task`` (>= 1); also the run's ``OMP_NUM_THREADS``.
        gpus_per_node: GPUs per job (>= 0).
        mem_gb: memory per job in GB (> 0), or None for the cluster's default.
    """

    partition: str | None = None
    time_min: int | None = None
    cpus_per_task: int = 2
    gpus_per_node: int = 0
    mem_gb: float | None = None

    def __post_init__(self) -> None:
        def whole(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition.strip()):
            raise ValueError(f"slurm partition {self.partition!r} is not a partition name: give e.g. 'gpu', or None")
        if self.time_min is not None and not whole(self.time_min, 1):
            raise ValueError(f"slurm time_min {self.time_min!r} is not valid: give whole minutes >= 1, or None")
        if not whole(self.cpus_per_task, 1):
            raise ValueError(f"slurm cpus_per_task {self.cpus_per_task!r} is not valid: give a whole number >= 1")
        if not whole(self.gpus_per_node, 0):
            raise ValueError(f"slurm gpus_per_node {self.gpus_per_node!r} is not valid: give a whole number >= 0")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))
                                        or not math.isfinite(self.mem_gb) or self.mem_gb <= 0):
            raise ValueError(f"slurm mem_gb {self.mem_gb!r} is not valid: give GB > 0 (e.g. 32), or None")


@dataclass(frozen=True)
class Call:
    """One independent call to execute: ``fn(*args, **kwargs)`` somewhere.

    Attributes:
        name: what the call is (a run name); names the submitit job.
        fn: a picklable top-level function (pickled by reference into the child).
        args: positional arguments (picklable).
        kwargs: keyword arguments (picklable).
        limit_s: the call's own wall-clock limit in seconds, or None; a submitit job gets this
            plus :data:`ENGINE_MARGIN_S`.
    """

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    limit_s: float | None = None


class ExecutorError(RuntimeError):
    """A call that did not return: its process died, or the engine could not run or read it."""


def check_executor(executor: Any, jobs: Any, slurm: Any = None) -> None:
    """Check an executor choice before anything runs.

    Args:
        executor: one of :data:`EXECUTORS` (``"local"``, ``"submitit-local"``, ``"slurm"``).
        jobs: how many calls run at once, a whole number >= 1.
        slurm: :class:`SlurmOptions` for ``"slurm"`` (None: the defaults); must be None otherwise.

    Raises:
        ValueError: unknown executor, ``jobs`` not a whole number >= 1, or Slurm options given for
            another executor; the message names the input and the fix.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is unknown: use one of {', '.join(map(repr, EXECUTORS))} "
                         "(e.g. --executor local)")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs {jobs!r} is not valid: give a whole number >= 1 of runs at once (e.g. --jobs 2)")
    if slurm is not None and executor != "slurm":
        raise ValueError(f"Slurm options were given with executor {executor!r}: use --executor slurm, "
                         "or drop the --slurm-* options")
    if slurm is not None and not isinstance(slurm, SlurmOptions):
        raise ValueError(f"slurm {slurm!r} is not a SlurmOptions: give jrl_core.executor.SlurmOptions(...) or None")


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def child_threads(jobs: int, cores: int | None = None, current: str | None = None) -> int:
    """``OMP_NUM_THREADS`` for each of ``jobs`` runs side by side: ``max(1, cores // jobs)``, or a
    smaller value already set (``current``, the caller's ``OMP_NUM_THREADS``) when it is a whole number >= 1.

    Args:
        jobs: runs at once, >= 1.
        cores: cores to share; default :func:`available_cores`.
        current: the environment's ``OMP_NUM_THREADS``; default read from ``os.environ``.
    """
    cores = available_cores() if cores is None else cores
    share = max(1, cores // max(1, jobs))
    current = os.environ.get("OMP_NUM_THREADS") if current is None else current
    try:
        mine = int(current) if current is not None else None
    except ValueError:
        mine = None
    return min(share, mine) if mine is not None and mine >= 1 else share


def engine_time_min(executor: str, limit_s: float | None, slurm: SlurmOptions | None = None, name: str = "") -> int:
    """Time limit in minutes a submitit job gets: ``slurm.time_min`` when given, else the run's
    ``limit_s`` + :data:`ENGINE_MARGIN_S` rounded up, else :data:`NO_LIMIT_MIN` (``"submitit-local"`` only).

    Raises:
        ValueError: a ``"slurm"`` run with neither ``limit_s`` nor ``slurm.time_min``.
    """
    if executor == "slurm" and slurm is not None and slurm.time_min is not None:
        return slurm.time_min
    if limit_s is not None:
        return math.ceil((limit_s + ENGINE_MARGIN_S) / 60)
    if executor == "slurm":
        raise ValueError(f"run {name!r} has no time limit for its Slurm job: give --slurm-time MINUTES "
                         "(SlurmOptions.time_min), or a timeout_s (study YAML, or --timeout SECONDS)")
    return NO_LIMIT_MIN


def call_with_threads(threads: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """What a child process runs: set ``OMP_NUM_THREADS`` (inherited by the kernels it starts) and, when torch is
    already imported (unpickling ``fn`` or its arguments may import it, after which the variable no longer
    counts), torch's own thread count; then ``fn(*args, **kwargs)``. Top-level so that it pickles by reference.

    Without the second step, 3 workers on 2 cores ran 2 threads each and a nano GRPO step took 11.9 s instead of
    about 3 s (measured)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return fn(*args, **kwargs)


def _short(e: BaseException) -> str:
    """One line of a submitit error: the exception the call raised (last line of the job's traceback), or
    that its process ended without a result."""
    text = str(e)
    lost = re.search(r"has not produced any output \(state: ([^)]*)\)", text)
    if lost:  # killed, or died before writing its result: submitit's stderr tail is the kernel's, not the cause
        return f"its process ended without a result (submitit state {lost.group(1)}; killed, e.g. for memory?)"
    trace = text.split("You can check full logs")[0]
    said = [line.strip() for line in trace.splitlines()
            if line.strip() and not line[0].isspace() and not line.startswith(("-", "Traceback", "Job ("))]
    return f"raised {said[-1]}" if said else f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _check_slurm_here() -> None:
    if shutil.which("srun") is None:
        raise ValueError("executor 'slurm': Slurm is not available on this machine ('srun' not found): "
                         "run jrl study on a Slurm login node, or use --executor local or submitit-local")


def submitit_executor(executor: str, folder: str | os.PathLike, call: Call,
                      slurm: SlurmOptions | None = None) -> Any:
    """The submitit executor for one call, its parameters set (job name, time limit, resources).

    Args:
        executor: ``"submitit-local"`` or ``"slurm"``.
        folder: engine folder (pickles and logs; for Slurm on a filesystem the compute nodes share).
        call: the call (its name and limit set the job's).
        slurm: Slurm resources (None: :class:`SlurmOptions` defaults).

    Raises:
        ValueError: ``executor`` is not a submitit one, a Slurm run has no time limit, or Slurm
            is not available here (no ``srun``).
    """
    import submitit

    time_min = engine_time_min(executor, call.limit_s, slurm, call.name)
    if executor == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=time_min, name=f"jrl-{call.name}")
        return ex
    if executor != "slurm":
        raise ValueError(f"executor {executor!r} is not a submitit executor: use 'submitit-local' or 'slurm'")
    slurm = slurm or SlurmOptions()
    _check_slurm_here()
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {"name": f"jrl-{call.name}", "timeout_min": time_min,
                              "cpus_per_task": slurm.cpus_per_task, "gpus_per_node": slurm.gpus_per_node,
                              "tasks_per_node": 1, "nodes": 1}
    if slurm.mem_gb is not None:
        params["mem_gb"] = slurm.mem_gb
    if slurm.partition is not None:
        params["slurm_partition"] = slurm.partition
    ex.update_parameters(**params)
    return ex


def _submit_and_wait(executor: str, folder: Path, call: Call, slurm: SlurmOptions | None, threads: int,
                     submitted: list) -> Any:
    """Submit one call to submitit and wait for its result (runs in a parent-side thread)."""
    ex = submitit_executor(executor, folder, call, slurm)
    job = ex.submit(call_with_threads, threads, call.fn, call.args, call.kwargs)
    submitted.append(job)
    try:
        return job.result()
    except Exception as e:
        raise ExecutorError(f"{executor} job {job.job_id} of {call.name!r} did not return: {_short(e)} "
                            f"(engine log: {job.paths.stderr})") from e


def run_calls(calls: list[Call], *, executor: str = "local", jobs: int = 1,
              folder: str | os.PathLike | None = None,
              slurm: SlurmOptions | None = None) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Execute independent calls through an executor, at most ``jobs`` at once.

    Everything is checked before the first call starts (this function is not a generator itself:
    errors are raised when it is called). A call that raises, or whose process dies, does not stop
    the others: it is yielded with its exception. ``KeyboardInterrupt`` in this process cancels the
    calls not yet started and the submitit jobs in flight, then propagates.

    Args:
        calls: the calls, each a picklable top-level function with picklable arguments.
        executor: one of :data:`EXECUTORS`.
        jobs: calls at once, >= 1. ``"local"`` with 1 runs them in this process, in order, with
            the environment untouched.
        folder: engine folder for submitit (pickles and job logs); required for the submitit executors.
        slurm: :class:`SlurmOptions` for ``"slurm"``.

    Yields:
        ``(index, result, error)`` per call as it completes (``index`` into ``calls``; ``error`` is
        None or the exception, :class:`ExecutorError` when the call never returned).

    Raises:
        ValueError: see :func:`check_executor`; ``folder`` missing for submitit; a Slurm call
            without a time limit; Slurm not available here.
    """
    check_executor(executor, jobs, slurm)
    if executor != "local":
        if folder is None:
            raise ValueError(f"executor {executor!r} needs an engine folder: give folder=<reports>/{ENGINE_FOLDER}")
        for call in calls:
            engine_time_min(executor, call.limit_s, slurm, call.name)
    if executor == "slurm":
        _check_slurm_here()
    if executor == "local" and jobs == 1:
        return _in_process(calls)
    threads = (slurm or SlurmOptions()).cpus_per_task if executor == "slurm" else child_threads(jobs)
    return _in_pool(calls, executor, jobs, Path(folder) if folder is not None else None, slurm, threads)


def _in_process(calls: list[Call]) -> Iterator[tuple[int, Any, BaseException | None]]:
    for i, call in enumerate(calls):
        try:
            yield i, call.fn(*call.args, **call.kwargs), None
        except Exception as e:
            yield i, None, e


def _in_pool(calls: list[Call], executor: str, jobs: int, folder: Path | None, slurm: SlurmOptions | None,
             threads: int) -> Iterator[tuple[int, Any, BaseException | None]]:
    submitted: list = []  # submitit jobs, to cancel on an interrupt
    if executor == "local":
        pool: cf.Executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = {pool.submit(call_with_threads, threads, c.fn, c.args, c.kwargs): i for i, c in enumerate(calls)}
    else:
        folder.mkdir(parents=True, exist_ok=True)
        pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix=f"jrl-{executor}")
        futures = {pool.submit(_submit_and_wait, executor, folder, c, slurm, threads, submitted): i
                   for i, c in enumerate(calls)}
    try:
        for future in cf.as_completed(futures):
            i = futures[future]
            try:
                yield i, future.result(), None
            except BrokenProcessPool as e:
                yield i, None, ExecutorError(
                    f"local worker process of {calls[i].name!r} died or the pool broke before it ran "
                    f"(killed, e.g. for memory? or, from a script, its code not under "
                    f"`if __name__ == '__main__':`, which spawned workers need): {e}")
            except Exception as e:
                yield i, None, e
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for job in submitted:
            try:
                job.cancel(check=False)
            except Exception:  # already finished or gone
                pass
        raise
    pool.shutdown(wait=True)


__all__ = [
    "ENGINE_FOLDER",
    "ENGINE_MARGIN_S",
    "EXECUTORS",
    "NO_LIMIT_MIN",
    "Call",
    "ExecutorError",
    "SlurmOptions",
    "available_cores",
    "call_with_threads",
    "check_executor",
    "child_threads",
    "engine_time_min",
    "run_calls",
    "submitit_executor",
]
