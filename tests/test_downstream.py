"""Downstream benchmarks (Jigsaw-R1 Tables 2 and 8): loading local copies in each schema, prompts,
scoring, and clear errors for malformed datasets."""

import json
import math

import datasets
import pytest
from PIL import Image

from jrl_core import downstream, evaluate, nano, rewards
from jrl_core.answers import format_line
from jrl_core.modes import get_mode

W, H = 64, 48


def _img(colour=(200, 30, 30)):
    return Image.new("RGB", (W, H), colour)


def _cv_bench():
    return [{"idx": i, "type": "2D", "task": "Count", "image": _img((i * 40, 90, 90)),
             "question": "How many chairs are in the image?", "choices": ["3", "2", "1", "0"],
             "answer": ["(B)", "(A)", "(D)"][i], "source": "ADE20K", "filename": f"img/2D/count/ade_{i}.png",
             "prompt": "How many chairs are in the image? Select from the following choices.\n(A) 3\n(B) 2\n(C) 1\n(D) 0"}
            for i in range(3)]


def _mmvp():
    return [{"prompt": "Are the butterfly's wings closer to being open or closed? (a) Open (b) Closed",
             "answer": a, "image": _img()} for a in ("(a)", "(b)")]


def _sat():
    return [{"prompt": "Which image was taken after the camera moved left?\n(A) the first\n(B) the second",
             "ground_truth": "B", "image": [_img(), _img((0, 0, 255))]},
            {"prompt": "Is the chair closer than the table?\n(A) yes\n(B) no", "ground_truth": "A", "image": [_img()]}]


def _screenspot():
    return [{"prompt": "Click the settings icon.", "solution": [10, 5, 30, 20], "image": _img(), "data_type": "icon"},
            {"prompt": "Open the menu.", "solution": [40, 30, 60, 46], "image": _img(), "data_type": "text"}]


def _screenspot_raw():
    return [{"file_name": "pc_1.png", "bbox": [0.25, 0.5, 0.5, 1.0], "instruction": "close this window",
             "data_type": "icon", "data_source": "windows", "image": _img()}]


@pytest.fixture()
def local(tmp_path):
    """Small local copies of every benchmark, each saved the way a user would bring it."""
    paths = {}
    paths["cv_bench"] = tmp_path / "cv_bench"
    datasets.Dataset.from_list(_cv_bench()).save_to_disk(str(paths["cv_bench"]))
    paths["mmvp"] = tmp_path / "mmvp.parquet"
    datasets.Dataset.from_list(_mmvp()).to_parquet(str(paths["mmvp"]))
    paths["sat_static"] = tmp_path / "sat"
    datasets.Dataset.from_list(_sat()).save_to_disk(str(paths["sat_static"]))
    clevr = tmp_path / "clevr"
    clevr.mkdir()
    for i in range(2):
        _img((0, 90 * i, 0)).save(clevr / f"scene_{i}.png")
    (clevr / "test.jsonl").write_text("\n".join(json.dumps(
        {"question": "How many cars are there?", "ground_truth": g, "image": f"scene_{i}.png"})
        for i, g in enumerate((3, "0"))))
    paths["super_clevr"] = clevr / "test.jsonl"
    paths["screenspot"] = tmp_path / "screenspot"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(_screenspot()),
                          "train": datasets.Dataset.from_list(_screenspot()[:1])}).save_to_disk(
        str(paths["screenspot"]))
    raw = tmp_path / "screenspot_raw"
    raw.mkdir()
    datasets.Dataset.from_list(_screenspot_raw()).to_parquet(str(raw / "test-00000-of-00001.parquet"))
    paths["screenspot_raw"] = raw
    return paths


def _right(row):
    if row["answer_type"] == "point":
        return ",".join(str(int(v)) for v in row["solution"])
    return str(row["solution"])


def _wrong(row):
    if row["answer_type"] == "letter":
        return "Z"
    if row["answer_type"] == "digit":
        return str(int(row["solution"]) + 1)
    return "1000,1000,1010,1010"


def test_every_schema_loads_into_puzzle_rows(local):
    expected = {"cv_bench": ["B", "A", "D"], "mmvp": ["A", "B"], "sat_static": ["B", "A"],
                "super_clevr": ["3", "0"], "screenspot": [[10, 5, 30, 20], [40, 30, 60, 46]],
                "screenspot_raw": [[16.0, 24.0, 32.0, 48.0]]}
    for name, path in local.items():
        rows = downstream.load_benchmark(name, path)
        assert [r["solution"] for r in rows] == expected[name], name
        for r in rows:
            assert r["answer_type"] == downstream.BENCHMARKS[name].answer_type
            assert r["benchmark"] == name and r["m"] is None and r["n"] is None and r["mode"] == "non_thinking"
            content = r["prompt"][0]["content"]
            images = r["image"] if isinstance(r["image"], list) else [r["image"]]
            assert all(isinstance(i, Image.Image) and i.mode == "RGB" for i in images)
            assert [c for c in content if c["type"] == "image"] == [{"type": "image"}] * len(images)
            assert content[-1]["text"].endswith("Directly output the final answer. " + format_line(r["answer_type"]))


def test_prompt_is_the_question_plus_the_mode_suffix(local):
    plain = downstream.load_benchmark("cv_bench", local["cv_bench"])[0]
    thinking = downstream.load_benchmark("cv_bench", local["cv_bench"], think=True)[0]
    question = _cv_bench()[0]["prompt"]
    assert plain["prompt"][0]["content"][-1]["text"] == question + get_mode("non_thinking").suffix("letter")
    assert thinking["prompt"][0]["content"][-1]["text"] == question + get_mode("thinking").suffix("letter")
    assert thinking["mode"] == "thinking"
    cls = downstream.load_benchmark("cv_bench", local["cv_bench"], mode="cls_rl_thinking")[0]
    assert cls["prompt"][0]["content"][-1]["text"].endswith("final answer in <answer> </answer> tags.")


def test_right_answers_score_one_and_wrong_answers_zero(local):
    for name, path in local.items():
        rows = downstream.load_benchmark(name, path)
        cols = {k: [r[k] for r in rows] for k in ("solution", "answer_type", "m", "n", "mode")}
        assert rewards.accuracy_reward([_right(r) for r in rows], **cols) == [1.0] * len(rows), name
        assert rewards.accuracy_reward([_wrong(r) for r in rows], **cols) == [0.0] * len(rows), name
        thought = [f"<think>hmm</think> <answer>{_right(r)}</answer>" for r in rows]
        assert rewards.accuracy_reward(thought, **{**cols, "mode": ["thinking"] * len(rows)}) == [1.0] * len(rows)


def test_screenspot_scores_the_predicted_box_centre_in_the_gt_box(local):
    row = downstream.load_benchmark("screenspot", local["screenspot"])[0]  # gt 10,5,30,20
    cols = {k: [row[k]] for k in ("solution", "answer_type", "m", "n", "mode")}
    assert rewards.accuracy_reward(["0,0,40,30"], **cols) == [1.0]  # bigger box, centre (20, 15) inside
    assert rewards.accuracy_reward(["28,18,60,40"], **cols) == [0.0]  # overlaps, centre (44, 29) outside


def test_random_rates_follow_the_options_and_the_box_area(local):
    assert [r["random"] for r in downstream.load_benchmark("cv_bench", local["cv_bench"])] == [0.25] * 3
    assert [r["random"] for r in downstream.load_benchmark("mmvp", local["mmvp"])] == [0.5, 0.5]
    ss = downstream.load_benchmark("screenspot", local["screenspot"])[0]
    assert ss["random"] == pytest.approx(20 * 15 / (W * H))
    assert all(math.isnan(r["random"]) for r in downstream.load_benchmark("super_clevr", local["super_clevr"]))


def test_limit_split_and_optional_columns(local):
    rows = downstream.load_benchmark("cv_bench", local["cv_bench"], limit=2)
    assert len(rows) == 2 and rows[0]["task"] == "Count" and rows[0]["source"] == "ADE20K"
    assert rows[0]["image_id"] == "0"
    assert len(downstream.load_benchmark("screenspot", local["screenspot"], split="train")) == 1
    with pytest.raises(downstream.BenchmarkUnavailableError, match="splits"):
        downstream.load_benchmark("screenspot", local["screenspot"], split="validation")


def test_missing_column_names_the_benchmark_the_columns_and_the_fix(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in _cv_bench()]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(downstream.SchemaError) as err:
        downstream.load_benchmark("cv_bench", tmp_path / "bad")
    msg = str(err.value)
    assert "cv_bench" in msg and "['answer']" in msg and "rename_column" in msg and "nyu-visionx/CV-Bench" in msg


def test_raw_screenspot_layout_is_pointed_to_its_loader(local):
    with pytest.raises(downstream.SchemaError, match="screenspot_raw"):
        downstream.load_benchmark("screenspot", local["screenspot_raw"])


@pytest.mark.parametrize("name, rows, column, value", [
    ("mmvp", _mmvp, "answer", "maybe"),
    ("cv_bench", _cv_bench, "answer", "(F)"),
    ("super_clevr", lambda: [{"question": "How many?", "ground_truth": "three", "image": _img()}],
     "ground_truth", "three"),
    ("screenspot", _screenspot, "solution", [1, 2, 3]),
])
def test_malformed_answers_raise_naming_the_row(tmp_path, name, rows, column, value):
    data = rows()
    data[-1][column] = value
    if name == "screenspot":  # keep the column type consistent for Arrow
        data = [{**r, "solution": [float(v) for v in r["solution"]]} for r in data]
    datasets.Dataset.from_list(data).save_to_disk(str(tmp_path / name))
    with pytest.raises(downstream.SchemaError, match=rf"{name} .* row {len(data) - 1}"):
        downstream.load_benchmark(name, tmp_path / name)


def test_non_image_values_are_rejected(tmp_path):
    data = [{"prompt": "Q? (A) x (B) y", "answer": "A", "image": "no/such/file.png"}]
    datasets.Dataset.from_list(data).save_to_disk(str(tmp_path / "m"))
    with pytest.raises(downstream.SchemaError, match="column 'image'"):
        downstream.load_benchmark("mmvp", tmp_path / "m")


def test_unreachable_hub_id_says_how_to_bring_a_local_copy(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(downstream.BenchmarkUnavailableError, match="save_to_disk"):
        downstream.load_benchmark("mmvp")


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(ValueError, match="cv_bench"):
        downstream.load_benchmark("imagenet")


def test_rows_evaluate_on_the_nano_model_including_multi_image_questions(local, nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    rows = downstream.load_benchmark("sat_static", local["sat_static"])
    res = evaluate.evaluate(model, processor, rows, max_new_tokens=2, progress=False)
    assert res.n == 2 and res.random == 0.5 and list(res.table["task"]) == ["sat_static"] * 2
    df = downstream.evaluate_downstream(model, processor, {k: local[k] for k in ("mmvp", "super_clevr")},
                                        max_new_tokens=2, progress=False)
    assert list(df["benchmark"]) == ["mmvp", "super_clevr", "AVG"]
    assert df.loc[2, "accuracy"] == pytest.approx(df.loc[:1, "accuracy"].mean())
    assert df.loc[0, "random"] == 0.5 and math.isnan(df.loc[1, "random"])
