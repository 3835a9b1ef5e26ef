"""Step-keyed schedules: the puzzle-size curriculum (protocol §6; Jigsaw-R1 §5 RQ3, Table 3).

The reference switches sizes on a sample counter inside its dataset object, which restarts at zero
when a run resumes from a checkpoint, so a resumed run silently goes back to the first size. Here
the size is a pure function of the trainer's **global step** (:meth:`Curriculum.size_at`) and an
item is a pure function of ``(seed, index, step)`` (:func:`curriculum_row`): a run resumed at step k
sees exactly the sizes and items the uninterrupted run saw from step k on.

Use with TRL: build the rows with :func:`curriculum_rows` (row ``i`` is drawn for global step
``i // prompts_per_step``) and keep the dataset order (``GRPOConfig(shuffle_dataset=False)``), so
that step s consumes rows ``s·P … s·P + P − 1``; the HF Trainer's resume skips the consumed rows.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass

from jrl_core.images import Photo
from jrl_core.puzzles import PuzzleSpec, item_seed, make_row

__all__ = ["Curriculum", "curriculum_row", "curriculum_rows"]


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
    photos: list[Photo], spec: PuzzleSpec, curriculum: Curriculum, *, seed: int | str, index: int, step: int,
    instruct: bool = True,
) -> dict:
    """The dataset row for item ``index`` drawn at global step ``step``: ``spec`` with the size
    ``curriculum.size_at(step)``, photo ``photos[index % len(photos)]``, seed ``item_seed(seed, index)``.

    A pure function of its arguments: the same (seed, index, step) gives the same row byte for byte.
    The row also carries ``"step"`` and ``"index"``.

    Raises:
        ValueError: empty ``photos``, negative index/step, or a size the spec rejects.
    """
    if not photos:
        raise ValueError("curriculum_row needs at least one photo; load some with jrl_core.images.load_photos().")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}.")
    m, n = curriculum.size_at(step)
    staged = dataclasses.replace(spec, m=m, n=n)
    photo = photos[index % len(photos)]
    row = make_row(photo.image, staged, seed=item_seed(seed, index), image_id=photo.image_id, instruct=instruct)
    row["step"], row["index"] = step, index
    return row


def curriculum_rows(
    photos: list[Photo], spec: PuzzleSpec, curriculum: Curriculum, *, seed: int | str, prompts_per_step: int,
    steps: int, start_step: int = 0, instruct: bool = True,
) -> list[dict]:
    """Rows for global steps ``start_step … steps − 1``, ``prompts_per_step`` per step; row j of step s
    is :func:`curriculum_row` with ``index = s·prompts_per_step + j``. A run resumed at step k can
    call this with ``start_step=k`` and gets the tail of the uninterrupted run's list.

    Raises:
        ValueError: prompts_per_step < 1 or start_step outside [0, steps].
    """
    if prompts_per_step < 1:
        raise ValueError(f"prompts_per_step must be >= 1, got {prompts_per_step}.")
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be in [0, steps={steps}], got {start_step}.")
    return [
        curriculum_row(photos, spec, curriculum, seed=seed, index=s * prompts_per_step + j, step=s, instruct=instruct)
        for s in range(start_step, steps)
        for j in range(prompts_per_step)
    ]
