"""Answer extraction and rewards (jrl_core.rewards; protocol §4-5)."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core.modes import MODES
from jrl_core.rewards import (
    PAPER_REWARD_WEIGHTS,
    REWARDS,
    accuracy_reward,
    binary_accuracy_reward,
    box_iou,
    completion_text,
    connection_accuracy_reward,
    extract_answer,
    format_reward,
    get_reward,
    parse_box,
    parse_digit,
    parse_grid,
    parse_letter,
    strict_format_reward,
)


def acc(text, solution, answer_type, m=None, n=None, think=False):
    return accuracy_reward([text], [solution], [answer_type], [m], [n], [think])[0]


def fmt(text, answer_type, m=None, n=None, think=False):
    return format_reward([text], [answer_type], [m], [n], [think])[0]


# ---------------------------------------------------------------- extraction (§4)


def test_extract_answer_takes_first_answer_block_stripped():
    assert extract_answer("<think>x</think><answer> B </answer><answer>C</answer>", think=True) == "B"


def test_extract_answer_without_tags_is_the_whole_output():
    assert extract_answer("  B  ", think=True) == "B"
    assert extract_answer("<answer>B</answer>", think=False) == "<answer>B</answer>"


def test_parse_grid_accepts_separators_and_rejects_bad_tokens():
    assert parse_grid("```\n2 1\n4 3\n```", 2, 2) == [2, 1, 4, 3]
    assert parse_grid("2, 1; 4,3", 2, 2) == [2, 1, 4, 3]
    assert parse_grid("2 1 5 3", 2, 2) is None  # out of range
    assert parse_grid("2 1 4", 2, 2) is None  # wrong length
    assert parse_grid("[2, 1]", 2, 1) is None  # brackets are not separators
    assert parse_grid("１ 2", 2, 1) is None  # non-ASCII digits


def test_parse_letter_is_the_last_capital_letter():
    assert parse_letter("The answer is (C)") == "C"
    assert parse_letter("A or B") == "B"
    assert parse_letter("no capitals") is None


def test_parse_digit_and_box_take_the_first_match():
    assert parse_digit("position 12, not 3") == 12
    assert parse_box("box: 10, 20,30,40 and 1,2,3,4") == [10.0, 20.0, 30.0, 40.0]
    assert parse_box("10, 20, 30") is None


# ---------------------------------------------------------------- accuracy by answer type (§5)


def test_grid_accuracy_is_fractional_by_default():
    assert acc("2 1 4 3", "2 1\n4 3", "grid", 2, 2) == 1.0
    assert acc("2 1 3 4", "2 1\n4 3", "grid", 2, 2) == 0.5
    assert acc("2 1 3", "2 1\n4 3", "grid", 2, 2) == 0.0


def test_grid_binary_and_connection_variants():
    assert binary_accuracy_reward(["2 1 3 4"], ["2 1\n4 3"], ["grid"], [2], [2], [False]) == [0.0]
    # rows swapped: both horizontal adjacencies kept, both vertical ones broken
    assert connection_accuracy_reward(["3 4 1 2"], ["1 2\n3 4"], ["grid"], [2], [2], [False]) == [0.5]
    assert connection_accuracy_reward(["1 2 3 4"], ["1 2\n3 4"], ["grid"], [2], [2], [False]) == [1.0]


def test_letter_accuracy_case_insensitive_on_last_capital():
    assert acc("B", "B", "letter") == 1.0
    assert acc("A or B", "A", "letter") == 0.0
    assert acc("b", "B", "letter") == 1.0  # no capital: the whole answer, compared case-insensitively
    assert acc("the answer is b", "B", "letter") == 0.0


def test_digit_accuracy_is_numeric_equality():
    assert acc("<answer>07</answer>", "7", "digit", think=True) == 1.0
    assert acc("8", 7, "digit") == 0.0


def test_box_accuracy_is_iou():
    assert acc("0,0,10,10", "0,0,10,10", "box") == 1.0
    assert acc("0,0,10,10", [5, 0, 15, 10], "box") == pytest.approx(1 / 3)
    assert acc("20, 20, 30, 30", "0,0,10,10", "box") == 0.0
    assert box_iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0  # empty union


def test_point_accuracy_is_centre_in_box():
    assert acc("0,0,10,10", "4,4,8,8", "point") == 1.0
    assert acc("0,0,4,4", "4,4,8,8", "point") == 0.0


def test_unknown_answer_type_raises():
    with pytest.raises(ValueError, match="answer_type"):
        acc("A", "A", "colour")


# ---------------------------------------------------------------- format (§5)


def test_thinking_format_requires_whole_string_and_valid_answer():
    assert fmt("<think>hmm</think>\n<answer>B</answer>", "letter", think=True) == 1.0
    assert fmt("<think>hmm</think><answer>B</answer> trailing", "letter", think=True) == 0.0
    assert fmt("<think>x</think><answer>2 1\n3 4</answer>", "grid", 2, 2, think=True) == 1.0
    assert fmt("<think>x</think><answer>12</answer>", "digit", think=True) == 1.0
    assert fmt("<think>x</think><answer>1,2,3,4</answer>", "box", think=True) == 1.0


def test_non_thinking_format_per_answer_type():
    assert fmt("B", "letter") == 1.0
    assert fmt("B\n", "letter") == 0.0
    assert fmt("(B)", "letter") == 0.0
    assert fmt("12", "digit") == 1.0 and fmt("12.", "digit") == 0.0
    assert fmt("2 1\n3 4", "grid", 2, 2) == 1.0 and fmt("2 1 3", "grid", 2, 2) == 0.0
    assert fmt("1, 2, 3, 4", "box") == 1.0 and fmt("1 2 3 4", "box") == 0.0


@pytest.mark.parametrize("text", [
    "<think>x</think><answer>(A)</answer>",
    "<think></think><answer>The answer is A.</answer>",
    "<think>x</think>\n<answer>B or B</answer>",
])
def test_paper_format_extracts_the_letter_first_then_checks_it(text):
    assert fmt(text, "letter", think=True) == 1.0


@pytest.mark.parametrize("text", [
    "<think>x</think><answer>(A)</answer>",
    "<think></think><answer>The answer is A.</answer>",
    "<think>x</think>\n<answer>B or B</answer>",
])
def test_strict_format_variant_asks_for_the_bare_letter(text):
    assert strict_format_reward([text], ["letter"], think=[True]) == [0.0]


def test_strict_format_is_registered_and_not_a_default():
    assert get_reward("strict_format") is strict_format_reward
    assert all("strict_format" not in mode.rewards for mode in MODES.values())
    assert "not the paper's rule" in strict_format_reward.__doc__


# Answer content → (paper format in a tagged mode, strict format in a tagged mode, non-thinking format of
# the same text). The paper's rule: extract the value (protocol §4), then check it (§5).
FORMAT_CASES = [
    ("letter", "A", 1, 1, 1), ("letter", "(A)", 1, 0, 0), ("letter", "The answer is A.", 1, 0, 0),
    ("letter", "b", 0, 0, 0), ("letter", "", 0, 0, 0),
    ("digit", "3", 1, 1, 1), ("digit", "position 3", 1, 0, 0), ("digit", "3.", 1, 0, 0), ("digit", "three", 0, 0, 0),
    ("grid", "2 1\n4 3", 1, 1, 1), ("grid", "```\n2 1\n4 3\n```", 1, 1, 1), ("grid", "2 1 4", 0, 0, 0),
    ("grid", "grid: 2 1 4 3", 0, 0, 0),
    ("box", "1, 2, 30, 40", 1, 1, 1), ("box", "box (1,2,30,40)", 1, 1, 1), ("box", "1 2 30 40", 0, 0, 0),
    ("point", "1, 2, 30, 40", 1, 1, 1), ("point", "at 1,2,30,40", 1, 1, 1), ("point", "1, 2, 30", 0, 0, 0),
]
WRAP = {
    "think_answer": "<think>x</think><answer>{}</answer>",
    "answer_reason": "<answer>{}</answer><reason>x</reason>",
    "think_optional": "<answer>{}</answer>",
    "direct": "{}",
    "none": "{}",
}


def _expected(layout: str, tagged: int, direct: int) -> float:
    return {"none": 1.0, "direct": float(direct)}.get(layout, float(tagged))


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(("answer_type", "content", "paper", "strict", "direct"), FORMAT_CASES)
def test_format_reward_extracts_then_validates_in_every_mode(mode, answer_type, content, paper, strict, direct):
    layout = MODES[mode].layout
    size = (2, 2) if answer_type == "grid" else (None, None)  # m, n are only read for grids
    columns = {"answer_type": [answer_type], "m": [size[0]], "n": [size[1]], "mode": [mode]}
    text = WRAP[layout].format(content)
    assert format_reward([text], **columns) == [_expected(layout, paper, direct)]
    assert strict_format_reward([text], **columns) == [_expected(layout, strict, direct)]


def test_grid_format_without_m_and_n_is_a_clear_error():
    with pytest.raises(ValueError, match="m and n"):
        format_reward(["2 1"], ["grid"], mode=["non_thinking"])


def test_rewards_read_the_mode_column_without_think_or_grid_size():
    assert accuracy_reward(["<think>x</think><answer>(A)</answer>"], ["A"], ["letter"], mode=["thinking"]) == [1.0]
    assert format_reward(["<answer>B</answer><reason>x</reason>"], ["letter"], mode=["think_after_answer"]) == [1.0]


def test_paper_weights_are_one_and_a_half():
    assert PAPER_REWARD_WEIGHTS == (1.0, 0.5)


def test_reward_registry_lookup():
    assert get_reward("accuracy") is accuracy_reward and get_reward("format") is format_reward
    with pytest.raises(ValueError, match="accuracy"):
        get_reward("cosine")


# ---------------------------------------------------------------- TRL forms


def test_conversational_completions_are_read():
    plain = [{"role": "assistant", "content": "B"}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<think>x</think>"},
                                               {"type": "text", "text": "<answer>B</answer>"}]}]
    assert completion_text(parts) == "<think>x</think><answer>B</answer>"
    assert accuracy_reward([plain, parts], ["B", "B"], ["letter"] * 2, [2, 2], [1, 1], [False, True]) == [1.0, 1.0]
    assert format_reward([plain, parts], ["letter"] * 2, [2, 2], [1, 1], [False, True]) == [1.0, 1.0]


def test_base_model_think_tag_is_restored_from_prompt():
    prompts = ["User: ...\n\nAssistant: <think>"]
    assert format_reward(["hmm</think><answer>A</answer>"], ["letter"], [2], [1], [True], prompts=prompts) == [1.0]


def test_scalar_columns_are_broadcast():
    assert accuracy_reward(["A", "B"], "A", "letter", 2, 1, False) == [1.0, 0.0]


def test_column_length_mismatch_raises():
    with pytest.raises(ValueError, match="solution"):
        accuracy_reward(["A", "B"], ["A"], "letter", 2, 1, False)


# ---------------------------------------------------------------- adversarial near-misses


def test_multiple_answer_blocks_score_the_first_and_fail_format():
    text = "<think>x</think><answer>A</answer><answer>B</answer>"
    assert acc(text, "A", "letter", think=True) == 1.0
    assert acc(text, "B", "letter", think=True) == 0.0
    assert fmt(text, "letter", think=True) == 0.0


def test_empty_tags_score_zero():
    text = "<think></think><answer></answer>"
    assert acc(text, "A", "letter", think=True) == 0.0
    assert fmt(text, "letter", think=True) == 0.0
    assert acc(text, "1 2", "grid", 2, 1, think=True) == 0.0


def test_fenced_grid_is_accepted():
    text = "<think>x</think><answer>```\n2\n1\n```</answer>"
    assert acc(text, "2\n1", "grid", 2, 1, think=True) == 1.0
    assert fmt(text, "grid", 2, 1, think=True) == 1.0


def test_duplicated_indexes_get_partial_credit_like_the_reference():
    assert acc("1 1", "2\n1", "grid", 2, 1) == 0.5
    assert fmt("1 1", "grid", 2, 1) == 1.0


def test_lowercase_letter_fails_format():
    assert fmt("b", "letter") == 0.0
    assert fmt("<think>x</think><answer>b</answer>", "letter", think=True) == 0.0


# ---------------------------------------------------------------- never raise, always in [0, 1]

CASES = [("letter", "B", 2, 1), ("grid", "2 1\n4 3", 2, 2), ("digit", "3", 2, 2), ("box", "1,2,30,40", 2, 2),
         ("point", "1,2,30,40", 2, 2)]
texts = st.one_of(
    st.text(max_size=200),
    st.builds(lambda a, b: f"<think>{a}</think><answer>{b}</answer>", st.text(max_size=40), st.text(max_size=40)),
    st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "A", "b", "1", "2", "3", "4",
                              ",", " ", "\n", "`", "99", "x"]), max_size=30).map("".join),
)


@settings(max_examples=150, deadline=None)
@given(text=texts, case=st.sampled_from(CASES), think=st.booleans())
def test_rewards_are_floats_in_unit_interval_on_any_text(text, case, think):
    answer_type, solution, m, n = case
    conversational = [{"role": "assistant", "content": text}]
    for completions in ([text], [conversational]):
        for func in REWARDS.values():
            kwargs = {"solution": [solution]} if "solution" in inspect.signature(func).parameters else {}
            (value,) = func(completions, answer_type=[answer_type], m=[m], n=[n], think=[think], **kwargs)
            assert isinstance(value, float) and 0.0 <= value <= 1.0
