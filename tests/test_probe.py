"""The linear "halves swapped" probe (jrl_core.probe): fit, held-out score, score by photo, bad input."""

import pytest
import torch

from jrl_core import probe


def _data(n: int, seed: int, informative_in: set[str]):
    """Two photos' rows: the label is in feature 0 for photos in ``informative_in``, pure noise otherwise."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).float()
    photos = ["moon" if i % 2 else "brick" for i in range(n)]
    x = torch.randn(n, 4, generator=g)
    for i, p in enumerate(photos):
        if p in informative_in:
            x[i, 0] += 4 * (2 * y[i] - 1)
    return x, y, photos


def test_linear_probe_scores_held_out_rows_and_each_photo():
    xtr, ytr, _ = _data(400, 0, {"brick", "moon"})
    xte, yte, photos = _data(400, 1, {"moon"})  # held out: only moon's rows carry the label
    out = probe.linear_probe(xtr, ytr, xte, yte, groups=photos)
    assert out["fit_train"] > 0.95 and out["cv_train"] > 0.95
    by = out["held_out_by_group"]
    assert list(by) == ["brick", "moon"]
    assert by["moon"] > 0.95 and 0.35 < by["brick"] < 0.65  # a photo at chance shows as one
    assert out["held_out"] == pytest.approx((by["moon"] + by["brick"]) / 2, abs=0.002)
    assert "held_out_by_group" not in probe.linear_probe(xtr, ytr, xte, yte)


def test_linear_probe_names_mismatched_groups():
    xtr, ytr, _ = _data(40, 0, {"moon"})
    with pytest.raises(ValueError, match="groups has 3 names for 40 held-out rows"):
        probe.linear_probe(xtr, ytr, xtr, ytr, groups=["a", "b", "c"])


def test_swap_probe_fits_on_photos_only_and_scores_each_held_out_photo(nano_dir, monkeypatch):
    from jrl_core import experiment, nano
    from jrl_core.images import SKIMAGE_TEST

    sources, real = [], experiment.train_rows

    def spy(exp, *args, **kwargs):
        sources.append(exp.photo_source)
        return real(exp, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_rows", spy)
    model, processor = nano.load_model(str(nano_dir))
    report = probe.swap_probe(model, processor, n_train=24, n_test=20)
    assert experiment.load_recipe(probe.RECIPE).photo_source != "skimage"  # the default adds procedural pictures
    assert sources == ["skimage"]  # the probe's fit does not move with them
    for feat in ("last", "img_final"):
        by = report[feat]["held_out_by_group"]
        assert set(by) <= set(SKIMAGE_TEST) and all(0.0 <= v <= 1.0 for v in by.values())
    assert report["n_train"] == 24 and report["n_test"] == 20 and 0.0 <= report["model_accuracy"] <= 1.0
    from jrl_core.images import PACKAGE_PHOTOS

    for feat in ("last", "img_final"):  # the same fit, scored on the second held-out set's photos
        second = report["second_heldout"][feat]
        assert set(second["held_out_by_group"]) == set(PACKAGE_PHOTOS) and 0.0 <= second["held_out"] <= 1.0
        assert second["l2"] == report[feat]["l2"] and second["fit_train"] == report[feat]["fit_train"]
