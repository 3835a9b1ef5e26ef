"""The answer-type registry (jrl_core.answers; protocol §2-5): parsers, validity, scorers, format lines,
token budgets and random-guess rates, one entry per answer type."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core import answers
from jrl_core.answers import ANSWER_TYPES, ANSWERS, format_line, max_new_tokens, random_rate
from jrl_core.puzzles import random_baseline

# ---------------------------------------------------------------- registry


def test_the_five_answer_types_of_the_protocol():
    assert ANSWER_TYPES == ("grid", "letter", "digit", "box", "point")


def test_unknown_answer_type_lists_the_known_ones():
    with pytest.raises(ValueError, match="grid, letter, digit, box, point"):
        answers.get("colour")


def test_only_grid_needs_the_grid_size():
    assert [name for name, spec in ANSWERS.items() if spec.sized] == ["grid"]
    with pytest.raises(ValueError, match="m and n"):
        answers.get("grid").parse("1 2")


def test_only_letter_is_a_choice_among_options():
    assert [name for name, spec in ANSWERS.items() if spec.choice] == ["letter"]


# ---------------------------------------------------------------- format lines (§3)


@pytest.mark.parametrize(("answer_type", "line"), [
    ("grid", "The final answer should be the position indexes arranged in a 2x3 grid."),
    ("letter", "The final answer should be a single letter."),
    ("digit", "The final answer should be a single number."),
    ("box", "The final answer should be bounding box coordinates, formatted as integers and separated by comma."),
    ("point", "The final answer should be bounding box coordinates, formatted as integers and separated by comma."),
])
def test_format_line_is_the_published_one(answer_type, line):
    assert format_line(answer_type, 2, 3) == line


def test_grid_format_line_needs_m_and_n():
    with pytest.raises(ValueError, match="m and n"):
        format_line("grid")


# ---------------------------------------------------------------- token budgets


@pytest.mark.parametrize(("answer_type", "m", "n", "tokens"), [
    ("grid", 2, 2, 20), ("grid", 4, 1, 20), ("letter", None, None, 4), ("digit", None, None, 8),
    ("box", None, None, 32), ("point", None, None, 32),
])
def test_non_thinking_token_budget(answer_type, m, n, tokens):
    assert max_new_tokens(answer_type, m, n) == tokens


# ---------------------------------------------------------------- random-guess rates (§5, last line)


def test_grid_guess_is_one_over_the_permutations():
    assert random_rate("grid", 3, 1) == pytest.approx(1 / 6)


def test_letter_and_digit_guess_is_one_over_the_options():
    assert random_rate("letter", n_options=4) == 0.25 and random_rate("digit", n_options=8) == 0.125


def test_guess_is_undefined_without_options_and_for_boxes():
    assert math.isnan(random_rate("letter", n_options=1))
    assert math.isnan(random_rate("digit"))  # open counting
    assert math.isnan(random_rate("box", solution=[0, 0, 5, 5], image_size=(10, 10)))


def test_point_guess_is_the_gt_box_share_of_the_image_clipped():
    assert random_rate("point", solution=[0, 0, 5, 10], image_size=(10, 10)) == 0.5
    assert random_rate("point", solution=[-5, 0, 5, 10], image_size=(10, 10)) == 0.5


def test_puzzle_random_baseline_delegates_by_question_type():
    assert random_baseline("pair", 2, 2) == random_rate("letter", n_options=8) == 0.125
    assert random_baseline("single", 2, 2) == random_rate("digit", n_options=4)
    assert random_baseline("full", 2, 2) == random_rate("grid", 2, 2)


# ---------------------------------------------------------------- reading and scoring (§4-5)


def test_letter_accuracy_falls_back_on_the_whole_content():
    letter = answers.get("letter")
    assert letter.read("b") == "b" and letter.score(letter.read("b"), letter.truth("B")) == 1.0
    assert answers.get("digit").read("none") is None


def test_grid_variants_and_other_types_default_scorer():
    grid = answers.get("grid")
    truth = grid.truth("2 1\n4 3", 2, 2)
    assert grid.score([2, 1, 3, 4], truth, 2, 2) == 0.5
    assert grid.score([2, 1, 3, 4], truth, 2, 2, variant="binary") == 0.0
    letter = answers.get("letter")
    assert letter.score("A", "A", variant="binary") == 1.0  # a grid variant scores a letter exactly


def test_unknown_accuracy_variant_raises():
    with pytest.raises(ValueError, match="variant"):
        answers.get("letter").scorer("cosine")


def test_malformed_ground_truth_raises():
    with pytest.raises(ValueError, match="ground-truth"):
        answers.get("digit").truth("seven")
    with pytest.raises(ValueError, match="ground-truth"):
        answers.get("box").truth("1,2,3")


_JUNK = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(["1", "22", ",", ", ", " ", "\n", "A", "b", "`", ";",
                                                                 "9" * 30, "(", ")", "x"]), max_size=25).map("".join))


@settings(max_examples=200, deadline=None)
@given(text=_JUNK, name=st.sampled_from(ANSWER_TYPES))
def test_a_bare_answer_always_parses(text, name):
    spec = answers.get(name)
    if spec.is_bare(text, 2, 2):
        assert spec.parse(text, 2, 2) is not None


@settings(max_examples=300, deadline=None)
@given(_JUNK)
def test_box_parse_is_the_first_match_of_the_unbounded_pattern(text):
    match = re.search(r"([0-9]+),\s*([0-9]+),\s*([0-9]+),\s*([0-9]+)", text)
    expected = None
    if match and all(len(g) <= answers.MAX_DIGITS for g in match.groups()):
        expected = [float(g) for g in match.groups()]
    assert answers.parse_box(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_letter_parse_is_the_last_capital(text):
    capitals = re.findall(r"[A-Z]", text)
    assert answers.parse_letter(text) == (capitals[-1] if capitals else None)
