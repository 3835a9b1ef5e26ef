"""A killed `jrl train` resumes from its last checkpoint: same rows per step, no lost or duplicated rollouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from jrl_core import experiment, nano, runs, train

STEPS, PROMPTS, G = 40, 2, 2  # long enough that the kill below lands mid-run on a fast machine too


def command(nano_dir, out) -> list[str]:
    sets = {"model": str(nano_dir), "seed": 4, "grpo.steps": STEPS, "grpo.prompts_per_step": PROMPTS,
            "grpo.num_generations": G, "grpo.save_steps": 2, "grpo.report_to": [], "n_test": 2}
    cmd = [sys.executable, "-m", "jrl_core.cli", "train", "--recipe", "nano/rq1_2x1_pair", "--out", str(out)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd


def test_killed_train_resumes_at_its_checkpoint_with_the_same_rows(nano_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(nano_dir, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "grpo" / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, "jrl train ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    log = out / "grpo" / runs.COMPLETION_LOG
    # Kill once a step past the checkpoint is logged (its rollouts must be dropped on resume), long before the end:
    # a fixed sleep let a fast machine finish all the steps first.
    while not any(r["step"] > 2 for r in runs.read_completion_records(log)):
        assert proc.poll() is None, "jrl train ended before a step past its first checkpoint was logged"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / runs.METRICS_FILE).exists()  # killed: no record, never reported finished
    logged = {r["step"] for r in runs.read_completion_records(out / "grpo" / runs.COMPLETION_LOG)}
    assert logged and max(logged) < STEPS
    last = max(int(p.name.split("-")[1]) for p in (out / "grpo").glob("checkpoint-*")
               if (p / "trainer_state.json").exists())
    subprocess.run(command(nano_dir, out), env=env, check=True, capture_output=True)

    records = runs.read_completion_records(out / "grpo" / runs.COMPLETION_LOG)
    per_step = Counter(r["step"] for r in records)
    assert per_step == {s: PROMPTS * G for s in range(1, STEPS + 1)}  # nothing lost, nothing twice
    exp = experiment.load_recipe("nano/rq1_2x1_pair", {"model": str(nano_dir), "seed": 4})
    _, processor = nano.load_model(str(nano_dir))
    rows = experiment.train_rows(exp, steps=STEPS, prompts_per_step=PROMPTS, view_size=nano.view_size(processor))
    ids = train.to_dataset(rows)["prompt_id"]
    for step in range(1, STEPS + 1):
        assert {r["prompt_id"] for r in records if r["step"] == step} == set(ids[(step - 1) * PROMPTS: step * PROMPTS])
    metrics = runs.read_metrics(out)["metrics"]
    assert metrics["grpo_steps"] == STEPS and metrics["resumed_from_step"] == last  # resumed, not restarted


def test_torn_completion_log_tail_is_dropped_on_resume(tmp_path):
    path = tmp_path / runs.COMPLETION_LOG
    runs.append_completions(path, [{"step": 1, "completion": "A"}, {"step": 2, "completion": "B"}])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "compl')  # the writer was killed mid-line
    assert [r["step"] for r in runs.read_completion_records(path)] == [1, 2]
    assert runs.truncate_completions(path, 1) == 1
    assert path.read_text(encoding="utf-8").count("\n") == 1
