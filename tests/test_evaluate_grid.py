"""The jigsaw evaluation grid (Jigsaw-R1 Tables 1 and 7) and the generation backends."""

import math
import sys

import pandas as pd
import pytest

from jrl_core import evaluate, nano, rewards
from jrl_core.puzzles import PuzzleSpec


@pytest.fixture(scope="module")
def tiny_model(nano_dir):
    return nano.load_model(str(nano_dir))


def _fake_generate(answer):
    """A stand-in for evaluate.generate: completion = answer(row) for every row."""
    def gen(model, processor, rows, **kwargs):
        return [answer(r) for r in rows]
    return gen


def _half_right(solution: str) -> str:
    """The 2x2 grid with its last two positions swapped: two of four right."""
    v = rewards.parse_grid(solution, 2, 2)
    return f"{v[0]} {v[1]}\n{v[3]} {v[2]}"


def test_grid_has_one_row_per_cell_with_the_paper_random_rows(tiny_model):
    model, processor = tiny_model
    df = evaluate.evaluate_grid(model, processor, sizes=[(2, 1), (2, 2)], n_items=3, image_size=56,
                                max_new_tokens_think=4, progress=False)
    assert len(df) == 2 * 2 * 2
    assert list(df[["size", "question_type", "think"]].itertuples(index=False, name=None))[:4] == [
        ("2x1", "pair", False), ("2x1", "pair", True), ("2x1", "full", False), ("2x1", "full", True)]
    rnd = df.set_index(["size", "question_type", "think"])["random"]
    assert rnd[("2x1", "pair", False)] == 0.5 and rnd[("2x2", "pair", True)] == 0.125
    assert rnd[("2x1", "full", False)] == 0.5 and rnd[("2x2", "full", True)] == pytest.approx(1 / 24)
    assert (df["n"] == 3).all()
    assert ((df["ci_low"] <= df["accuracy"]) & (df["accuracy"] <= df["ci_high"])).all()
    assert df["accuracy"].between(0, 1).all() and df["valid"].between(0, 1).all()
    assert (df["score"] >= df["accuracy"]).all()
    assert set(df.loc[df["think"], "max_new_tokens"]) == {4}
    assert set(df["mode"]) == {"thinking", "non_thinking"}


def test_grid_keeps_and_saves_every_cell_table(tiny_model, tmp_path):
    model, processor = tiny_model
    df, tables = evaluate.evaluate_grid(model, processor, sizes=[(2, 1)], question_types=("pair",),
                                        thinks=(False,), n_items=4, image_size=56, progress=False,
                                        save_dir=tmp_path, return_tables=True)
    assert set(tables) == {("2x1", "pair", "non_thinking")}
    table = tables[("2x1", "pair", "non_thinking")]
    assert len(table) == 4 and {"completion", "solution", "score", "correct", "format"} <= set(table.columns)
    saved = pd.read_csv(tmp_path / "2x1_pair_non_thinking.csv")
    assert len(saved) == 4
    assert pd.read_csv(tmp_path / "grid_summary.csv")["accuracy"].tolist() == pytest.approx(df["accuracy"].tolist())


def test_full_questions_report_exact_accuracy_and_fractional_score(monkeypatch):
    monkeypatch.setattr(evaluate, "generate", _fake_generate(lambda r: _half_right(r["solution"])))
    df = evaluate.evaluate_grid(None, None, sizes=[(2, 2)], question_types=("full",), thinks=(False,),
                                n_items=6, image_size=56, shuffle_mn=False, progress=False)
    assert df.loc[0, "accuracy"] == 0.0
    assert df.loc[0, "score"] == pytest.approx(0.5)
    assert df.loc[0, "valid"] == 1.0


def test_right_answers_in_thinking_format_score_one(monkeypatch):
    monkeypatch.setattr(evaluate, "generate",
                        _fake_generate(lambda r: f"<think>look</think> <answer>{r['solution']}</answer>"))
    df = evaluate.evaluate_grid(None, None, sizes=[(3, 1)], thinks=(True,), n_items=5, image_size=56,
                                progress=False)
    assert df["accuracy"].tolist() == [1.0, 1.0] and df["valid"].tolist() == [1.0, 1.0]
    assert df["ci_high"].tolist() == [1.0, 1.0] and (df["ci_low"] > 0.5).all()


def test_grid_accepts_mode_names(monkeypatch):
    monkeypatch.setattr(evaluate, "generate", _fake_generate(lambda r: r["solution"]))
    df = evaluate.evaluate_grid(None, None, sizes=[(2, 1)], question_types=("pair",),
                                thinks=("no_thinking_rl",), n_items=2, image_size=56, progress=False)
    assert df.loc[0, "mode"] == "no_thinking_rl" and not df.loc[0, "think"]


def test_grid_test_sets_are_fixed_by_the_seed(monkeypatch):
    seen = []
    monkeypatch.setattr(evaluate, "generate", _fake_generate(lambda r: seen.append(r["solution"]) or "A"))
    for _ in range(2):
        evaluate.evaluate_grid(None, None, sizes=[(2, 2)], question_types=("full",), thinks=(False,),
                               n_items=5, image_size=56, progress=False)
    assert seen[:5] == seen[5:]


def test_grid_rejects_empty_axes_and_zero_items():
    with pytest.raises(ValueError, match="at least one size"):
        evaluate.evaluate_grid(None, None, sizes=[])
    with pytest.raises(ValueError, match="n_items"):
        evaluate.evaluate_grid(None, None, n_items=0)


def test_default_caps_fit_the_answer():
    assert evaluate.default_max_new_tokens("pair", 2, 2) == 4
    assert evaluate.default_max_new_tokens("full", 4, 1) == 20


def test_evaluate_uses_the_rows_random_rate_when_given(monkeypatch):
    monkeypatch.setattr(evaluate, "generate", _fake_generate(lambda r: "A"))
    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1), n_items=4, image_size=56)
    for r, p in zip(rows, (0.5, 0.25, 0.25, 0.5), strict=True):
        r["random"] = p
    assert evaluate.evaluate(None, None, rows, progress=False).random == pytest.approx(0.375)
    for r in rows:
        r.pop("random")
        r["question_type"] = "something_else"
    assert math.isnan(evaluate.evaluate(None, None, rows, progress=False).random)


def test_batched_and_per_sample_generation_agree(tiny_model):
    model, processor = tiny_model
    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1), n_items=4, image_size=56)
    batched = evaluate.generate(model, processor, rows, batch_size=4, max_new_tokens=3, progress=False)
    single = evaluate.generate(model, processor, rows, batch_size=1, max_new_tokens=3, progress=False)
    assert batched == single


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        evaluate.generate(None, None, [], backend="onnx")


def test_vllm_backend_without_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ImportError, match="pip install vllm"):
        evaluate.generate("some/model", None, [], backend="vllm")


def test_answer_cells_find_a_prompt_variant_answered_by_a_constant(monkeypatch):
    """A model that answers "B" whenever option (A) reads "1 is directly below 2" and is right otherwise
    scores 0 in exactly that variant's A cell and 1 in every other cell (the GRPO failure answer_cells shows)."""
    from jrl_core.rows import prompt_text

    spec = PuzzleSpec(m=2, n=1, question_type="pair", shuffle_mn=False)
    rows = evaluate.test_rows(spec, n_items=80, image_size=56)

    def answer(row):
        return "B" if "(A) 1 is directly below 2" in prompt_text(row) else row["solution"]

    monkeypatch.setattr(evaluate, "generate", _fake_generate(answer))
    table = evaluate.evaluate(None, None, rows, progress=False).table
    cells = evaluate.answer_cells(rows, table)
    assert set(cells["letter"]) == {"A", "B"} and cells["n"].sum() == len(rows)
    bad = cells[(cells["answer"] == "1 is directly below 2") & (cells["letter"] == "A")]
    assert len(bad) == 1 and bad["accuracy"].item() == 0.0
    assert (cells.drop(bad.index)["accuracy"] == 1.0).all()
    with pytest.raises(ValueError, match="rows but"):
        evaluate.answer_cells(rows[:-1], table)
    full = evaluate.test_rows(PuzzleSpec(m=2, n=1, question_type="full", shuffle_mn=False), n_items=2, image_size=56)
    with pytest.raises(ValueError, match="not a multiple-choice row"):
        evaluate.answer_cells(full, table.iloc[:2])


def test_seed_breakdown_by_photo_and_cell_and_its_heatmap(monkeypatch):
    """seed_breakdown splits each seed's before/after tables by photo and answer cell; the heatmap draws them."""
    import matplotlib

    matplotlib.use("Agg")
    from jrl_core import experiment, plots
    from jrl_core.stats import photo_of

    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1, question_type="pair", shuffle_mn=False), n_items=40, image_size=56)
    tables = {}
    for name, answer in (("right", lambda r: r["solution"]), ("always A", lambda r: "A")):
        monkeypatch.setattr(evaluate, "generate", _fake_generate(answer))
        tables[name] = evaluate.evaluate(None, None, rows, progress=False)  # an EvalResult, as a fresh run keeps
    res = {"seeds": {0: {"eval_before": tables["always A"].table, "eval_after": tables["right"]},
                     3: {"eval_before": tables["always A"].table, "eval_after": tables["always A"]}}}
    frame = experiment.seed_breakdown(res, rows)
    assert set(frame["seed"]) == {0, 3} and set(frame["stage"]) == {"before", "after"}
    after0 = frame[(frame["seed"] == 0) & (frame["stage"] == "after")]
    assert (after0["accuracy"] == 1.0).all()
    cells = frame[(frame["seed"] == 3) & (frame["stage"] == "after") & (frame["by"] == "answer cell")]
    assert set(cells.loc[cells["group"].str.endswith("(A)"), "accuracy"]) == {1.0}
    assert set(cells.loc[cells["group"].str.endswith("(B)"), "accuracy"]) == {0.0}
    photos = frame[(frame["seed"] == 0) & (frame["stage"] == "after") & (frame["by"] == "photo")]
    assert set(photos["group"]) == {photo_of(r["image_id"]) for r in rows} and photos["n"].sum() == len(rows)
    fig = plots.breakdown_heatmap(frame, title="t")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "after training"
    with pytest.raises(ValueError, match="by='nothing'"):
        plots.breakdown_heatmap(frame, by="nothing")
    with pytest.raises(ValueError, match="other puzzles"):
        experiment.seed_breakdown(res, rows[::-1])


def test_choice_texts_drop_a_mode_suffix_joined_by_a_space():
    """Think-After-Answer joins its instruction with a space, after the last choice: it is not part of it."""
    for mode in ("think_after_answer", "non_thinking"):
        spec = PuzzleSpec(m=2, n=1, question_type="pair", shuffle_mn=False, mode=mode)
        for row in evaluate.test_rows(spec, n_items=6, image_size=56):
            choices = evaluate.choice_texts(row)
            assert sorted(choices) == ["A", "B"]
            assert all(t.endswith(("1", "2")) and "directly" in t for t in choices.values()), choices
    full = evaluate.test_rows(PuzzleSpec(m=2, n=1, question_type="full", shuffle_mn=False), n_items=1, image_size=56)
    assert evaluate.choice_texts(full[0]) == {}


def test_rollout_cells_show_a_variant_locking_during_training():
    """Steps 1-2: every group mixes right and wrong rollouts. Steps 3-4: the variant "(A) 1 is directly
    below 2" answers B whatever the image (all wrong when A is right), the rest all right. rollout_cells
    shows that cell at accuracy 0 with every group at zero reward std, the others at 1, in window 3-4 only."""
    import pandas as pd

    from jrl_core.rows import prompt_id, prompt_text

    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1, question_type="pair", shuffle_mn=False), n_items=40, image_size=56)
    assert len({prompt_id(r) for r in rows}) == len(rows)
    records = []
    for step in (1, 2, 3, 4):
        for row in rows:
            locked = "(A) 1 is directly below 2" in prompt_text(row) and row["solution"] == "A"
            for g in range(4):
                reward = float(g % 2) if step <= 2 else (0.0 if locked else 1.0)
                records.append({"step": step, "prompt_id": prompt_id(row), "reward_accuracy": reward})
    cells = evaluate.rollout_cells(pd.DataFrame(records), rows, window=2)
    assert set(cells["first_step"]) == {1, 3} and cells.groupby("first_step")["groups"].sum().eq(2 * len(rows)).all()
    early, late = cells[cells["first_step"] == 1], cells[cells["first_step"] == 3]
    assert (early["accuracy"] == 0.5).all() and (early["zero_std"] == 0.0).all()
    assert (late["zero_std"] == 1.0).all()
    bad = late[(late["answer"] == "1 is directly below 2") & (late["letter"] == "A")]
    assert len(bad) == 1 and bad["accuracy"].item() == 0.0
    assert (late.drop(bad.index)["accuracy"] == 1.0).all()
    with pytest.raises(ValueError, match="not in rows"):
        evaluate.rollout_cells(pd.DataFrame(records), rows[:5])
    with pytest.raises(ValueError, match="reward_accuracy"):
        evaluate.rollout_cells(pd.DataFrame(records).drop(columns="reward_accuracy"), rows)
    with pytest.raises(ValueError, match="window"):
        evaluate.rollout_cells(pd.DataFrame(records), rows, window=0)
