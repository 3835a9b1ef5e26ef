"""Rewards never raise and stay in [0, 1] on any text, in every mode (protocol §5), including
adversarial near-misses; every parser is linear (1 MB adversarial strings in milliseconds); plus a long
fuzz run (``-m slow``)."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrl_core.modes import MODES
from jrl_core.rewards import REWARDS, extract_answer, format_ok

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


# ---------------------------------------------------------------- linear time on adversarial megabytes

MEGABYTE = 1 << 20
#: Seconds one 1 MB string may take through every reward, extraction and format check of one answer
#: type and mode (each takes milliseconds; the quadratic parsers took 22-51 s on 16-80 kB).
BOUND_S = 5.0
UNITS = ["<answer>", "</answer>", "<think>", "</think>", "<reason>", "<think></think>", "<answer></answer>", "1", "9",
         "1,", "1, ", "1,\n", "1 ", "2 1\n", "A", "b", "(A)", "(", " ", "\n", "`", ";", "answer ", "<answer>1,"]
WRAPS = ["{}", "<think>x</think><answer>{}", "<think>x</think><answer>{}</answer>", "<answer>{}</answer><reason>x",
         "{}</think><answer>1,2,3,4</answer>"]


def megabyte(unit: str, wrap: str = "{}") -> str:
    return wrap.format(unit * (MEGABYTE // len(unit)))


def run_everything(text: str, case: tuple, mode: str) -> float:
    """Seconds to extract, check the format (paper and strict) and score ``text`` with every reward."""
    answer_type, solution, m, n = case
    start = time.perf_counter()
    extract_answer(text, mode=mode)
    format_ok(text, answer_type, m, n, mode=mode)
    format_ok(text, answer_type, m, n, mode=mode, strict=True)
    for func in REWARDS.values():
        func([text], solution=[solution], answer_type=[answer_type], m=[m], n=[n], mode=[mode])
    return time.perf_counter() - start


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}x{c[3]}")
@pytest.mark.parametrize("text", [megabyte("<answer>"), megabyte("1"), megabyte("1,"), megabyte("<think>"),
                                  megabyte("1", "<think>x</think><answer>{}</answer>")],
                         ids=["open-tags", "digit-run", "comma-list", "think-tags", "tagged-digit-run"])
def test_known_quadratic_inputs_are_read_in_linear_time(text, case):
    for mode in MODES:
        assert run_everything(text, case, mode) < BOUND_S


@settings(max_examples=25, deadline=None)
@given(unit=st.lists(st.sampled_from(UNITS), min_size=1, max_size=3).map("".join), wrap=st.sampled_from(WRAPS),
       case=st.sampled_from(CASES), mode=st.sampled_from(sorted(MODES)))
def test_any_repeated_megabyte_is_read_in_linear_time(unit, wrap, case, mode):
    assert run_everything(megabyte(unit, wrap), case, mode) < BOUND_S
