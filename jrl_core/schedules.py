"""Step-keyed schedules: the puzzle-size curriculum (protocol §6; Jigsaw-R1 §5 RQ3, Table 3).

The reference switches sizes on a sample counter inside its dataset object, which restarts at zero
when a run resumes from a checkpoint, so a resumed run silently goes back to the first size. Here
the size is a pure function of the trainer's **global step** (:meth:`Curriculum.size_at`) and an
item is a pure function of ``(seed, index, step)`` (:func:`curriculum_row`): a run resumed at step k
sees exactly the sizes and items the uninterrupted run saw from step k on.

Every training row (fixed size or curriculum, GRPO or SFT) is built by :func:`curriculum_row` (row ``i`` is
drawn for global step ``i // prompts_per_step``), and the trainer keeps the dataset order
(``GRPOConfig(shuffle_dataset=False)``, set by :func:`jrl_core.train.grpo_config`), so that step s consumes
rows ``s·P … s·P + P − 1``; the HF Trainer's resume skips the consumed rows.

GRPO-D (protocol §7; OThink-MR1 Eq. 3): the KL coefficient β as a function of the global step,
:func:`grpo_d_beta`, applied to TRL's ``GRPOTrainer`` by :class:`KLScheduleCallback`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback

from jrl_core.images import Photo, view_at
from jrl_core.puzzles import PuzzleSpec, item_seed, make_row

__all__ = ["GRPO_D_PRESETS", "Curriculum", "KLScheduleCallback", "curriculum_row", "curriculum_rows", "grpo_d_beta"]


@dataclass(frozen=True)
class Curriculum:
    """A list of puzzle sizes with the global steps at which the next one starts.

    Attributes:
        sizes: ``(m, n)`` per stage, e.g. ``((3, 1), (4, 1))``; m, n ≥ 1 and m·n ≥ 2.
        boundaries: ``len(sizes) - 1`` strictly increasing steps > 0; stage i covers steps
            ``[boundaries[i-1], boundaries[i])``. The paper's curriculum (README ``--m 3 4 --n 1 1
            --stage 64000 …``, 64 prompts per step) is ``Curriculum(((3, 1), (4, 1)), (1000,))``.

    Raises:
        ValueError: sizes empty or invalid, wrong number of boundaries, or boundaries not strictly
            increasing positive ints; the message names the fix.
    """

    sizes: tuple[tuple[int, int], ...]
    boundaries: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        sizes = tuple(tuple(s) for s in self.sizes)
        boundaries = tuple(self.boundaries)
        if not sizes:
            raise ValueError("Curriculum.sizes is empty; give at least one (m, n), e.g. ((2, 1),).")
        for size in sizes:
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size) \
                    or size[0] * size[1] < 2:
                raise ValueError(f"Curriculum size {size!r} is not (m, n) with ints >= 1 and m*n >= 2.")
        if len(boundaries) != len(sizes) - 1:
            raise ValueError(
                f"Curriculum: {len(sizes)} sizes need {len(sizes) - 1} step boundaries, got {len(boundaries)}."
            )
        previous = 0
        for b in boundaries:
            if isinstance(b, bool) or not isinstance(b, int) or b <= previous:
                raise ValueError(f"Curriculum.boundaries {boundaries!r} must be strictly increasing ints > 0.")
            previous = b
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "boundaries", boundaries)

    @classmethod
    def parse(cls, text: str) -> Curriculum:
        """From ``"3x1:1000,4x1"`` (size, then ``:`` and the step where the next size starts).

        Raises:
            ValueError: malformed text (names it).
        """
        sizes, boundaries = [], []
        try:
            for part in text.split(","):
                size, _, until = part.strip().partition(":")
                m, n = (int(v) for v in size.lower().split("x"))
                sizes.append((m, n))
                if until:
                    boundaries.append(int(until))
        except ValueError:
            raise ValueError(f"Curriculum.parse: {text!r} is not like '3x1:1000,4x1'.") from None
        return cls(tuple(sizes), tuple(boundaries))

    def stage_at(self, step: int) -> int:
        """0-based stage index at global step ``step`` (≥ 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        return bisect.bisect_right(self.boundaries, step)

    def size_at(self, step: int) -> tuple[int, int]:
        """``(m, n)`` at global step ``step`` (≥ 0)."""
        return self.sizes[self.stage_at(step)]


def curriculum_row(
    photos: list[Photo], spec: PuzzleSpec, curriculum: Curriculum, *, seed: int, index: int, step: int,
    view_size: int, split: str = "train", instruct: bool = True, render: bool = True,
) -> dict:
    """The training row for item ``index``, drawn at global step ``step``: the one definition of a training
    row (GRPO and SFT, fixed size or curriculum; the CLI and every notebook reach it through
    :func:`jrl_core.experiment.train_rows`).

    The image is view ``index`` of ``photos`` (:func:`jrl_core.images.view_at` with view seed
    ``f"{split}:{seed}"``, cut at ``view_size`` px: the model's input side); the puzzle is ``spec`` at the size
    ``curriculum.size_at(step)`` with the puzzle seed ``item_seed(f"{split}:{seed}", index)``. A pure function
    of its arguments: the same (seed, index, step) gives the same row byte for byte, on any machine.
    The row also carries ``"step"`` and ``"index"``.

    Args:
        photos: non-empty training photos (``jrl_core.images.load_photos(source, "train")``).
        spec: question type, mode and options; its m, n are replaced by the curriculum's size.
        curriculum: the step -> size schedule (a one-stage curriculum for a fixed size).
        seed: the run seed (varies the views, the puzzles and so the data order).
        index: item index ≥ 0; step: global step ≥ 0 the row is consumed at.
        view_size: side in pixels (``jrl_core.nano.view_size(processor)``).
        split: ``"train"`` (GRPO) or another label (``"sft"``) for an independent draw.
        render: False cuts no view: the puzzle is made from a black image of the same size (``view_at``), so
            the row's prompt, solution and ids are those of the rendered row and only its image differs.

    Raises:
        ValueError: empty ``photos``, negative index/step, or a size the spec rejects.
    """
    if not photos:
        raise ValueError("curriculum_row needs at least one photo; load some with jrl_core.images.load_photos().")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}.")
    m, n = curriculum.size_at(step)
    staged = dataclasses.replace(spec, m=m, n=n)
    view = view_at(photos, index, seed=f"{split}:{seed}", size=view_size, render=render)
    row = make_row(view.image, staged, seed=item_seed(f"{split}:{seed}", index), image_id=view.image_id,
                   instruct=instruct)
    row["step"], row["index"] = step, index
    return row


def curriculum_rows(
    photos: list[Photo], spec: PuzzleSpec, curriculum: Curriculum, *, seed: int, prompts_per_step: int,
    steps: int, view_size: int, start_step: int = 0, split: str = "train", instruct: bool = True,
    render: bool = True,
) -> list[dict]:
    """Rows for global steps ``start_step … steps − 1``, ``prompts_per_step`` per step, in step order: row j
    of step s is :func:`curriculum_row` with ``index = s·prompts_per_step + j``. The trainer must consume
    them in this order (``GRPOConfig(shuffle_dataset=False)``, set by :func:`jrl_core.train.grpo_config`),
    so that step s sees only its stage's size; a run resumed at step k gets the tail of the uninterrupted
    run's list (``start_step=k``), and the HF Trainer's resume skips the consumed rows of the full list.
    ``render=False``: rows without pixels (:func:`curriculum_row`).

    Returns:
        ``(steps − start_step) × prompts_per_step`` rows.
    Raises:
        ValueError: prompts_per_step < 1 or start_step outside [0, steps].
    """
    if prompts_per_step < 1:
        raise ValueError(f"prompts_per_step must be >= 1, got {prompts_per_step}.")
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be in [0, steps={steps}], got {start_step}.")
    return [
        curriculum_row(photos, spec, curriculum, seed=seed, index=s * prompts_per_step + j, step=s,
                       view_size=view_size, split=split, instruct=instruct, render=render)
        for s in range(start_step, steps)
        for j in range(prompts_per_step)
    ]


GRPO_D_PRESETS: dict[str, tuple[float, float]] = {"counting": (0.04, 0.1), "geometry": (0.0, 0.02)}
"""OThink-MR1's ``(β_min, β_max)`` per task (protocol §7)."""


def grpo_d_beta(step: int, total_steps: int, *, beta_min: float, beta_max: float,
                explore_fraction: float = 0.3) -> float:
    """GRPO-D's KL coefficient β at global step ``step`` (OThink-MR1 Eq. 3; protocol §7).

    With t = ``total_steps``, w = ``explore_fraction``·t and β_mid = (β_min + β_max)/2::

        β(s) = β_mid − (β_mid − β_min)·s/w                for 0 ≤ s ≤ w   (β_mid down to β_min)
        β(s) = β_min + (β_max − β_min)·(s − w)/(t − w)    for w < s ≤ t   (β_min up to β_max)

    Steps beyond t are clamped to t (β_max). So β(0) = β_mid, β(w) = β_min, β(t) = β_max.

    Note: the paper's prose says β starts small and increases during training, which disagrees
    with its Eq. 3 (β starts at β_mid and first *decreases* to β_min over the first w steps).
    **Eq. 3 is what runs here**, as the protocol asks.

    Args:
        step: global step s ≥ 0 (the trainer's ``state.global_step``).
        total_steps: t > 0, the run's number of optimizer steps.
        beta_min, beta_max: 0 ≤ β_min ≤ β_max; see :data:`GRPO_D_PRESETS`.
        explore_fraction: w/t, in (0, 1); the paper uses 0.3.
    Returns:
        β(s), a float in [β_min, β_mid] ∪ [β_min, β_max] = [β_min, β_max].
    Raises:
        ValueError: step < 0, total_steps ≤ 0, a negative β, β_min > β_max, or explore_fraction
            outside (0, 1).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be an int > 0, got {total_steps!r}.")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if beta_min < 0 or beta_max < 0:
        raise ValueError(f"β must be >= 0, got beta_min={beta_min}, beta_max={beta_max}.")
    if beta_min > beta_max:
        raise ValueError(f"beta_min={beta_min} > beta_max={beta_max}; swap them.")
    if not 0 < explore_fraction < 1:
        raise ValueError(f"explore_fraction must be in (0, 1) (the paper uses 0.3), got {explore_fraction}.")
    t = total_steps
    s = min(step, t)
    w = explore_fraction * t
    beta_mid = (beta_min + beta_max) / 2
    if s <= w:
        return beta_mid - (beta_mid - beta_min) * s / w
    return beta_min + (beta_max - beta_min) * (s - w) / (t - w)


class KLScheduleCallback(TrainerCallback):
    """Sets TRL ``GRPOTrainer``'s KL coefficient β from ``schedule(global_step)`` at each step.

    TRL reads ``trainer.beta`` when it generates (reference log-probs are computed iff β ≠ 0) and
    in the loss (the KL term is added iff β ≠ 0), so setting it in ``on_step_begin`` — before the
    step's rollouts — changes β for that step without touching trainer code. Callback kwargs carry
    the model and optimizer but not the trainer, so call :meth:`bind` before ``trainer.train()``
    (:func:`jrl_core.train.train_grpo` does it for any callback with a ``bind`` method).

    **Build the trainer with a non-zero β** (e.g. ``GRPOConfig(beta=β_max)``, the schedule's largest
    value): TRL creates the reference model only when ``args.beta != 0`` at construction, and GRPO-D's
    geometry preset has β_min = 0. :meth:`bind` refuses a trainer built with β = 0.

    A step whose β is exactly 0 skips both the reference forward pass and the KL term — consistent
    as long as a step's rollouts are generated and used within that step (TRL's default:
    ``num_iterations=1``, ``steps_per_generation == gradient_accumulation_steps``). With rollouts
    reused across steps, a batch generated at β = 0 lacks reference log-probs that a later β > 0
    step needs, so :meth:`bind` refuses that combination.

    Attributes:
        schedule: ``step -> β``, e.g. :meth:`grpo_d`.
        history: ``(global_step, β)`` for each step begun.
        trainer: the bound trainer, or None.
    Logs:
        ``beta``: the β of the last step begun, added to each training log line (``on_log``); the
        callback moves itself first in the trainer's callback list so that loggers see it.
    """

    def __init__(self, schedule: Callable[[int], float]):
        self.schedule = schedule
        self.history: list[tuple[int, float]] = []
        self.trainer = None

    @classmethod
    def grpo_d(cls, total_steps: int, *, beta_min: float, beta_max: float,
               explore_fraction: float = 0.3) -> KLScheduleCallback:
        """The GRPO-D schedule (:func:`grpo_d_beta`) as a callback; construct the trainer with β = β_max."""
        grpo_d_beta(0, total_steps, beta_min=beta_min, beta_max=beta_max, explore_fraction=explore_fraction)
        return cls(functools.partial(grpo_d_beta, total_steps=total_steps, beta_min=beta_min, beta_max=beta_max,
                                     explore_fraction=explore_fraction))

    def bind(self, trainer) -> KLScheduleCallback:
        """Attach to ``trainer`` (anything with ``.beta``; a ``GRPOTrainer`` is also checked).

        Raises:
            ValueError: a GRPOTrainer built with ``args.beta == 0`` (no reference model), or one
                that reuses rollouts across steps while the schedule reaches β = 0 within
                ``args.max_steps``.
        """
        args = getattr(trainer, "args", None)
        if args is not None and hasattr(args, "num_iterations"):
            if args.beta == 0.0:
                raise ValueError("The trainer was built with beta=0, so TRL made no reference model; "
                                 "build it with a non-zero beta (the schedule's maximum) and let the callback set β.")
            spg = args.steps_per_generation or args.gradient_accumulation_steps
            reused = args.num_iterations > 1 or spg > args.gradient_accumulation_steps
            if reused and any(self.schedule(s) == 0.0 for s in range(max(args.max_steps, 0))):
                raise ValueError("The schedule reaches β = 0 while rollouts are reused across steps "
                                 "(num_iterations > 1 or steps_per_generation > gradient_accumulation_steps); "
                                 "TRL then skips reference log-probs a later step needs. Use beta_min > 0 "
                                 "or num_iterations=1 and the default steps_per_generation.")
        handler = getattr(trainer, "callback_handler", None)
        if handler is not None and self in handler.callbacks:
            handler.callbacks.remove(self)
            handler.callbacks.insert(0, self)  # so TensorBoard and the metrics table see logs["beta"]
        self.trainer = trainer
        return self

    def on_step_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError("KLScheduleCallback is not bound; call callback.bind(trainer) before training.")
        beta = float(self.schedule(state.global_step))
        self.trainer.beta = beta
        self.history.append((state.global_step, beta))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.history:
            logs["beta"] = self.history[-1][1]
