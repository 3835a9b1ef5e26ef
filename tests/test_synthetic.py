"""Procedural pictures for the nano vision stage (jrl_core.synthetic)."""

import numpy as np
import pytest

from jrl_core import nano, synthetic


def test_pictures_are_deterministic_rgb_and_varied():
    a, b = synthetic.pictures(3, seed=1, size=64), synthetic.pictures(3, seed=1, size=64)
    assert [p.image_id for p in a] == ["synthetic/1/0", "synthetic/1/1", "synthetic/1/2"]
    for x, y in zip(a, b, strict=True):
        assert x.image.mode == "RGB" and x.image.size == (64, 64)
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    arrays = [np.asarray(p.image, dtype=float) for p in a]
    assert not np.array_equal(arrays[0], arrays[1])
    assert all(x.std() > 5 for x in arrays)  # not flat: edges and textures to look at
    other = np.asarray(synthetic.pictures(1, seed=2, size=64)[0].image)
    assert not np.array_equal(other, arrays[0])


def test_pictures_name_bad_input():
    with pytest.raises(ValueError, match="n=0"):
        synthetic.pictures(0)
    with pytest.raises(ValueError, match="size=8"):
        synthetic.dead_leaves(0, size=8)


def test_synthetic_fields_keep_old_hashes_when_off_and_change_them_when_on():
    base = nano.NanoConfig()
    assert nano.NanoConfig(vision_synthetic_share=0.9).key() == base.key()  # inert without pictures
    assert nano.NanoConfig(vision_synthetic_pictures=16).key() != base.key()


def test_tilings_are_deterministic_distinct_from_dead_leaves_and_name_bad_input():
    a, b = synthetic.pictures(2, seed=1, size=64, kind="tiling"), synthetic.pictures(2, seed=1, size=64, kind="tiling")
    assert [p.image_id for p in a] == ["tiling/1/0", "tiling/1/1"]
    for x, y in zip(a, b, strict=True):
        assert x.image.mode == "RGB" and x.image.size == (64, 64)
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    assert not np.array_equal(np.asarray(a[0].image), np.asarray(a[1].image))
    leaves = synthetic.pictures(1, seed=1, size=64)[0]
    assert leaves.image_id == "synthetic/1/0"  # dead leaves keep their ids (and pixels) with kinds added
    assert not np.array_equal(np.asarray(leaves.image), np.asarray(a[0].image))
    with pytest.raises(ValueError, match="kind='brick'.*synthetic, tiling"):
        synthetic.pictures(1, kind="brick")
    with pytest.raises(ValueError, match="size=8"):
        synthetic.tiling(0, size=8)
