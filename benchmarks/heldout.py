"""Shared by the nano experiment scripts: the recipe they train and score (``nano/rq1_2x1_pair`` by default, so a
benchmark trains on the same puzzles as ``jrl train`` and scores the same fixed 300 held-out 2x1 pair puzzles,
through ``jrl_core.experiment``), a greedy evaluation that returns accuracy / valid share / share of "A", and a
callback that runs it every N optimizer steps (GRPO or SFT)."""
from transformers import TrainerCallback

from jrl_core import evaluate, experiment, nano

RECIPE = "nano/rq1_2x1_pair"
"""The recipe the scripts start from (2x1 pair, non-thinking: Jigsaw-R1 Table 1's setting)."""
N_TEST = 300
"""Held-out puzzles per evaluation (the recipe's ``n_test`` unless a script overrides it)."""

SPEC = experiment.load_recipe(RECIPE).puzzle_spec()
"""The recipe's puzzle (2x1 pair, non-thinking), for scripts that build probe rows themselves."""


def load(recipe: str = RECIPE, overrides: dict | None = None):
    """``(exp, model, processor, held-out rows)`` for a recipe with ``overrides`` (the keys of
    ``jrl train --set``; ``{"model": CKPT}`` picks a checkpoint folder, ``"nano"`` the default build):
    the model as ``run_experiment`` loads it, the rows of ``experiment.heldout_rows`` (``N_TEST`` by default)."""
    exp = experiment.load_recipe(recipe, {"n_test": N_TEST, **(overrides or {})})
    model, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano), dtype=exp.dtype)
    return exp, model, processor, experiment.heldout_rows(exp, view_size=nano.view_size(processor))


def max_new_tokens(exp) -> int:
    """The evaluation budget ``run_experiment`` uses: ``eval_max_new_tokens``, else the GRPO completion length."""
    return exp.eval_max_new_tokens or exp.grpo_settings().max_completion_length


def test_rows(n: int = N_TEST, view_size: int = nano.NanoConfig().image_size):
    """The recipe's fixed held-out set (``experiment.heldout_rows``) of ``n`` puzzles cut at ``view_size`` px
    (the default nano build's input side)."""
    return experiment.heldout_rows(experiment.load_recipe(RECIPE, {"n_test": n}), view_size=view_size)


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
