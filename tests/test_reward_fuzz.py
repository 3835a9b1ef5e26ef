"""Rewards never raise and stay in [0, 1] on any text, in every mode (protocol §5), including
adversarial near-misses; plus a long fuzz run (``-m slow``)."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core.modes import MODES
from jrl_core.rewards import REWARDS

CASES = [("letter", "B", 2, 1), ("grid", "2 1\n4 3", 2, 2), ("digit", "3", 2, 2), ("box", "1,2,30,40", 2, 2),
         ("point", "1,2,30,40", 2, 2), ("grid", "1 2 3", 1, 3)]
PIECES = ["<think>", "</think>", "<answer>", "</answer>", "<reason>", "</reason>", "A", "B", "b", "A or B", "1", "2",
          "3", "4", ",", ", ", " ", "\n", "```", "`", ";", "99", "1" * 30, "9" * 500, "x", "é", "１", "\u200b", "-1",
          "2 1\n4 3", "1,2,30,40", "(B)", "\x00"]
NEAR_MISSES = [
    "<think>x</think><answer>A</answer><answer>B</answer>",  # two answer blocks
    "<think></think><answer></answer>",  # empty tags
    "<think>x</think><answer>A or B</answer>",
    "<think>x</think><answer>b</answer>",  # lowercase
    "<think>x</think><answer>```\n2 1\n4 3\n```</answer>",  # fenced grid
    "<think>x</think><answer>1 1\n1 1</answer>",  # duplicated indexes
    "<answer>B</answer><think>x</think>",
    "<think>x<answer>B</answer></think>",
    "B B", "", " ", "\n", "<answer>", "</answer></answer>", "2 1 4 3 5", "0,0,0,0", "9" * 5000,
]
texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(NEAR_MISSES),
    st.builds(lambda a, b: f"<think>{a}</think><answer>{b}</answer>", st.text(max_size=40), st.text(max_size=40)),
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
)


def all_rewards(text: str, case: tuple, mode: str) -> list[float]:
    answer_type, solution, m, n = case
    values = []
    for completions in ([text], [[{"role": "assistant", "content": text}]]):
        for func in REWARDS.values():
            values.extend(func(completions, solution=[solution], answer_type=[answer_type], m=[m], n=[n],
                               think=[MODES[mode].think], mode=[mode]))
    return values


@settings(max_examples=80, deadline=None)
@given(text=texts, case=st.sampled_from(CASES), mode=st.sampled_from(sorted(MODES)))
def test_every_reward_in_every_mode_is_a_float_in_unit_interval(text, case, mode):
    for value in all_rewards(text, case, mode):
        assert isinstance(value, float) and 0.0 <= value <= 1.0


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_never_earn_the_full_letter_reward_with_format(text):
    values = all_rewards(text, ("letter", "A", 2, 1), "thinking")
    accuracy, fmt = values[0], values[1]
    assert not (accuracy == 1.0 and fmt == 1.0)


@pytest.mark.slow
def test_long_fuzz_run_100k_strings():
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\t", "é", "１", "\u200b", "😀", "\x00"]
    modes = sorted(MODES)
    start = time.perf_counter()
    count = 100_000
    for i in range(count):
        kind = i % 3
        if kind == 0:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        elif kind == 1:
            text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        else:
            text = rng.choice(NEAR_MISSES) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
        for value in all_rewards(text, CASES[i % len(CASES)], modes[i % len(modes)]):
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (text, value)
    elapsed = time.perf_counter() - start
    print(f"\nfuzzed {count} strings x {len(REWARDS)} rewards x 2 forms in {elapsed:.1f} s")
