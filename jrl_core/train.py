"""GRPO training through TRL's ``GRPOTrainer``, with the papers' settings made explicit.

TRL's current defaults differ from Jigsaw-R1's (β = 0 and ``loss_type="dapo"`` in
TRL; β = 0.04, sequence-mean "grpo" loss in the paper), so :class:`GRPOSettings`
names every setting the paper fixes (protocol §6) and :func:`grpo_config` turns it
into a ``GRPOConfig``. The trainer is TRL's own; the workbook only adds callbacks
(:class:`MetricsTable`) and never copies trainer code.

Scales: :data:`PAPER` is protocol §6 (64 prompts × 8 completions per step, lr 1e-6
with linear decay, 2,000 non-thinking steps, 512 completion tokens); :data:`NANO` is
sized for a 2-core CPU (see its field comments for why each value differs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from jrl_core import rewards
from jrl_core.atomic import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO hyperparameters (protocol §6; Jigsaw-R1 §4.3, App. D).

    Every field has the paper's value as default unless noted; :data:`NANO` overrides
    the ones a 2-core CPU cannot afford.
    """

    steps: int = 2000  # 1,000 thinking / 2,000 non-thinking (paper)
    prompts_per_step: int = 64  # unique prompts per optimizer step (paper: 64)
    num_generations: int = 8  # G, completions per prompt (paper: 8)
    learning_rate: float = 1e-6  # linear decay to 0 (paper)
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    beta: float = 0.04  # KL coefficient β, k3 estimator (TRL's default is 0)
    epsilon: float = 0.2  # PPO clip ε
    num_iterations: int = 1  # μ
    loss_type: str = "grpo"  # per-sequence token mean, then batch mean (TRL's default is "dapo")
    scale_rewards: str = "group"  # advantage (r - mean) / (std + 1e-4) within a group
    temperature: float = 1.0
    top_k: int = 50
    max_completion_length: int = 512
    reward_weights: tuple[float, ...] = rewards.PAPER_REWARD_WEIGHTS  # 1.0 accuracy + 0.5 format
    per_device_batch: int = 0  # completions per forward/backward; 0 = all of a step's completions
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    bf16: bool = False  # the paper trains in bf16 on GPUs; CPUs run fp32
    save_steps: int = 0  # 0 = only at the end
    seed: int = 0
    report_to: tuple[str, ...] = ("tensorboard",)  # TRL logs to <output_dir>/runs too; () = table only

    def completions_per_step(self) -> int:
        """prompts_per_step × num_generations (the paper's effective batch: 512)."""
        return self.prompts_per_step * self.num_generations


PAPER = GRPOSettings()
"""Protocol §6, non-thinking (use ``steps=1000`` for thinking runs)."""

NANO = GRPOSettings(
    steps=100,  # ~4 s per step on 2 cores: 100 steps keep the quick study within 20 minutes
    prompts_per_step=16,  # 4 prompts/step let the A/B answer bias random-walk to "always A" (spine issue)
    num_generations=8,
    learning_rate=1e-4,  # measured: 3e-4 swings the A/B bias (greedy acc 0.3-0.8 step to step); 1e-4 is steadier
    warmup_ratio=0.05,
    max_completion_length=8,  # one letter + end of turn
    max_grad_norm=1.0,
)
"""The nano preset: same algorithm, sized for 2 CPU cores."""


def preset(scale: str = "nano", *, think: bool = False, **overrides) -> GRPOSettings:
    """The GRPO settings for a scale, with ``None``-valued overrides ignored.

    ``scale``: ``"nano"`` (:data:`NANO`) or ``"paper"`` (:data:`PAPER`). Thinking runs get at
    least 256 completion tokens (a one-letter budget would cut every chain). Raises
    ``ValueError`` for an unknown scale or an unknown field name.
    """
    base = {"nano": NANO, "paper": PAPER}.get(scale)
    if base is None:
        raise ValueError(f"scale={scale!r}: use 'nano' or 'paper'.")
    fields = {f.name for f in dataclasses.fields(GRPOSettings)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown GRPO setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if think and settings.max_completion_length < 256:
        settings = dataclasses.replace(settings, max_completion_length=256)
    return settings


def grpo_config(settings: GRPOSettings, output_dir: str | Path, **overrides):
    """A ``trl.GRPOConfig`` with every paper setting explicit.

    ``per_device_batch`` (0 = the whole step) and gradient accumulation are chosen so
    that one optimizer step sees ``prompts_per_step × num_generations`` completions.
    Keyword ``overrides`` go straight to ``GRPOConfig`` (e.g. ``use_vllm=True``).
    """
    from trl import GRPOConfig

    total = settings.completions_per_step()
    per_device = settings.per_device_batch or total
    if total % per_device or per_device % settings.num_generations:
        raise ValueError(
            f"per_device_batch={per_device} must divide prompts_per_step×num_generations={total} and be a "
            f"multiple of num_generations={settings.num_generations}."
        )
    kw = dict(
        output_dir=str(output_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=total // per_device,
        num_generations=settings.num_generations,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=int(settings.warmup_ratio * settings.steps),
        beta=settings.beta,
        epsilon=settings.epsilon,
        num_iterations=settings.num_iterations,
        loss_type=settings.loss_type,
        scale_rewards=settings.scale_rewards,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=1.0,
        max_completion_length=settings.max_completion_length,
        reward_weights=list(settings.reward_weights),
        max_grad_norm=settings.max_grad_norm,
        weight_decay=settings.weight_decay,
        bf16=settings.bf16,
        logging_steps=1,
        save_strategy="steps" if settings.save_steps else "no",
        save_steps=settings.save_steps or 500,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=list(settings.report_to) or "none",
        remove_unused_columns=False,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    kw.update(overrides)
    return GRPOConfig(**kw)


class MetricsTable(TrainerCallback):
    """Keeps every training log line (reward, accuracy/format reward, KL, completion
    length, ``frac_reward_zero_std``, …) as rows of a table, written atomically to
    ``<path>`` (CSV) after each log so that a killed run keeps what it logged."""

    def __init__(self, path: str | Path | None = None):
        self.rows: list[dict] = []
        self.path = Path(path) if path else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs and "reward" not in logs:
            return
        self.rows.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
        if self.path:
            atomic_write_text(self.path, self.frame().to_csv(index=False))

    def frame(self) -> pd.DataFrame:
        """The log as a DataFrame, one row per logged step."""
        return pd.DataFrame(self.rows)


def to_dataset(rows: list[dict]):
    """Dataset rows (from :mod:`jrl_core.puzzles`) -> ``datasets.Dataset`` with an
    ``image`` column, as ``GRPOTrainer`` expects for VLMs."""
    from datasets import Dataset

    return Dataset.from_list([{k: v for k, v in r.items() if k != "seed"} for r in rows])


def train_grpo(model, processor, rows: list[dict], settings: GRPOSettings, output_dir: str | Path, *,
               reward_names: tuple = ("accuracy", "format"), callbacks: list | None = None,
               save_final: bool = True, **config_overrides):
    """Train ``model`` with GRPO on ``rows``; returns ``(trainer, metrics DataFrame)``.

    Args:
        model: a loaded ``PreTrainedModel`` or a hub id / folder (TRL loads it).
        processor: its processor (``Qwen2_5_VLProcessor`` for the nano model).
        rows: dataset rows; need ``steps × prompts_per_step`` of them for one pass.
        settings: :class:`GRPOSettings` (:data:`NANO` or :data:`PAPER`).
        output_dir: checkpoints, ``train_log.csv`` and (``save_final``) the trained model in ``final/``,
            loadable by :func:`jrl_core.nano.load_model`.
        reward_names: names in :data:`jrl_core.rewards.REWARDS` (or reward callables), weighted by
            ``settings.reward_weights`` (protocol §5: 1.0 accuracy + 0.5 format).
        callbacks: ``TrainerCallback``s; any with a ``bind(trainer)`` method gets it called
            before training.
    Raises:
        ValueError: too few rows for the steps, or a weights/rewards length mismatch.
    """
    from trl import GRPOTrainer

    need = settings.steps * settings.prompts_per_step
    if len(rows) < need:
        raise ValueError(f"{len(rows)} rows for {settings.steps} steps × {settings.prompts_per_step} prompts; "
                         f"build at least {need} rows or lower steps.")
    if len(reward_names) != len(settings.reward_weights):
        raise ValueError(f"reward_names={reward_names} and reward_weights={settings.reward_weights} differ in length.")
    output_dir = Path(output_dir)
    table = MetricsTable(output_dir / "train_log.csv")
    args = grpo_config(settings, output_dir, **config_overrides)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[rewards.get_reward(r) if isinstance(r, str) else r for r in reward_names],
        args=args,
        train_dataset=to_dataset(rows),
        processing_class=processor,
        callbacks=[table, *(callbacks or [])],
    )
    for cb in callbacks or []:
        if hasattr(cb, "bind"):  # callbacks that need the trainer, e.g. schedules.KLScheduleCallback (GRPO-D)
            cb.bind(trainer)
    trainer.train()
    if save_final:
        trainer.save_model(str(output_dir / "final"))
        processor.save_pretrained(str(output_dir / "final"))
    atomic_write_json(output_dir / "settings.json", dataclasses.asdict(settings))
    return trainer, table.frame()
