"""Shared by the nano experiment scripts: the fixed 300 held-out 2x1 pair puzzles, a greedy
evaluation that returns accuracy / valid share / share of "A", and a callback that runs it every
N optimizer steps (GRPO or SFT)."""
from transformers import TrainerCallback

from jrl_core import evaluate
from jrl_core.puzzles import PuzzleSpec

SPEC = PuzzleSpec(m=2, n=1, question_type="pair", think=False)


def test_rows(n: int = 300):
    return evaluate.test_rows(SPEC, n_items=n, seed=0)


def heldout_eval(model, processor, rows, max_new_tokens: int = 8) -> dict:
    s = evaluate.evaluate(model, processor, rows, max_new_tokens=max_new_tokens, progress=False).summary()
    return {k: round(s[k], 3) for k in ("accuracy", "valid", "share_A")}


class EvalEvery(TrainerCallback):
    """Greedy held-out evaluation every ``every`` steps (0: never); results in ``.trace``."""

    def __init__(self, processor, rows, every: int, max_new_tokens: int = 8):
        self.processor, self.rows, self.every, self.max_new_tokens = processor, rows, every, max_new_tokens
        self.trace = []

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0:
            self.trace.append({"step": state.global_step,
                               **heldout_eval(model, self.processor, self.rows, self.max_new_tokens)})
            model.train()
            print("eval", self.trace[-1], flush=True)
