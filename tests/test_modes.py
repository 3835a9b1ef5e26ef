"""Thinking modes: prompt suffixes, answer extraction, format rules, default rewards (jrl_core.modes,
jrl_core.rewards; protocol §3-5, Think-or-Not-Think §3)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core.modes import MODES, ThinkingMode, answer_block, get_mode, tag_block
from jrl_core.puzzles import PuzzleSpec, build_prompt_text, make_row
from jrl_core.rewards import (
    accuracy_reward,
    equality_reward,
    format_reward,
    mode_rewards,
)

QUESTION = "Q?"


def suffixed(mode: str, answer_type: str = "letter") -> str:
    return build_prompt_text(QUESTION, PuzzleSpec(m=2, n=1, question_type="pair", mode=mode))


# ---------------------------------------------------------------- prompt text per mode (§3)


def test_prompt_thinking():
    assert suffixed("thinking") == (
        "Q?\n\nFirst, output the thinking process within <think> </think> tags. Then, provide the final answer "
        "within <answer> </answer> tags. The final answer should be a single letter."
    )


def test_prompt_non_thinking():
    assert suffixed("non_thinking") == "Q?\n\nDirectly output the final answer. The final answer should be a single letter."


def test_prompt_cls_rl_thinking():
    assert suffixed("cls_rl_thinking") == (
        "Q?\n Please output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    )


def test_prompt_no_thinking_rl():
    assert suffixed("no_thinking_rl") == "Q?\n Please directly output the answer."


def test_prompt_think_after_answer():
    assert suffixed("think_after_answer") == (
        "Q? Please first output the answer in <answer> </answer> tags and then output a brief reasoning process in "
        "<reason> </reason> tags."
    )


def test_prompt_adaptive_thinking():
    assert suffixed("adaptive_thinking") == (
        "Q?\n Please decide whether thinking is needed. If it is, output the thinking process in <think> </think> "
        "and final answer in <answer> </answer> tags; otherwise output only the final answer in <answer> </answer> "
        "tags."
    )


def test_base_model_prompt_prefills_think_only_for_think_first_modes():
    for name, prefix in (("thinking", "<think>"), ("cls_rl_thinking", "<think>"), ("non_thinking", ""),
                         ("think_after_answer", ""), ("adaptive_thinking", ""), ("no_thinking_rl", "")):
        text = build_prompt_text(QUESTION, PuzzleSpec(mode=name), instruct=False)
        assert text.startswith("A conversation between User and Assistant.")
        assert text.endswith("\n\nAssistant: " + prefix)


def test_every_mode_makes_rows_with_its_mode_column():
    for name in MODES:
        row = make_row(_image(), PuzzleSpec(m=2, n=1, question_type="pair", mode=name), seed=0)
        assert row["mode"] == name


def _image():
    from PIL import Image

    return Image.new("RGB", (16, 16), (10, 20, 30))


# ---------------------------------------------------------------- registry


def test_unknown_mode_lists_known_ones():
    with pytest.raises(ValueError, match="adaptive_thinking"):
        get_mode("chain_of_thought")


def test_mode_rejects_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        ThinkingMode(name="x", instruction="", think=True, layout="xml")


def test_default_rewards_per_mode():
    funcs, weights = mode_rewards("thinking")
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward"] and weights == (1.0, 0.5)
    funcs, weights = mode_rewards("no_thinking_rl")
    assert funcs == [equality_reward] and weights == (1.0,)
    assert mode_rewards("cls_rl_thinking")[1] == (1.0, 1.0)


# ---------------------------------------------------------------- extraction and format per mode (§4-5)


def acc(text, solution="B", mode="thinking", answer_type="letter"):
    return accuracy_reward([text], [solution], [answer_type], [2], [1], mode=[mode])[0]


def fmt(text, mode, answer_type="letter"):
    return format_reward([text], [answer_type], [2], [1], mode=[mode])[0]


def test_think_after_answer_format_is_answer_then_reason():
    assert fmt("<answer>B</answer>\n<reason>because</reason>", "think_after_answer") == 1.0
    assert fmt("<reason>because</reason><answer>B</answer>", "think_after_answer") == 0.0
    assert fmt("<answer>B</answer>", "think_after_answer") == 0.0
    assert fmt("<answer>B</answer><reason>x</reason><answer>C</answer>", "think_after_answer") == 0.0
    assert acc("<answer>B</answer><reason>x</reason>", mode="think_after_answer") == 1.0


def test_adaptive_thinking_accepts_both_formats():
    assert fmt("<answer>B</answer>", "adaptive_thinking") == 1.0
    assert fmt("<think>hmm</think> <answer>B</answer>", "adaptive_thinking") == 1.0
    assert fmt("<think>hmm</think>", "adaptive_thinking") == 0.0
    assert fmt("<think>a</think><think>b</think><answer>B</answer>", "adaptive_thinking") == 0.0
    assert fmt("<think><answer>B</answer>", "adaptive_thinking") == 0.0
    assert fmt("B", "adaptive_thinking") == 0.0


def test_cls_rl_format_is_the_think_answer_layout():
    assert fmt("<think>x</think><answer>B</answer>", "cls_rl_thinking") == 1.0
    assert fmt("<answer>B</answer>", "cls_rl_thinking") == 0.0


def test_equality_reward_is_raw_case_sensitive_and_unstripped():
    assert equality_reward(["B"], ["B"]) == [1.0]
    assert equality_reward(["B\n"], ["B"]) == [0.0]
    assert equality_reward([" B"], ["B"]) == [0.0]
    assert equality_reward(["b"], ["B"]) == [0.0]
    assert equality_reward(["(B)"], ["B"]) == [0.0]
    assert equality_reward(["2 1\n4 3"], ["2 1\n4 3"]) == [1.0]
    assert equality_reward([[{"role": "assistant", "content": "B"}]], "B") == [1.0]


def test_no_thinking_rl_has_a_constant_format_reward():
    assert fmt("anything at all", "no_thinking_rl") == 1.0
    assert not get_mode("no_thinking_rl").has_format_reward


def test_mode_column_overrides_think_and_think_still_works_alone():
    text = "<answer>B</answer><reason>x</reason>"
    assert accuracy_reward([text], ["B"], ["letter"], [2], [1], [False], mode=["think_after_answer"]) == [1.0]
    assert accuracy_reward(["<think>x</think><answer>B</answer>"], ["B"], ["letter"], [2], [1], [True]) == [1.0]
    with pytest.raises(ValueError, match="mode"):
        accuracy_reward(["B"], ["B"], ["letter"], [2], [1])


# ---------------------------------------------------------------- linear tag scans (§4 semantics kept)

_TAG_PIECES = ["<answer>", "</answer>", "<think>", "</think>", "<reason>", "</reason>", "x", " ", "\n", "A", "<", ">"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TAG_PIECES), max_size=20).map("".join), st.sampled_from(["answer", "think", "reason"]))
def test_tag_block_is_the_first_lazy_regex_match(text, tag):
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    assert tag_block(text, tag) == (match.group(1) if match else None)


def test_answer_block_takes_the_first_closed_block():
    assert answer_block("<answer>A<answer>B</answer></answer>") == "A<answer>B"
    assert answer_block("<answer>unclosed") is None
