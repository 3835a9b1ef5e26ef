"""Paper-scale plumbing, checked on CPU: accelerate launch configs, DeepSpeed configs, and a real
two-process GRPO run (``accelerate launch``, gloo) through :func:`jrl_core.train.train_grpo`.

The launch test takes about 30 s on 2 idle cores (two Python start-ups, a tiny model, 2 GRPO steps).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "recipes" / "accelerate"
DRIVER = Path(__file__).resolve().parent / "dist_grpo_driver.py"
YAMLS = sorted(CONFIGS.glob("*.yaml"))
DS_YAMLS = [p for p in YAMLS if yaml.safe_load(p.read_text()).get("distributed_type") == "DEEPSPEED"]

# accelerate refuses these next to a deepspeed_config_file (DeepSpeedPlugin._deepspeed_config_checks)
DS_FIELDS_REFUSED_WITH_FILE = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage",
                               "offload_optimizer_device", "offload_param_device", "offload_param_nvme_path",
                               "offload_optimizer_nvme_path", "zero3_save_16bit_model", "mixed_precision"}
# what transformers fills from TrainingArguments when the value is "auto" (HfTrainerDeepSpeedConfig)
DS_AUTO_FROM_TRAINER = ["train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                        "gradient_clipping"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recipes_hold_the_promised_accelerate_configs():
    names = {p.name for p in YAMLS}
    assert {"single_gpu.yaml", "multi_gpu_ddp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_accelerate_config_is_accepted_by_the_launcher(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    cfg = load_config_from_file(str(path))  # raises on unknown keys or a bad distributed_type
    assert isinstance(cfg, ClusterConfig)
    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)  # what `accelerate launch` does first
    expected = 1 if path.name.startswith("single_gpu") else 8
    assert args.num_processes == expected
    if path in DS_YAMLS:
        assert args.use_deepspeed and not args.multi_gpu
        fields = set(defaults.deepspeed_config) | ({"mixed_precision"} if mp_from_config else set())
        assert not fields & DS_FIELDS_REFUSED_WITH_FILE, "accelerate would refuse these next to the JSON"
        assert (ROOT / args.deepspeed_config_file).exists(), "paths are relative to the repository root"


def test_deepspeed_configs_name_their_zero_stage():
    from accelerate.utils.deepspeed import HfDeepSpeedConfig  # parses without deepspeed installed

    stages = {}
    for path in DS_YAMLS:
        ds_file = ROOT / yaml.safe_load(path.read_text())["deepspeed_config"]["deepspeed_config_file"]
        cfg = HfDeepSpeedConfig(str(ds_file))
        stages[path.name] = cfg.get_value("zero_optimization.stage")
        assert cfg.is_zero3() == (stages[path.name] == 3)
        assert cfg.is_offload() == ("offload" in path.name)
    assert stages == {"deepspeed_zero2.yaml": 2, "deepspeed_zero3.yaml": 3, "single_gpu_zero2_offload.yaml": 2}


@pytest.mark.parametrize("name", ["zero2.json", "zero2_offload.json", "zero3.json"])
def test_deepspeed_json_leaves_batch_and_precision_to_the_trainer(name):
    cfg = json.loads((CONFIGS / name).read_text())
    for key in DS_AUTO_FROM_TRAINER:
        assert cfg[key] == "auto", f"{key}: let transformers fill it from GRPOConfig, or the two can disagree"
    assert cfg["bf16"]["enabled"] == "auto" and cfg["fp16"]["enabled"] == "auto"
    assert "optimizer" not in cfg and "scheduler" not in cfg, "AdamW + linear decay come from GRPOSettings"
    zero = cfg["zero_optimization"]
    if name == "zero3.json":
        assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
        for key in ("stage3_prefetch_bucket_size", "stage3_param_persistence_threshold", "reduce_bucket_size"):
            assert zero[key] == "auto"
    else:
        assert zero["stage"] == 2 and zero["reduce_scatter"] and zero["contiguous_gradients"]


def test_installed_accelerate_satisfies_the_project_and_trl():
    ours = next(r for r in map(Requirement, importlib.metadata.requires("jrl-core")) if r.name == "accelerate")
    trls = [Requirement(d) for d in importlib.metadata.requires("trl") if d.startswith("accelerate")]
    installed = importlib.metadata.version("accelerate")
    assert ours.specifier.contains(installed), f"accelerate {installed} vs pyproject {ours}"
    assert trls and all(r.specifier.contains(installed) for r in trls), f"accelerate {installed} vs TRL {trls}"


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """``accelerate launch`` of tests/dist_grpo_driver.py on 2 CPU processes (gloo): 2 GRPO steps of
    4 prompts × 4 completions, 4 completions per forward/backward. Returns (out folder, rank records)."""
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(DRIVER), "--out", str(out), "--steps", "2",
           "--prompts-per-step", "4", "--num-generations", "4", "--per-device-batch", "4"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out, [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.mark.distributed
def test_both_processes_train_in_one_gloo_group_to_the_same_step(two_process_run):
    _, records = two_process_run
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world_size"] == r["trainer_world_size"] == 2 for r in records)
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" and r["backend"] == "gloo" for r in records)
    assert {r["global_step"] for r in records} == {2}


@pytest.mark.distributed
def test_each_process_scores_its_own_prompts(two_process_run):
    _, (r0, r1) = two_process_run
    assert not set(r0["images_scored"]) & set(r1["images_scored"])
    assert len(r0["images_scored"]) == len(r1["images_scored"]) == 4  # 2 prompts per process × 2 steps


@pytest.mark.distributed
def test_data_parallel_replicas_stay_identical_after_training(two_process_run):
    _, (r0, r1) = two_process_run
    assert r0["param_hash"] == r1["param_hash"] != r0["init_param_hash"]


@pytest.mark.distributed
def test_one_optimizer_step_sees_prompts_times_g_completions_over_all_processes(two_process_run):
    _, records = two_process_run
    # train.grpo_config divides by WORLD_SIZE: per_device 4 × grad-accum 2 × 2 processes = 4 prompts × 4 completions
    assert all(r["gradient_accumulation_steps"] == 2 for r in records)
    assert all(r["effective_batch"] == r["completions_per_step"] == r["generation_batch_size"] == 16 for r in records)


@pytest.mark.distributed
def test_main_process_alone_saves_one_loadable_checkpoint_equal_to_the_replicas(two_process_run):
    from dist_grpo_driver import parameter_hash

    from jrl_core import nano

    out, records = two_process_run
    weights = [p.relative_to(out / "run") for p in (out / "run").rglob("model.safetensors")]
    assert weights == [Path("final/model.safetensors")]
    model, _ = nano.load_model(str(out / "run" / "final"))
    assert parameter_hash(model) == records[0]["param_hash"]
