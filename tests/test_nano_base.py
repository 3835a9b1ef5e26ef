"""The shipped nano base: pinned files checked against their build card, loaded without rebuilding; builds are
deterministic; the "halves swapped" probe reads its label correctly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from jrl_core import nano, probe
from jrl_core.puzzles import PuzzleSpec, make_row


def test_shipped_base_matches_its_card_and_the_current_recipe():
    folder = nano.shipped_base()
    assert nano.verify_base(folder, nano.NanoConfig()) == []
    card = nano.read_card(folder)
    assert card["version"] == nano.BASE_VERSION == folder.name
    assert {"last", "img_final"} <= set(card["probe_halves_swapped"])
    assert 0.0 <= card["base_rq1_2x1_pair"]["accuracy"] <= 1.0


def test_a_changed_file_is_reported(tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(nano.shipped_base(), copy)
    (copy / "nano.json").write_text("{}")
    assert any(p.startswith("nano.json: sha256") for p in nano.verify_base(copy))


def test_model_nano_loads_the_shipped_base_and_never_builds(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("model='nano' must not build")

    monkeypatch.setattr(nano, "build_nano", no_build)
    assert nano.resolve_model("nano") == str(nano.shipped_base())


def test_missing_shipped_base_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(nano, "SHIPPED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="jrl nano build"):
        nano.resolve_model("nano")


def test_small_build_is_deterministic(tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, seed=3)
    a = nano.build_nano(cfg, cache_dir=tmp_path / "a", progress=False)
    b = nano.build_nano(cfg, cache_dir=tmp_path / "b", progress=False)
    assert nano.file_hashes(a)["model.safetensors"] == nano.file_hashes(b)["model.safetensors"]


@pytest.mark.parametrize(("m", "n"), [(2, 1), (1, 2)])
def test_swapped_label_reads_the_puzzle(m, n):
    top = np.zeros((64, 64, 3), dtype=np.uint8)
    top[32:] = 255 if m == 2 else 0
    top[:, 32:] = 255 if n == 2 else top[:, 32:]
    image = Image.fromarray(top)
    for seed in range(12):
        row = make_row(image, PuzzleSpec(m=m, n=n), seed=seed)
        first = np.asarray(row["image"])[:32, :32].mean()  # top or left patch now
        assert probe.swapped_label(row) == int(first > 127), seed


def test_swapped_label_refuses_other_sizes():
    row = make_row(Image.new("RGB", (64, 64)), PuzzleSpec(m=2, n=2), seed=0)
    with pytest.raises(ValueError, match="2x1 or 1x2"):
        probe.swapped_label(row)


def test_a_changed_recipe_is_never_written_over_the_shipped_base():
    with pytest.raises(ValueError, match="--out"):
        nano.build_base(overrides={"pretrain_steps": 3})
