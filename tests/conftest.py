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
