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

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from jrl_core import rewards, runs
from jrl_core.atomic import atomic_write_json, atomic_write_text
from jrl_core.modes import get_mode
from jrl_core.rows import LOGGED_COLUMNS, prompt_id


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
    gradient_checkpointing: bool = True  # recompute activations in the backward pass (fits 3B/7B on one GPU)
    letter_centring: bool = False  # bias control (not in the papers): see centre_letter_advantages
    share_images: bool = True  # encode each distinct image once per pass (exact; jrl_core.shared_images)
    share_preprocessing: bool = True  # the image processor runs once per distinct image of a step, not 2 x G times
    # (exact; jrl_core.shared_images.PreprocessSharing)
    share_decoding: bool = True  # a step's rows decode each distinct stored image once, not G times (exact;
    # jrl_core.shared_images.DecodeSharing)
    share_rows: bool = True  # the processor's batched calls run each distinct prompt once, not G times (exact;
    # jrl_core.shared_rows)
    share_prompts: bool = False  # score each distinct prompt once per log-prob pass (exact; jrl_core.shared_prompts;
    # on in NANO; not yet run at paper scale here, so opt-in there: --set grpo.share_prompts=true)
    share_prefill: bool = True  # with share_prompts: a generation's prefill runs each distinct prompt once (exact)
    share_positions: bool = False  # each distinct row layout's 3-D rotary positions computed once per call (exact;
    # jrl_core.shared_positions; on in NANO, opt-in at paper scale: --set grpo.share_positions=true)
    keep_freed_memory: bool = False  # glibc keeps freed blocks up to 1 GiB in the heap, so a step's large tensors
    # reuse pages (no value changes; jrl_core.memory; on in NANO, opt-in at paper scale)
    score_completions_only: bool = True  # TRL's LM head projects only completion positions on every device, as it
    # does on CUDA (exact; jrl_core.completion_scoring: 1.20 -> 0.91 s per nano step on a CPU, no change on CUDA)
    save_steps: int = 0  # checkpoint every this many steps; 0 = from save_fraction
    save_fraction: float = 0.0  # checkpoint every this share of the steps (0.1 = ten checkpoints); 0 and save_steps 0 = none
    seed: int = 0
    report_to: tuple[str, ...] = ("tensorboard",)  # TRL logs to <output_dir>/runs too; () = table only

    def completions_per_step(self) -> int:
        """prompts_per_step × num_generations (the paper's effective batch: 512)."""
        return self.prompts_per_step * self.num_generations


PAPER = GRPOSettings()
"""Protocol §6, non-thinking (use ``steps=1000`` for thinking runs)."""

NANO = GRPOSettings(
    steps=300,  # nano-v10, one thread: ~0.84 s per step (session 18; 1.0 s in session 16); 2x1 pair 50.7% -> 90.0 /
    # 88.7 / 88.0% (seeds 0-2, lr 6e-5, the default training pictures, sessions 16 and 18; README "Measured so far")
    prompts_per_step=16,  # 4 prompts/step let the A/B answer bias random-walk to "always A" (spine issue)
    num_generations=8,
    learning_rate=6e-5,  # session 16, by a rule fixed before the runs (docs/preregistered.md): the last 25 steps'
    # rollout accuracy 0.715 -> 0.886 (1x2) and 0.869 -> 0.931 (2x1) over seeds 0-4 against 3e-5 (sessions 10-15), no
    # locked cell; 3e-4 swings the A/B bias (greedy acc 0.3-0.8 step to step)
    warmup_ratio=0.05,
    max_completion_length=8,  # one letter + end of turn
    max_grad_norm=1.0,
    gradient_checkpointing=False,  # a 2M-parameter model needs no memory saving; recomputing costs time
    share_prompts=True,  # the 8 rollouts of a prompt share ~56 of their ~58 tokens: score them once (exact)
    share_positions=True,  # 128 rows, a handful of layouts: rotary positions once per layout (exact)
    keep_freed_memory=True,  # a step's 48 MB pixel-value copies reuse heap pages instead of faulting in new ones
    save_fraction=0.1,  # a killed run resumes losing at most 10% of its steps (checkpoints are ~25 MB here)
)
"""The nano preset: same algorithm, sized for 2 CPU cores."""


def preset(scale: str = "nano", *, think: bool = False, **overrides) -> GRPOSettings:
    """The GRPO settings for a scale, with ``None``-valued overrides ignored.

    ``scale``: ``"nano"`` (:data:`NANO`) or ``"paper"`` (:data:`PAPER`). Thinking runs get
    :data:`THINK_COMPLETION_LENGTH` completion tokens unless ``max_completion_length`` is given
    (a one-letter budget would cut every chain). Raises
    ``ValueError`` for an unknown scale or an unknown field name.
    """
    base = {"nano": NANO, "paper": PAPER}.get(scale)
    if base is None:
        raise ValueError(f"scale={scale!r}: use 'nano' or 'paper'.")
    fields = {f.name for f in dataclasses.fields(GRPOSettings)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown GRPO setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = dataclasses.replace(base, **given)
    if think and "max_completion_length" not in given:
        settings = dataclasses.replace(settings, max_completion_length=THINK_COMPLETION_LENGTH[scale])
    return settings


THINK_COMPLETION_LENGTH = {"nano": 64, "paper": 512}
"""Completion budget of thinking runs: the paper's 512 tokens; 64 for the nano model, whose
templated chains (``jrl_core.perception.think_chain``) are 25–60 tokens."""


def grpo_config(settings: GRPOSettings, output_dir: str | Path, **overrides):
    """A ``trl.GRPOConfig`` with every paper setting explicit.

    ``per_device_batch`` (0 = the whole step split over the processes) and gradient
    accumulation are chosen so that one optimizer step sees ``prompts_per_step ×
    num_generations`` completions over all ``WORLD_SIZE`` processes (Jigsaw-R1: 4 per GPU ×
    8 GPUs × 16 accumulation steps = 64 prompts × 8 completions = 512). Raises ``ValueError``
    when the numbers do not divide.
    Keyword ``overrides`` go straight to ``GRPOConfig`` (e.g. ``use_vllm=True``).
    """
    from trl import GRPOConfig

    total = settings.completions_per_step()
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    per_device = settings.per_device_batch or total // world
    if per_device < 1 or total % (per_device * world):
        raise ValueError(
            f"per_device_batch={per_device} × {world} process(es) must divide "
            f"prompts_per_step×num_generations={total} (the paper: 4 per GPU × 8 GPUs × 16 accumulation = 512)."
        )
    save_every = settings.save_steps or (max(1, round(settings.steps * settings.save_fraction))
                                         if settings.save_fraction > 0 else 0)
    kw = dict(
        output_dir=str(output_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=total // (per_device * world),
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
        gradient_checkpointing=settings.gradient_checkpointing,
        logging_steps=1,
        save_strategy="steps" if save_every else "no",
        save_steps=save_every or 500,
        save_total_limit=2,  # paper-scale checkpoints with optimizer states are ~42 GiB (3B, ZeRO-2)
        seed=settings.seed,
        data_seed=settings.seed,
        # Rows arrive step-ordered (jrl_core.schedules.curriculum_rows: step s consumes rows s·P … s·P+P−1,
        # the curriculum's size for that step); TRL's default (True) would shuffle them across steps.
        shuffle_dataset=False,
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


_META_COLUMNS = LOGGED_COLUMNS


def centre_letter_advantages(advantages, letters: Sequence[str | None]):
    """Remove one batch's answer-letter preference from the GRPO advantages (a bias control;
    not part of the papers' GRPO).

    For every letter L, the mean advantage of the completions whose answer is L is subtracted
    from their advantages; completions without a letter answer (other answer types, invalid
    answers) are left as they are.

    Why: with two choices and group-normalised advantages, the expected gradient on a pure
    letter preference is zero whatever that preference is (balanced gold letters), so sampling
    noise moves it as a random walk until every group answers the same letter and has zero
    reward variance (measured on the nano model: "always A"). Within one batch, the mean
    advantage per letter is that noise (its expectation is 0 when gold letters are balanced,
    as :mod:`jrl_core.puzzles` makes them); subtracting it keeps every within-prompt contrast
    ("A beats B on this puzzle") and drops the batch-wide "A beats B".

    Args:
        advantages: float tensor of shape (N,), one per completion (TRL's ``advantages``).
        letters: N parsed answer letters (``"A"``, ``"B"``, …) or None.
    Returns:
        A new tensor of shape (N,); the sum of advantages over each letter's completions is 0.
    Raises:
        ValueError: ``letters`` and ``advantages`` differ in length.
    """
    if len(letters) != len(advantages):
        raise ValueError(f"{len(letters)} letters for {len(advantages)} advantages; give one per completion.")
    out = advantages.clone()
    for letter in {x for x in letters if x is not None}:
        idx = [i for i, x in enumerate(letters) if x == letter]
        out[idx] = out[idx] - out[idx].mean()
    return out


def _trainer_classes():
    """Built lazily so that importing :mod:`jrl_core.train` does not import TRL."""
    from trl import GRPOTrainer

    class JigsawGRPOTrainer(GRPOTrainer):
        """TRL's ``GRPOTrainer`` plus a completion log and an optional bias control; subclass hooks
        that call TRL's own methods, no copied code.

        ``letter_centring``: after TRL computes the advantages of a generation batch,
        :func:`centre_letter_advantages` removes the batch's answer-letter preference (the logged
        advantages are TRL's, before centring). Under several processes each centres its own
        slice of the batch.

        ``share_images`` / ``share_prompts`` / ``score_completions_only``: exact speed-ups of the log-prob passes
        (:mod:`jrl_core.shared_images`, :mod:`jrl_core.shared_prompts`, :mod:`jrl_core.completion_scoring`);
        ``share_prefill`` (with ``share_prompts``): of the rollout generation's prefill. ``share_positions``: every
        pass's rotary positions once per distinct row layout (:mod:`jrl_core.shared_positions`).
        ``share_preprocessing``: the processor preprocesses each distinct image of a step once
        (:class:`jrl_core.shared_images.PreprocessSharing`; TRL calls it twice per step on G copies of every image).
        ``share_rows``: the processor's batched calls (and chat-template renderings) of a step run each distinct
        prompt once (:mod:`jrl_core.shared_rows`).
        ``share_prompts`` raises ``ValueError`` under ZeRO-3 or FSDP.

        Every rollout of every step is appended to ``completion_log`` (JSON lines), one record
        per completion: ``step``, ``prompt_id``, ``completion`` (text), ``rewards`` (reward
        name -> value), ``advantage``, ``length_tokens``, ``length_chars`` and the row's
        ``solution, answer_type, m, n, question_type, mode`` (``jrl_core.rows.LOGGED_COLUMNS``). The reasoning analysis
        (:func:`jrl_core.analysis.load_completion_log`) reads it. Only the main process writes.
        """

        def __init__(self, *args, completion_log: str | Path | None = None, letter_centring: bool = False,
                     share_images: bool = False, share_prompts: bool = False, share_prefill: bool = True,
                     score_completions_only: bool = False, share_preprocessing: bool = False,
                     share_rows: bool = False, share_positions: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            if share_prompts and (self.is_fsdp_enabled or (self.is_deepspeed_enabled and getattr(
                    self.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3)):
                raise ValueError("share_prompts with ZeRO-3 or FSDP: ranks could disagree on which passes are shared "
                                 "and hang in their parameter gathers; set grpo.share_prompts=false.")
            self.score_completions_only = score_completions_only
            self.share_prefill = share_prefill
            self.share_preprocessing = share_preprocessing
            self.preprocessed = {"seen": 0, "processed": 0}  # images asked of / run through the image processor
            self.share_rows = share_rows
            self.processor_rows = {"rows": 0, "distinct": 0}  # rows of shared processor calls / rows actually run
            self.completion_log = Path(completion_log) if completion_log else None
            self.letter_centring = letter_centring
            from jrl_core.shared_images import share_images as _share_images
            from jrl_core.shared_positions import share_positions as _share_positions
            from jrl_core.shared_prompts import share_prompts as _share_prompts

            # the G rollouts of a prompt share its image (encode it once), its prompt tokens (score them once) and,
            # with other prompts of its length, its rotary-position layout (compute it once): all exact
            self.image_sharing = self._on_models(_share_images) if share_images else []
            self.prompt_sharing = self._on_models(_share_prompts) if share_prompts else []
            self.position_sharing = self._on_models(_share_positions) if share_positions else []

        def _on_models(self, install) -> list:
            """``install(model)`` on the policy and, when there is one (β > 0), the reference model: their handles."""
            return [h for m in (self.model, getattr(self, "ref_model", None)) if m is not None for h in install(m)]

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
            with contextlib.ExitStack() as stack:  # TRL's own pass; the backbones know where the prompt ends
                if self.score_completions_only:
                    from jrl_core.completion_scoring import completion_positions_only

                    stack.enter_context(completion_positions_only())
                for sharing in self.prompt_sharing:
                    stack.enter_context(sharing.scoring(input_ids.size(1) - logits_to_keep))
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                  *args, **kwargs)

        def _generate_single_turn(self, *args, **kwargs):
            with contextlib.ExitStack() as stack:  # TRL's own generation; its prefill runs each prompt once
                for sharing in self.prompt_sharing if self.share_prefill else ():
                    stack.enter_context(sharing.generating())
                return super()._generate_single_turn(*args, **kwargs)

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            if self.completion_log is not None:  # TRL gathers these "extra" columns with the rollouts
                for col in _META_COLUMNS:
                    self._log_completion_extra(col, [x.get(col) for x in inputs])
                self._log_completion_extra("length_tokens", [len(ids) for ids in completion_ids_list])
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

        def _generate_and_score_completions(self, inputs):
            with contextlib.ExitStack() as stack:  # TRL's own step; its two processor calls share their work
                sharing = None
                if self.share_preprocessing:
                    from jrl_core.shared_images import preprocessing_shared

                    sharing = stack.enter_context(preprocessing_shared(self.processing_class))
                rows = None
                if self.share_rows:  # entered second: the view shares the processor's state, its image processor too
                    from jrl_core.shared_rows import rows_shared

                    view, rows = stack.enter_context(rows_shared(self.processing_class))
                    own, self.processing_class = self.processing_class, view
                    stack.callback(setattr, self, "processing_class", own)
                out = super()._generate_and_score_completions(inputs)
                if sharing is not None:
                    self.preprocessed["seen"] += sharing.seen
                    self.preprocessed["processed"] += sharing.processed
                if rows is not None:
                    self.processor_rows["rows"] += rows.rows
                    self.processor_rows["distinct"] += rows.distinct
            if self.letter_centring:
                texts = self.processing_class.batch_decode(out["completion_ids"], skip_special_tokens=True)
                letters = [rewards.parse_letter(rewards.extract_answer(t, mode=x.get("mode"), think=x.get("think")))
                           if rewards.answers.get(x.get("answer_type")).choice else None for t, x in zip(texts, inputs, strict=True)]
                out["advantages"] = centre_letter_advantages(out["advantages"], letters)
            return out

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            if self.completion_log is None or not self.accelerator.is_main_process or not self._logs["completion"]:
                return
            extra = {k: list(v) for k, v in self._logs["extra"].items()}
            rewards_ = {k: list(v) for k, v in self._logs["rewards"].items()}
            lines = []
            for i, comp in enumerate(self._logs["completion"]):
                text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
                text = text if isinstance(text, str) else str(text)
                rec = {"step": self.state.global_step,
                       "prompt_id": extra.get("prompt_id", [None] * (i + 1))[i],
                       "completion": text,
                       "rewards": {k.removesuffix("_reward"): _num(v[i]) for k, v in rewards_.items()},
                       "advantage": _num(self._logs["advantages"][i]),
                       "length_tokens": extra.get("length_tokens", [None] * (i + 1))[i],
                       "length_chars": len(text)}
                rec.update({c: extra[c][i] for c in _META_COLUMNS if c in extra and c != "prompt_id"})
                lines.append(rec)
            runs.append_completions(self.completion_log, lines)
            for dq in (self._logs["prompt"], self._logs["completion"], self._logs["advantages"], self._logs["images"],
                       *self._logs["rewards"].values(), *self._logs["extra"].values()):
                dq.clear()

    return JigsawGRPOTrainer


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through PEFT (``peft.LoraConfig``). Defaults follow common VLM RL practice
    (r 64, α 128 as in TRL's VLM GRPO examples); the papers fine-tune all weights.

    ``freeze_vision``: adapters only on the language model (the vision tower stays as
    pretrained); otherwise the vision blocks get adapters too.
    """

    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    freeze_vision: bool = True
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def peft_config(self):
        """The ``peft.LoraConfig`` (target modules as a regex over the model's module names)."""
        from peft import LoraConfig

        mods = "|".join(self.modules)
        lm = rf".*language_model.*\.({mods})"
        target = lm if self.freeze_vision else rf"({lm})|(.*visual.*\.(qkv|proj|{mods}))"
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=target,
                          task_type="CAUSAL_LM")


def freeze_vision_tower(model) -> int:
    """Set ``requires_grad=False`` on every vision-tower parameter (module names containing
    ``visual`` — Qwen2/2.5-VL — or ``vision_tower``/``vision_model``); returns how many
    tensors were frozen. Raises ``ValueError`` when the model has none (nothing to freeze)."""
    n = 0
    for name, p in model.named_parameters():
        if any(k in name for k in ("visual.", "vision_tower.", "vision_model.")):
            p.requires_grad_(False)
            n += 1
    if n == 0:
        raise ValueError(f"{type(model).__name__} has no parameters named visual/vision_tower/vision_model to freeze.")
    return n


def merge_lora(model):
    """Fold trained LoRA adapters into the base weights (``merge_and_unload``); returns the
    plain model, loadable without PEFT."""
    return model.merge_and_unload()


_PNG_MODES = ("1", "L", "LA", "RGB", "RGBA")  # the modes datasets.Image itself stores as PNG
_RAW_MODES = ("L", "RGB")  # stored as binary PPM/PGM: a header and the raw pixels, no compression


def stored_image(image, compress_level: int = 1):
    """A PIL image as the ``{"bytes", "path"}`` value a ``datasets.Image`` column stores, written where ``datasets``
    itself would write PNG (at its default zlib level 6): 8-bit grey and RGB images as binary PPM/PGM (a header
    and the raw pixels), the other PNG modes as PNG at zlib ``compress_level`` (0-9); anything else (another
    format, another mode, not a PIL image) is returned unchanged for ``datasets`` to encode.

    Both are lossless, so the decoded pixels are the same. PNG's filtering and zlib cost 1.4 ms for a 126-px nano
    view at level 1 (4.1 ms at level 6); PPM is its pixels behind a 15-byte header, read back by PIL in 0.04 ms (48 instead of 29 KB):
    the 4,800 RQ1 training rows of a seed are stored in 0.3 s instead of 7-9 s (session 19). Raises
    ``ValueError`` for a level outside 0-9.
    """
    import io

    from PIL import Image

    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level={compress_level} must lie in 0-9 (zlib levels).")
    if (not isinstance(image, Image.Image) or image.format not in (None, "PNG", "PPM")
            or image.mode not in _PNG_MODES):
        return image
    if image.mode in _RAW_MODES:  # Netpbm's binary header (P6 colour, P5 grey), then the pixels as PIL holds them
        header = f"{'P6' if image.mode == 'RGB' else 'P5'}\n{image.width} {image.height}\n255\n".encode()
        return {"bytes": header + image.tobytes(), "path": None}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return {"bytes": buffer.getvalue(), "path": None}


def to_dataset(rows: list[dict], *, decode_once: bool = False):
    """Dataset rows (from :mod:`jrl_core.puzzles`) -> ``datasets.Dataset`` with an
    ``image`` column, as ``GRPOTrainer`` expects for VLMs. ``decode_once``: a fetched batch decodes each distinct
    image once (:func:`jrl_core.shared_images.decoded_once`; GRPO fetches every prompt G times). Images are stored
    by :func:`stored_image` (lossless: raw PPM, or PNG at a fast zlib level): the rows hand out the same pixels.

    A stored image column is added with a fingerprint hashed from its bytes (blake2b, ~0.3 s for the 230 MB of an
    RQ1 seed's rows) instead of ``datasets`` fingerprinting the whole table by pickling it (4 s; session 19); the
    other columns keep ``datasets``' own fingerprint, and the column order is the rows' own.
    """
    import hashlib

    from datasets import Dataset, Image

    from jrl_core.shared_images import decoded_once

    def row(r):
        out = {k: v for k, v in r.items() if k != "seed"}
        out["prompt_id"] = prompt_id(r)
        if "image" in out:
            out["image"] = stored_image(out["image"])
        return out

    table = [row(r) for r in rows]
    order = list(table[0]) if table else []
    stored = [r.get("image") for r in table]
    if table and all(isinstance(v, dict) and set(v) == {"bytes", "path"} for v in stored):
        digest = hashlib.blake2b(digest_size=16)
        for v in stored:  # each value's length first, so that the byte stream parses back into the same values
            digest.update(len(v["bytes"]).to_bytes(8, "little"))
            digest.update(v["bytes"])
            digest.update(str(v["path"]).encode())
        others = Dataset.from_list([{k: v for k, v in r.items() if k != "image"} for r in table])
        fingerprint = hashlib.blake2b(f"{others._fingerprint}:{digest.hexdigest()}".encode(), digest_size=8).hexdigest()
        dataset = others.add_column("image", stored, feature=Image(), new_fingerprint=fingerprint)
        dataset = dataset.select_columns(order, new_fingerprint=f"{fingerprint}-ordered")
    else:  # no images, or ones datasets encodes itself
        dataset = Dataset.from_list(table)
        if "image" in dataset.features and not isinstance(dataset.features["image"], Image):
            dataset = dataset.cast_column("image", Image())  # the stored {"bytes", "path"} values: no re-encoding
    return decoded_once(dataset) if decode_once else dataset


def train_grpo(model, processor, rows: list[dict], settings: GRPOSettings, output_dir: str | Path, *,
               reward_names: tuple = ("accuracy", "format"), callbacks: list | None = None,
               save_final: bool = True, lora: LoraSettings | None = None, freeze_vision: bool = False,
               log_completions: bool = True, resume_from_checkpoint: str | bool | None = None,
               **config_overrides):
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
        lora: train LoRA adapters (:class:`LoraSettings`) instead of all weights; the saved
            ``final/`` holds the merged model.
        freeze_vision: full fine-tuning with the vision tower frozen (:func:`freeze_vision_tower`).
        log_completions: append every rollout to ``<output_dir>/completions.jsonl``.
        resume_from_checkpoint: ``True`` (latest ``checkpoint-*`` in ``output_dir``) or a path; the
            run continues with the same data order, RNG state, schedules and logs as an
            uninterrupted one (needs ``settings.save_steps``).
    Raises:
        ValueError: too few rows for the steps, or a weights/rewards length mismatch.
    """

    need = settings.steps * settings.prompts_per_step
    if len(rows) < need:
        raise ValueError(f"{len(rows)} rows for {settings.steps} steps × {settings.prompts_per_step} prompts; "
                         f"build at least {need} rows or lower steps.")
    if len(reward_names) != len(settings.reward_weights):
        raise ValueError(f"reward_names={reward_names} and reward_weights={settings.reward_weights} differ in length.")
    output_dir = Path(output_dir)
    table = MetricsTable(output_dir / runs.TRAIN_LOG)
    log_path = output_dir / runs.COMPLETION_LOG
    ckpt = _resolve_checkpoint(output_dir, resume_from_checkpoint)
    if ckpt is not None:  # keep what the interrupted run logged up to its checkpoint
        done = json.loads((ckpt / "trainer_state.json").read_text())["global_step"]
        if table.path.exists():
            old = pd.read_csv(table.path)
            table.rows = old[old["step"] <= done].to_dict("records")
        runs.truncate_completions(log_path, done)
    elif log_completions and log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log
    if freeze_vision and lora is None and not isinstance(model, str):
        freeze_vision_tower(model)
    if settings.keep_freed_memory:  # process-wide from here on; changes no value (jrl_core.memory)
        import logging

        from jrl_core.memory import keep_freed_memory

        if not keep_freed_memory():
            logging.getLogger(__name__).info(
                "keep_freed_memory: the C library is not glibc or refused the setting; training uses the "
                "allocator's defaults (the same results, slower on CPU).")
    args = grpo_config(settings, output_dir, **config_overrides)
    trainer = _trainer_classes()(
        model=model,
        reward_funcs=[rewards.get_reward(r) if isinstance(r, str) else r for r in reward_names],
        args=args,
        train_dataset=to_dataset(rows, decode_once=settings.share_decoding),
        processing_class=processor,
        callbacks=[table, *(callbacks or [])],
        peft_config=lora.peft_config() if lora else None,
        completion_log=log_path if log_completions else None,
        letter_centring=settings.letter_centring,
        share_images=settings.share_images,
        share_preprocessing=settings.share_preprocessing,
        share_rows=settings.share_rows,
        share_prompts=settings.share_prompts,
        share_prefill=settings.share_prefill,
        score_completions_only=settings.score_completions_only,
        share_positions=settings.share_positions,
    )
    for cb in callbacks or []:
        if hasattr(cb, "bind"):  # callbacks that need the trainer, e.g. schedules.KLScheduleCallback (GRPO-D)
            cb.bind(trainer)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    if save_final:
        _save_final(trainer, processor, output_dir / "final", lora=lora is not None)
    if trainer.accelerator.is_main_process:
        atomic_write_json(output_dir / "settings.json", dataclasses.asdict(settings))
    return trainer, table.frame()


def _save_final(trainer, processor, out: Path, *, lora: bool) -> None:
    """The trained model as a plain safetensors folder: LoRA adapters merged first; otherwise
    ``trainer.save_model`` on every rank (it gathers ZeRO-3 shards and writes on the main process)."""
    if lora:
        merged = merge_lora(trainer.model)
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(str(out), safe_serialization=True)
    else:
        trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(out))


def _resolve_checkpoint(output_dir: Path, resume) -> Path | None:
    if not resume:
        return None
    if resume is True:
        ckpts = sorted((p for p in output_dir.glob("checkpoint-*")  # complete ones: a kill may cut a save short
                        if (p / "trainer_state.json").exists() and p.name.split("-")[-1].isdigit()),
                       key=lambda p: int(p.name.split("-")[-1]))
        if not ckpts:
            raise FileNotFoundError(f"resume_from_checkpoint=True but {output_dir} has no checkpoint-*; "
                                    "set settings.save_steps so that runs leave checkpoints.")
        return ckpts[-1]
    p = Path(resume)
    if not (p / "trainer_state.json").exists():
        raise FileNotFoundError(f"resume_from_checkpoint={resume!r} is not a trainer checkpoint (no trainer_state.json).")
    return p


# --- SFT (Jigsaw-R1 RQ5: SFT vs RL, SFT cold start) -------------------------------------------------

@dataclass(frozen=True)
class SFTSettings:
    """Supervised fine-tuning through TRL's ``SFTTrainer`` (Jigsaw-R1 §5 RQ5, paper_spec §1.4).

    The paper gives SFT the same data as RL; ``steps × batch_size`` examples, loss on the
    completion only. Non-thinking SFT trains on ground-truth answers; thinking SFT on
    rejection-sampled chains (:func:`rejection_sample`).
    """

    steps: int = 100
    batch_size: int = 16  # examples per optimizer step
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool = False
    save_steps: int = 0
    seed: int = 0
    report_to: tuple[str, ...] = ()


def sft_rows(rows: list[dict], completions: list[str] | None = None) -> list[dict]:
    """Puzzle rows -> SFT examples (``prompt``, ``completion`` as conversations, ``image``):
    the ground-truth answer text (non-thinking) or the given ``completions`` (e.g. kept
    rejection samples), one per row. Raises ``ValueError`` on a length mismatch."""
    if completions is not None and len(completions) != len(rows):
        raise ValueError(f"{len(completions)} completions for {len(rows)} rows.")
    out = []
    for i, r in enumerate(rows):
        text = completions[i] if completions is not None else _gold_text(r)
        out.append({"prompt": r["prompt"], "completion": [{"role": "assistant", "content": text}], "image": r["image"]})
    return out


def _gold_text(row: dict) -> str:
    sol = row["solution"]
    ans = " ".join(str(x) for x in sol) if isinstance(sol, (list, tuple)) else str(sol)
    return f"<answer>{ans}</answer>" if get_mode(row["mode"]).think else ans


def rejection_sample(model, processor, rows: list[dict], *, k: int = 4, max_new_tokens: int = 96,
                     temperature: float = 1.0, seed: int = 0, batch_size: int = 32) -> tuple[list[dict], list[str], float]:
    """The paper's thinking-SFT data (Jigsaw-R1 App. D): sample ``k`` completions per row at
    ``temperature`` and keep, per row, the first that earns full accuracy and format reward.

    Returns ``(kept_rows, kept_completions, acceptance)`` where ``acceptance`` in [0, 1] is
    the share of rows with a kept chain. Rows with none are dropped (as in the paper).
    """
    import torch

    tok = processor.tokenizer
    tok.padding_side = "left"
    torch.manual_seed(seed)
    kept_rows, kept = [], []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            chunk = rows[s:s + batch_size]
            texts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in chunk]
            batch = processor(text=texts, images=[r["image"] for r in chunk], return_tensors="pt", padding=True)
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 top_k=50, num_return_sequences=k, pad_token_id=tok.pad_token_id)
            outs = tok.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, r in enumerate(chunk):
                cands = outs[j * k:(j + 1) * k]
                cols = {c: [r.get(c)] * k for c in ("answer_type", "m", "n", "mode")}
                acc = rewards.accuracy_reward(cands, solution=[r["solution"]] * k, **cols)
                fmt = rewards.format_reward(cands, **cols)
                good = [c for c, a, f in zip(cands, acc, fmt, strict=True) if a >= 1.0 and f >= 1.0]
                if good:
                    kept_rows.append(r)
                    kept.append(good[0])
    return kept_rows, kept, len(kept) / max(1, len(rows))


def train_sft(model, processor, examples: list[dict], settings: SFTSettings, output_dir: str | Path, *,
              lora: LoraSettings | None = None, save_final: bool = True, callbacks: list | None = None,
              **config_overrides):
    """Supervised fine-tuning with TRL's ``SFTTrainer`` on :func:`sft_rows` examples (loss on
    the completion tokens only); returns ``(trainer, metrics DataFrame)``.

    ``output_dir`` gets ``train_log.csv`` and (``save_final``) ``final/`` — a checkpoint that
    :func:`train_grpo` can start from (the SFT→RL cold start, Jigsaw-R1 Finding 5).
    ``callbacks``: extra ``TrainerCallback``s (e.g. an evaluation every N steps).
    Raises ``ValueError`` when there are fewer examples than one step needs.
    """
    from trl import SFTConfig, SFTTrainer

    if len(examples) < settings.batch_size:
        raise ValueError(f"{len(examples)} SFT examples for batch_size={settings.batch_size}; build more rows.")
    output_dir = Path(output_dir)
    table = MetricsTable(output_dir / runs.TRAIN_LOG)
    args = SFTConfig(
        output_dir=str(output_dir), max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=int(settings.warmup_ratio * settings.steps), max_grad_norm=settings.max_grad_norm,
        bf16=settings.bf16, logging_steps=1, save_strategy="steps" if settings.save_steps else "no",
        save_steps=settings.save_steps or 500, seed=settings.seed, data_seed=settings.seed,
        report_to=list(settings.report_to) or "none", max_length=None, remove_unused_columns=False,
        completion_only_loss=True, dataloader_num_workers=0, **config_overrides,
    )
    from datasets import Dataset

    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=processor,
                         callbacks=[table, *(callbacks or [])], peft_config=lora.peft_config() if lora else None)
    trainer.train()
    if save_final:
        _save_final(trainer, processor, output_dir / "final", lora=lora is not None)
    atomic_write_json(output_dir / "settings.json", dataclasses.asdict(settings))
    return trainer, table.frame()
