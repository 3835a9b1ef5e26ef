"""Photo sources, splits, conversions and views (jrl_core.images)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from jrl_core.images import (
    PACKAGE_PHOTOS,
    SKIMAGE_PHOTOS,
    SKIMAGE_TEST,
    SYNTHETIC_TRAIN_PICTURES,
    Photo,
    SkipRecord,
    hash_split,
    load_photos,
    sample_views,
    split_procedural,
    to_rgb,
)


@pytest.fixture(scope="module")
def skimage_train() -> list[Photo]:
    return load_photos("skimage", "train")


def _save(path, image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


# ---------------------------------------------------------------- skimage source


def test_skimage_split_by_photo_has_no_overlap(skimage_train):
    train = {p.image_id for p in skimage_train}
    test = {p.image_id for p in load_photos("skimage", "test")}
    assert train.isdisjoint(test)
    assert test == set(SKIMAGE_TEST)
    assert train | test == set(SKIMAGE_PHOTOS)


def test_skimage_photos_are_rgb_and_exclude_non_photos(skimage_train):
    assert all(p.image.mode == "RGB" for p in skimage_train)
    ids = {p.image_id for p in load_photos("skimage", "all")}
    assert not ids & {"horse", "logo", "color", "chessboard_GRAY", "phantom", "motorcycle_right"}


def test_packages_source_adds_train_photos_and_keeps_the_test_split(skimage_train):
    train = load_photos("packages", "train")
    assert [p.image_id for p in train] == [p.image_id for p in skimage_train] + list(PACKAGE_PHOTOS)
    assert load_photos("packages", "test") == load_photos("skimage", "test")  # same held-out puzzles
    extra = train[len(skimage_train):]
    assert all(p.image.mode == "RGB" and min(p.image.size) >= 256 for p in extra)
    gray = {p.image_id for p in extra if len(set(p.image.getpixel((40, 40)))) == 1}
    assert {"aero", "ascent"} <= gray  # PyWavelets' .npz arrays are grayscale, stored as three equal channels
    views = sample_views(train, 2 * len(train), seed=0, size=32)
    assert {v.image_id.split("#")[0] for v in views} == {p.image_id for p in train}


def test_synthetic_suffix_adds_procedural_train_pictures_and_keeps_the_test_split(skimage_train):
    train = load_photos("skimage+synthetic", "train")
    assert [p.image_id for p in train[:len(skimage_train)]] == [p.image_id for p in skimage_train]
    extra = train[len(skimage_train):]
    assert len(extra) == SYNTHETIC_TRAIN_PICTURES and all(p.image_id.startswith("synthetic/") for p in extra)
    assert all(p.image.mode == "RGB" for p in extra)
    assert load_photos("skimage+synthetic", "test") == load_photos("skimage", "test")  # same held-out puzzles
    again = load_photos("skimage+synthetic:3", "train")[len(skimage_train):]
    assert [p.image_id for p in again] == [p.image_id for p in extra[:3]]  # the same pictures, a prefix
    assert np.array_equal(np.asarray(again[0].image), np.asarray(extra[0].image))
    packages = load_photos("packages+synthetic:2", "train")
    assert len(packages) == len(skimage_train) + len(PACKAGE_PHOTOS) + 2


def test_split_procedural_parses_the_suffixes_and_names_a_bad_count():
    assert split_procedural("skimage") == ("skimage", {})
    assert split_procedural("skimage+synthetic") == ("skimage", {"synthetic": SYNTHETIC_TRAIN_PICTURES})
    assert split_procedural("/data/photos+synthetic:7") == ("/data/photos", {"synthetic": 7})
    assert split_procedural("a+synthetically") == ("a+synthetically", {})  # not the suffix: a folder name
    assert split_procedural("skimage+synthetic:5+tiling") == ("skimage", {"synthetic": 5, "tiling": 42})
    assert split_procedural("skimage+tiling:3+synthetic") == ("skimage", {"tiling": 3, "synthetic": 42})
    for bad in ("skimage+synthetic:0", "skimage+synthetic:x", "skimage+synthetic:"):
        with pytest.raises(ValueError, match=r"\+synthetic:42"):
            split_procedural(bad)
    with pytest.raises(ValueError, match="given twice"):
        split_procedural("skimage+tiling:2+tiling:3")


def test_tiling_pictures_join_the_train_split_only_after_the_dead_leaves():
    train = load_photos("skimage+synthetic:2+tiling:3", "train")
    ids = [p.image_id for p in train]
    assert ids[-5:] == ["synthetic/777/0", "synthetic/777/1", "tiling/777/0", "tiling/777/1", "tiling/777/2"]
    assert [p.image_id for p in load_photos("skimage+tiling:3", "test")] == [p.image_id for p in load_photos("skimage", "test")]
    assert train[-1].image.mode == "RGB" and np.asarray(train[-1].image).std() > 5


def test_npz_photo_must_hold_one_uint8_array(tmp_path):
    from jrl_core.images import _decode_file

    np.savez(tmp_path / "ok.npz", a=np.full((70, 80), 9, np.uint8))
    assert _decode_file(tmp_path / "ok.npz").getpixel((1, 1)) == (9, 9, 9)
    np.savez(tmp_path / "two.npz", a=np.zeros((8, 8), np.uint8), b=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="one uint8 array"):
        _decode_file(tmp_path / "two.npz")


# ---------------------------------------------------------------- conversions


def test_grayscale_becomes_three_equal_channels(tmp_path):
    _save(tmp_path / "g.png", Image.new("L", (80, 70), 77))
    (photo,) = load_photos(str(tmp_path), "all")
    assert photo.image.mode == "RGB"
    assert photo.image.getpixel((5, 5)) == (77, 77, 77)


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (80, 70), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    _save(tmp_path / "a.png", image)
    (photo,) = load_photos(str(tmp_path), "all")
    assert photo.image.getpixel((0, 0)) == (255, 255, 255)
    assert photo.image.getpixel((5, 5)) == (255, 0, 0)


def test_palette_image_is_converted_to_rgb(tmp_path):
    image = Image.new("RGB", (80, 70), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    _save(tmp_path / "p.png", image)
    (photo,) = load_photos(str(tmp_path), "all")
    assert photo.image.mode == "RGB"
    assert photo.image.getpixel((3, 3)) == (10, 200, 30)


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path):
    arr = np.full((70, 80), 65535, dtype=np.uint16)
    arr[:, :40] = 257 * 100
    _save(tmp_path / "deep.png", Image.fromarray(arr))
    (photo,) = load_photos(str(tmp_path), "all")
    assert photo.image.getpixel((0, 0)) == (100, 100, 100)
    assert photo.image.getpixel((79, 0)) == (255, 255, 255)


def test_exif_rotated_jpeg_is_made_upright(tmp_path):
    image = Image.new("RGB", (120, 80), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    _save(tmp_path / "phone.jpg", image, exif=exif)
    (photo,) = load_photos(str(tmp_path), "all")
    assert photo.image.size == (80, 120)


def test_to_rgb_float_image_in_unit_range():
    image = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), mode="F")
    assert to_rgb(image).getpixel((0, 0)) == (128, 128, 128)


def test_photo_rejects_non_rgb_image():
    with pytest.raises(ValueError, match="to_rgb"):
        Photo("x", Image.new("L", (4, 4)))


# ---------------------------------------------------------------- skipping, errors


def test_unreadable_and_too_small_files_are_skipped_with_warning_and_counted(tmp_path):
    _save(tmp_path / "good.png", Image.new("RGB", (80, 80)))
    _save(tmp_path / "tiny.png", Image.new("RGB", (80, 10)))
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    record = SkipRecord()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photos = load_photos(str(tmp_path), "all", record=record)
    assert [p.image_id for p in photos] == ["good.png"]
    assert record.skipped == {"unreadable": 1, "too_small": 1}
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.jpg" in messages and "tiny.png" in messages
    assert record.to_dict()["total"] == 2


def test_unknown_source_raises_naming_input(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        load_photos(str(tmp_path / "nowhere"))


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="validation"):
        load_photos("skimage", "validation")


def test_empty_result_raises(tmp_path):
    with pytest.raises(ValueError, match="no usable photo"):
        load_photos(str(tmp_path), "all")


# ---------------------------------------------------------------- folder and COCO splits


def test_folder_hash_split_is_a_partition(tmp_path):
    for i in range(30):
        _save(tmp_path / f"sub{i % 3}" / f"im{i}.png", Image.new("RGB", (64, 64), (i, i, i)))
    train = {p.image_id for p in load_photos(str(tmp_path), "train")}
    test = {p.image_id for p in load_photos(str(tmp_path), "test")}
    assert train.isdisjoint(test) and len(train | test) == 30
    assert all(hash_split(i) == "train" for i in train)
    assert "sub0/im0.png" in train | test  # ids are relative POSIX paths


def test_hash_split_is_stable():
    assert hash_split("COCO_train2014_000000000009.jpg") == hash_split("COCO_train2014_000000000009.jpg")
    shares = sum(hash_split(f"f{i}") == "train" for i in range(2000)) / 2000
    assert 0.75 < shares < 0.85


def test_coco_layout_with_file_list(tmp_path):
    names = [f"COCO_{i}.jpg" for i in range(10)]
    for name in names:
        _save(tmp_path / "coco" / "train2014" / name, Image.new("RGB", (70, 70)))
    (tmp_path / "coco" / "train2014.json").write_text(json.dumps(names))
    photos = load_photos(str(tmp_path), "all")
    assert sorted(p.image_id for p in photos) == sorted(names)


def test_coco_layout_dict_with_explicit_split(tmp_path):
    images = [{"file_name": f"c{i}.jpg", "split": "test" if i < 3 else "train"} for i in range(6)]
    for item in images:
        _save(tmp_path / "coco" / "train2014" / item["file_name"], Image.new("RGB", (70, 70)))
    (tmp_path / "coco" / "train2014.json").write_text(json.dumps({"images": images}))
    assert {p.image_id for p in load_photos(str(tmp_path), "test")} == {"c0.jpg", "c1.jpg", "c2.jpg"}


def test_coco_listed_but_missing_file_is_counted(tmp_path):
    _save(tmp_path / "coco" / "train2014" / "here.jpg", Image.new("RGB", (70, 70)))
    (tmp_path / "coco" / "train2014.json").write_text(json.dumps(["here.jpg", "gone.jpg"]))
    record = SkipRecord()
    with pytest.warns(UserWarning, match="gone.jpg"):
        photos = load_photos(str(tmp_path), "all", record=record)
    assert len(photos) == 1 and record.skipped == {"missing": 1}


# ---------------------------------------------------------------- views


def test_sample_views_are_deterministic_and_sized(skimage_train):
    a = sample_views(skimage_train, 20, seed=3, size=48)
    b = sample_views(skimage_train, 20, seed=3, size=48)
    assert [v.image.tobytes() for v in a] == [v.image.tobytes() for v in b]
    assert all(v.image.size == (48, 48) and v.image.mode == "RGB" for v in a)
    assert a[0].image.tobytes() != sample_views(skimage_train, 1, seed=4, size=48)[0].image.tobytes()


def test_sample_views_round_robin_ids(skimage_train):
    views = sample_views(skimage_train, len(skimage_train) + 5, seed=0, size=16)
    assert views[17].image_id == f"{skimage_train[17 % len(skimage_train)].image_id}#17"
    assert {v.image_id.split("#")[0] for v in views} == {p.image_id for p in skimage_train}
    assert views[len(skimage_train)].image_id == f"{skimage_train[0].image_id}#{len(skimage_train)}"


def test_sample_views_never_flip_vertically():
    arr = np.zeros((100, 100, 3), dtype=np.uint8)
    arr[50:] = 255  # dark top, bright bottom
    photo = Photo("half", Image.fromarray(arr))
    for view in sample_views([photo], 40, seed=1, size=16, min_crop=0.9):
        pixels = np.asarray(view.image, dtype=float)
        assert pixels[:4].mean() < pixels[-4:].mean()


def test_sample_views_rejects_bad_arguments(skimage_train):
    with pytest.raises(ValueError):
        sample_views([], 3, seed=0, size=16)
    with pytest.raises(ValueError):
        sample_views(skimage_train, 3, seed=0, size=16, min_crop=0.0)


# ---------------------------------------------------------------- streaming (lazy decoding)


def _noise_jpeg(path, seed=0, size=(96, 80)):
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _save(path, Image.fromarray(arr), quality=90)


@pytest.fixture
def fresh_cache():
    from jrl_core.images import DECODE_CACHE_SIZE, clear_decode_cache, set_decode_cache_size

    clear_decode_cache()
    yield
    set_decode_cache_size(DECODE_CACHE_SIZE)
    clear_decode_cache()


def test_listing_decodes_nothing_and_use_decodes_once(tmp_path, monkeypatch, fresh_cache):
    from PIL import ImageFile

    from jrl_core.images import decode_cache_info

    for i in range(5):
        _noise_jpeg(tmp_path / f"p{i}.jpg", seed=i)
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: (loads.append(1), real_load(self))[1])
    photos = load_photos(str(tmp_path), "all")
    assert len(photos) == 5 and all(p.is_file_backed for p in photos)
    assert loads == [] and decode_cache_info()["size"] == 0  # header only at listing
    first = photos[0].image
    decoded = len(loads)
    assert first.mode == "RGB" and first.size == (96, 80) and decoded >= 1
    assert photos[0].image is first and len(loads) == decoded  # served from the cache
    assert decode_cache_info()["hits"] == 1


def test_decode_cache_is_bounded(tmp_path, fresh_cache):
    from jrl_core.images import decode_cache_info, set_decode_cache_size

    for i in range(6):
        _noise_jpeg(tmp_path / f"p{i}.jpg", seed=i)
    set_decode_cache_size(2)
    photos = load_photos(str(tmp_path), "all")
    for p in photos:
        _ = p.image
    assert decode_cache_info()["size"] == 2
    with pytest.raises(ValueError, match="cache size"):
        set_decode_cache_size(-1)


def test_non_utf8_file_name_is_skipped_and_counted(tmp_path):
    import os

    _save(tmp_path / "good.png", Image.new("RGB", (80, 80)))
    buf = __import__("io").BytesIO()
    Image.new("RGB", (80, 80)).save(buf, "PNG")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.png"), "wb") as fh:  # Latin-1 name: not UTF-8
        fh.write(buf.getvalue())
    record = SkipRecord()
    seen = []
    for split in ("train", "test"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                seen += [p.image_id for p in load_photos(str(tmp_path), split, record=record)]
            except ValueError as err:  # the split that holds only the bad name has no usable photo
                assert "bad_name" in str(err)
        assert all("caf\\xe9.png" in str(w.message) for w in caught)
    assert seen == ["good.png"]
    assert record.skipped == {"bad_name": 1}
    json.dumps(record.to_dict()).encode("utf-8")  # the record stays writable as UTF-8
    assert "caf\\xe9.png" in record.examples[0]


def test_corrupt_file_is_skipped_and_counted(tmp_path):
    _noise_jpeg(tmp_path / "good.jpg")
    data = _noise_jpeg(tmp_path / "cut.jpg", seed=1).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # header fine, pixel data truncated
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    record = SkipRecord()
    with pytest.warns(UserWarning) as caught:
        photos = load_photos(str(tmp_path), "all", record=record, verify=True)
    assert [p.image_id for p in photos] == ["good.jpg"]
    assert {"cut.jpg", "junk.jpg"} <= {str(w.message).split(":")[0].rsplit("/", 1)[-1] for w in caught}
    assert record.skipped == {"unreadable": 2}


def test_truncated_file_found_at_use_raises_naming_it_and_is_counted(tmp_path, fresh_cache):
    from jrl_core.images import PhotoDecodeError

    _noise_jpeg(tmp_path / "good.jpg")
    data = _noise_jpeg(tmp_path / "cut.jpg", seed=1).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    record = SkipRecord()
    cut, good = load_photos(str(tmp_path), "all", record=record)  # header only: the cut file is listed
    assert record.skipped == {} and good.image.mode == "RGB"
    with pytest.warns(UserWarning, match="cut.jpg"), pytest.raises(PhotoDecodeError, match=r"cut\.jpg.*verify=True"):
        _ = cut.image
    with pytest.warns(UserWarning), pytest.raises(PhotoDecodeError):
        _ = cut.image
    assert record.skipped == {"unreadable": 1}  # counted once


def test_file_removed_after_listing_raises_naming_it(tmp_path, fresh_cache):
    _noise_jpeg(tmp_path / "a.jpg")
    _noise_jpeg(tmp_path / "b.jpg", seed=1)
    photos = load_photos(str(tmp_path), "all")
    (tmp_path / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.jpg.*gone"):
        _ = photos[1].image


def test_file_backed_photo_pickles_as_its_path(tmp_path):
    import pickle

    _noise_jpeg(tmp_path / "a.jpg", size=(400, 300))
    (photo,) = load_photos(str(tmp_path), "all")
    blob = pickle.dumps(photo)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    assert again == photo and again.image.tobytes() == photo.image.tobytes()
    in_memory = Photo("m", Image.new("RGB", (8, 8), (1, 2, 3)))
    assert pickle.loads(pickle.dumps(in_memory)).image.getpixel((0, 0)) == (1, 2, 3)


def test_photo_is_immutable_and_needs_exactly_one_source(tmp_path):
    photo = Photo("x", Image.new("RGB", (4, 4)))
    with pytest.raises(AttributeError):
        photo.image_id = "y"
    with pytest.raises(ValueError, match="either"):
        Photo("x")
    with pytest.raises(ValueError, match="either"):
        Photo("x", Image.new("RGB", (4, 4)), path=tmp_path / "x.png")
