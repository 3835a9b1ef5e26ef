"""Shared fixtures: a tiny nano configuration and its checkpoint (built once per session)."""

import pytest

from jrl_core import nano

TINY = nano.NanoConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                       vision_hidden=32, vision_depth=1, vision_heads=2, image_size=56, merge_size=2,
                       pretrain_steps=3, pretrain_batch=4, vision_pretrain_steps=3, vision_pretrain_pool=64)
"""A nano model small enough for tests: seconds to build, same architecture and code path."""


@pytest.fixture(scope="session")
def tiny_config():
    return TINY


@pytest.fixture(scope="session")
def nano_dir(tmp_path_factory):
    """Folder of a built TINY checkpoint (safetensors + processor), in a temporary cache."""
    return nano.build_nano(TINY, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture
def grpo_case(nano_dir):
    """Two GRPO trainings from the same start: a freshly loaded TINY model and processor, four 2x1 pair rows, nano
    settings for 2 steps × 2 prompts × 4 rollouts, and ``state`` (the initial weights, to reload between trainings)."""
    import dataclasses
    from types import SimpleNamespace

    from jrl_core import train
    from jrl_core.images import load_photos, sample_views
    from jrl_core.puzzles import PuzzleSpec, build_rows

    model, processor = nano.load_model(str(nano_dir))
    rows = build_rows(sample_views(load_photos("skimage", "train"), 4, seed=0, size=56),
                      PuzzleSpec(m=2, n=1, question_type="pair"), n_items=4, seed=0)
    settings = dataclasses.replace(train.NANO, steps=2, prompts_per_step=2, num_generations=4, warmup_ratio=0,
                                   save_fraction=0.0, report_to=())
    return SimpleNamespace(model=model, processor=processor, rows=rows, settings=settings,
                           state={k: v.clone() for k, v in model.state_dict().items()})


@pytest.fixture(scope="session")
def sample_generation():
    """``sample(model, batch) -> (sequences, scores)``: ``model.generate`` on ``batch`` with TRL's sampling (6 new
    tokens, temperature 1, top-k 50) from torch seed 0, so two calls on equal inputs draw the same tokens."""
    import torch

    def sample(model, batch):
        torch.manual_seed(0)
        out = model.generate(**batch, max_new_tokens=6, do_sample=True, temperature=1.0, top_k=50,
                             output_scores=True, return_dict_in_generate=True)
        return out.sequences, torch.stack(out.scores)

    return sample
