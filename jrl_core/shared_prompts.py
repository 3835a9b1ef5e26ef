"""Run each distinct prompt of a scoring pass once: GRPO's G rollouts of a prompt share every prompt token.

TRL's ``GRPOTrainer`` scores a step's completions twice (the reference model's log-probs, then the policy's
forward and backward), each time on ``prompt + completion`` for every rollout. The G = 8 rollouts of a prompt have
the same prompt tokens and image, and a causal model's hidden states (and keys and values) at a prompt position do
not depend on what follows, so the prompt part is the same computation G times. At nano scale the prompt is ~56 of
~58 tokens per rollout (2x1 pair, non-thinking: one letter and the end of turn), so nearly all the work of both
passes is that repetition.

:func:`share_prompts` wraps the language backbone of a Qwen2-VL / Qwen2.5-VL model (``model.model``, the module
TRL's fused LM head calls) so that, inside :meth:`PromptSharing.scoring` (entered by
``jrl_core.train``'s GRPO trainer around its log-prob passes, where the prompt width is known), a forward pass

1. computes the batch's 3-D rotary positions once, as the model itself would (``get_rope_index``);
2. runs the distinct prompts (equal prompt tokens, attention mask and images) once, keeping their keys and values;
3. copies those keys and values to every rollout (an index select: its backward sums the copies' gradients,
   as the repeated computation would) and runs only the completion tokens on top of them;
4. returns hidden states for the whole sequence, prompt rows copied, so TRL's head scores the same positions.

Generation repeats the same work: TRL hands ``generate`` every prompt G times, and the first (prefill) pass runs
all G copies. Inside :meth:`PromptSharing.generating` (entered by the trainer around TRL's rollout generation), a
prefill pass with repeated prompts

5. runs the distinct prompts once into the generation's key/value cache (with the 3-D positions ``generate``
   computed for the whole batch), then copies the cache rows and the hidden states to every rollout, so the
   decoding steps, the sampling and its random draws see the same batch as before.

The result equals the plain forward up to float summation order (tested: hidden states and gradients, generated
completions), so it is an exact speed-up, not a change of the algorithm. Everything else (evaluation outside the
trainer, models without a ``get_rope_index`` backbone such as InternVL, batches with nothing repeated, static or
quantized caches) takes the model's own forward. Under ZeRO-3 or FSDP the ranks would have to agree on whether a
pass is shared (their parameter gathers must match), so ``jrl_core.train`` refuses ``share_prompts`` there.
:class:`jrl_core.train.GRPOSettings` ``share_prompts`` turns it on (on in the nano preset, opt-in at paper scale).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

from jrl_core.shared_images import (  # torch-free import
    distinct_tensors,
    install_once,
    select_images,
    unique_images,
)

__all__ = ["PromptSharing", "find_backbones", "share_prompts", "prompt_groups"]


def find_backbones(model) -> list:
    """The Qwen-VL-style multimodal backbones inside ``model`` (wrapped models included): modules with a
    ``get_rope_index`` method, a ``language_model`` and a ``visual`` tower (``Qwen2VLModel``,
    ``Qwen2_5_VLModel``). Returns ``[]`` for other architectures."""
    return [m for m in model.modules()
            if hasattr(m, "get_rope_index") and hasattr(m, "language_model") and hasattr(m, "visual")]


def prompt_groups(input_ids, attention_mask, prompt_length: int, image_keys: list[tuple] | None = None) -> tuple[list[int], list[int]]:
    """Which rows of a batch have the same prompt.

    Args:
        input_ids: long tensor (rows, length): prompt tokens (left padded to ``prompt_length``) then completion.
        attention_mask: tensor (rows, length), 1 on real tokens.
        prompt_length: the prompt's width in columns (``length - logits_to_keep`` in TRL; ``length`` for a
            generation's prefill pass, which holds prompts only), 0 < it <= length.
        image_keys: per row, a hashable key of its images (rows with different images never share), or None.
    Returns:
        ``(keep, inverse)``: ``keep`` the first row of every distinct prompt, in order; ``inverse[r]`` the
        position in ``keep`` of row ``r``'s prompt.
    Raises:
        ValueError: ``prompt_length`` outside (0, length], or ``image_keys`` of another length than the rows.
    """
    rows, length = input_ids.shape
    if not 0 < prompt_length <= length:
        raise ValueError(f"prompt_length={prompt_length} must lie in (0, {length}] (the sequence's length).")
    if image_keys is not None and len(image_keys) != rows:
        raise ValueError(f"image_keys has {len(image_keys)} entries for {rows} rows.")
    ids = input_ids[:, :prompt_length].tolist()
    mask = attention_mask[:, :prompt_length].tolist()
    seen: dict[tuple, int] = {}
    keep: list[int] = []
    inverse: list[int] = []
    for r in range(rows):
        key = (tuple(ids[r]), tuple(mask[r]), image_keys[r] if image_keys is not None else None)
        if key not in seen:
            seen[key] = len(keep)
            keep.append(r)
        inverse.append(seen[key])
    return keep, inverse


@dataclass
class PromptSharing:
    """The wrapper on one backbone (see module docstring); ``remove()`` restores its forward. ``calls`` counts
    shared passes, ``rows`` / ``prompts`` the rollouts received / prompts computed over them; ``prefills`` counts
    shared generation prefill passes (their rows and prompts are counted too)."""

    backbone: object
    original: object = None
    prompt_length: int | None = None
    prefill: bool = False
    calls: int = 0
    rows: int = 0
    prompts: int = 0
    prefills: int = 0

    @contextlib.contextmanager
    def scoring(self, prompt_length: int):
        """Within this block, forward passes of the backbone treat the first ``prompt_length`` columns as the
        prompt (TRL's ``input_ids.size(1) - logits_to_keep``)."""
        previous, self.prompt_length = self.prompt_length, int(prompt_length)
        try:
            yield self
        finally:
            self.prompt_length = previous

    @contextlib.contextmanager
    def generating(self):
        """Within this block, a generation's prefill pass runs each distinct prompt once (module docstring, 5)."""
        previous, self.prefill = self.prefill, True
        try:
            yield self
        finally:
            self.prefill = previous

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, inputs_embeds=None,
                use_cache=None, pixel_values=None, pixel_values_videos=None, image_grid_thw=None,
                video_grid_thw=None, mm_token_type_ids=None, **kwargs):
        """The backbone's forward, with the prompt computed once per distinct prompt inside :meth:`scoring` and,
        for a generation's prefill pass, inside :meth:`generating`."""
        if cache is None:  # the deprecated name: keep the caller's cache under the one the model reads
            cache = kwargs.pop("past_key_values", None)
        plain = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                     inputs_embeds=inputs_embeds, use_cache=use_cache, pixel_values=pixel_values,
                     pixel_values_videos=pixel_values_videos, image_grid_thw=image_grid_thw,
                     video_grid_thw=video_grid_thw, mm_token_type_ids=mm_token_type_ids, **kwargs)
        if self.prefill and self.prompt_length is None:
            return self._prefill(plain)
        p = self.prompt_length
        if (p is None or input_ids is None or attention_mask is None or cache is not None
                or inputs_embeds is not None or position_ids is not None or pixel_values_videos is not None
                or mm_token_type_ids is None or not 0 < p < input_ids.shape[1]):
            return self.original(**plain)
        if self._checkpointing():  # the layers would drop the prompt's keys and values: recompute as usual
            return self.original(**plain)
        plan = self._plan(input_ids, attention_mask, p, pixel_values, image_grid_thw)
        if plan is None:
            return self.original(**plain)
        keep, inverse, image_rows = plan
        return self._shared(input_ids, attention_mask, p, pixel_values, image_grid_thw, mm_token_type_ids,
                            keep, inverse, image_rows, kwargs)

    def _prefill(self, plain: dict):
        """A generation pass: the distinct prompts once into the (empty) cache, then the cache rows and hidden
        states copied to every row; any other pass (a decoding step, nothing repeated) runs as usual.

        ``generate`` may have encoded the images already (``mm_encoder_outputs``, one pooled tensor per image;
        transformers 5 does) or pass ``pixel_values``; rows share a prompt only with equal tokens, mask and images
        either way. Only a plain ``DynamicCache`` with a 2-D (or no) attention mask is shared; static, quantized or
        other caches take the model's own pass."""
        import torch
        from transformers import DynamicCache

        kw = dict(plain)
        cache = kw.pop("cache")
        input_ids, attention_mask, position_ids = kw["input_ids"], kw["attention_mask"], kw["position_ids"]
        encoded = kw.get("mm_encoder_outputs") or {}
        if (type(cache) is not DynamicCache or cache.get_seq_length() != 0 or input_ids is None
                or position_ids is None or position_ids.ndim != 3
                or (attention_mask is not None and attention_mask.ndim != 2) or kw["inputs_embeds"] is not None
                or kw["pixel_values_videos"] is not None or encoded.get("video") is not None or kw["mm_token_type_ids"] is None
                or kw.get("output_attentions") or kw.get("output_hidden_states")):
            return self.original(**plain)
        length = input_ids.shape[1]
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        pooled = getattr(encoded.get("image"), "pooler_output", None)
        if pooled is not None:  # images encoded by generate: one pooled tensor per image
            image_tokens = (kw["mm_token_type_ids"] == 1).sum(1).tolist()  # per row: its images' placeholders
            plan = self._plan_encoded(input_ids, mask, pooled, image_tokens)
        else:
            plan = self._plan(input_ids, mask, length, kw["pixel_values"], kw["image_grid_thw"])
        if plan is None:
            return self.original(**plain)
        keep, inverse, image_rows = plan
        self.prefills += 1
        keep_t, inv_t, images = self._take(keep, inverse, image_rows, input_ids.device)
        if pooled is not None:  # the kept rows' images, in row order
            image_out = copy.copy(encoded["image"])
            image_out.pooler_output = tuple(pooled[i] for i in images)
            kw["mm_encoder_outputs"] = {**encoded, "image": image_out}
        elif kw["pixel_values"] is not None:
            kw["pixel_values"], kw["image_grid_thw"] = select_images(kw["pixel_values"], kw["image_grid_thw"], images)
        kw.update(input_ids=input_ids[keep_t], position_ids=position_ids[:, keep_t],
                  attention_mask=None if attention_mask is None else attention_mask[keep_t],
                  mm_token_type_ids=kw["mm_token_type_ids"][keep_t])
        out = self.original(cache=cache, **kw)
        cache.batch_select_indices(inv_t)  # every rollout decodes on top of its own copy of its prompt
        out.last_hidden_state = out.last_hidden_state.index_select(0, inv_t)
        return out

    @staticmethod
    def _plan_encoded(input_ids, mask, pooled, mask_image_tokens: list[int] | None = None):
        """``(keep, inverse, images per row)`` from pooled image tensors (equal tensors = the same image), or
        None when nothing repeats or the images do not map to rows (every row must hold the same number of images,
        and its image tokens must number what its images pooled to)."""
        import torch

        rows = input_ids.shape[0]
        if len(pooled) % rows:
            return None
        per_row = len(pooled) // rows
        tokens = [sum(len(pooled[r * per_row + j]) for j in range(per_row)) for r in range(rows)]
        if mask_image_tokens is not None and mask_image_tokens != tokens:
            return None
        sums = torch.stack([t.detach().float().sum() for t in pooled]).tolist() if pooled else []  # one sync
        _, ids = distinct_tensors(pooled, [(tuple(t.shape), c) for t, c in zip(pooled, sums, strict=True)])
        return PromptSharing._grouped(input_ids, mask, input_ids.shape[1], ids, per_row)

    @staticmethod
    def _grouped(input_ids, mask, p, image_ids: list[int] | None, per_row: int | None):
        """``(keep, inverse, per_row)`` for rows grouped by prompt and images (``image_ids``: each image's
        distinct-image id, ``per_row`` images per row; None without images), or None when nothing repeats."""
        rows = input_ids.shape[0]
        keys = None if image_ids is None else [tuple(image_ids[r * per_row:(r + 1) * per_row]) for r in range(rows)]
        keep, inverse = prompt_groups(input_ids, mask, p, keys)
        return None if len(keep) == rows else (keep, inverse, per_row)

    def _take(self, keep: list[int], inverse: list[int], image_rows: int | None, device):
        """Count a shared pass's rows and prompts; returns ``keep`` and ``inverse`` as tensors and the indices of
        the kept rows' images (``image_rows`` images per row, in row order; ``[]`` without images)."""
        import torch

        self.rows += len(inverse)
        self.prompts += len(keep)
        images = [r * image_rows + j for r in keep for j in range(image_rows)] if image_rows else []
        return torch.tensor(keep, device=device), torch.tensor(inverse, device=device), images

    def _checkpointing(self) -> bool:
        """Whether this pass recomputes layers in the backward (gradient checkpointing with gradients on), which
        turns the layers' key/value cache off."""
        import torch

        lm = self.backbone.language_model
        return bool(lm.training and torch.is_grad_enabled()
                    and any(getattr(m, "gradient_checkpointing", False) for m in lm.modules()))

    def _plan(self, input_ids, attention_mask, p, pixel_values, image_grid_thw):
        """``(keep, inverse, image_rows)`` or None when nothing repeats or the images do not map to rows."""
        rows = input_ids.shape[0]
        if pixel_values is None:
            return self._grouped(input_ids, attention_mask, p, None, None)
        if image_grid_thw is None or image_grid_thw.shape[0] % rows:
            return None  # images per row differ: leave it to the model
        _, image_ids = unique_images(pixel_values, image_grid_thw)
        return self._grouped(input_ids, attention_mask, p, image_ids, image_grid_thw.shape[0] // rows)

    def _shared(self, input_ids, attention_mask, p, pixel_values, image_grid_thw, mm_token_type_ids, keep, inverse,
                image_rows, kwargs):
        import torch
        from transformers import DynamicCache

        bb = self.backbone
        self.calls += 1
        keep_t, inv_t, images = self._take(keep, inverse, image_rows, input_ids.device)
        positions, _ = bb.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw,
                                         attention_mask=attention_mask)
        prompt_kw = {}
        if pixel_values is not None:  # the kept rows' images, in row order
            prompt_kw["pixel_values"], prompt_kw["image_grid_thw"] = select_images(pixel_values, image_grid_thw, images)
        cache = DynamicCache(config=bb.config.get_text_config())
        head = self.original(input_ids=input_ids[keep_t, :p], attention_mask=attention_mask[keep_t, :p],
                             position_ids=positions[:, keep_t, :p], cache=cache, use_cache=True,
                             mm_token_type_ids=mm_token_type_ids[keep_t, :p], **prompt_kw, **kwargs)
        cache.batch_select_indices(inv_t)  # every rollout gets its prompt's keys and values (grad: sum of copies)
        tail = self.original(input_ids=input_ids[:, p:], attention_mask=attention_mask, position_ids=positions[:, :, p:],
                             cache=cache, use_cache=True, mm_token_type_ids=mm_token_type_ids[:, p:], **kwargs)
        hidden = torch.cat([head.last_hidden_state.index_select(0, inv_t), tail.last_hidden_state], dim=1)
        out = tail
        out.last_hidden_state = hidden
        if getattr(out, "cache", None) is not None:  # the caller asked for no cache; do not hold the copies
            out.cache = None
        return out

    def remove(self) -> None:
        if getattr(self.backbone, "_jrl_prompt_sharing", None) is self:
            del self.backbone.forward  # the instance attribute: the class's forward shows through again
            del self.backbone._jrl_prompt_sharing


def share_prompts(model) -> list[PromptSharing]:
    """Let every Qwen-VL backbone in ``model`` compute each distinct prompt once inside
    :meth:`PromptSharing.scoring` and a generation's prefill once per distinct prompt inside
    :meth:`PromptSharing.generating` (see the module docstring); outside them the model is unchanged. Idempotent per
    backbone. Returns the :class:`PromptSharing` handles (empty for models without such a backbone)."""
    def make(bb):
        sharing = PromptSharing(bb, original=bb.forward)
        bb.forward = sharing.forward  # instance attribute: nn.Module.__call__ reaches it, the class is untouched
        return sharing

    return install_once(find_backbones(model), "_jrl_prompt_sharing", make)
