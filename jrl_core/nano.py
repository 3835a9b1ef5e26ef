"""The nano model: a tiny Qwen2.5-VL built offline, the workbook's embedded default.

No machine here reaches a model hub, so the workbook builds its own
``Qwen2_5_VLForConditionalGeneration`` (about two million parameters), a byte-level
BPE tokenizer trained on the workbook's own prompt vocabulary, and a real
``Qwen2_5_VLProcessor``. The untrained model is then turned into a nano *instruct*
model in two short supervised stages on procedurally labelled perception questions
about the *training* photos (:mod:`jrl_core.perception`): vision encoder pretraining,
then visual instruction pretraining (encoder trained too since recipe v6); never on jigsaw questions, so that its jigsaw accuracy
starts near chance as the paper's base models do (Jigsaw-R1 Table 1).

The result is an ordinary transformers checkpoint folder (``config.json``,
``model.safetensors``, tokenizer and processor files) that the generic loading
path (:func:`load_model`) opens exactly as it opens ``Qwen/Qwen2.5-VL-3B-Instruct``.
Folders are cached by the hash of their build config, so a second build is free.

Measured pitfalls this module encodes (spine issue):
- ``initializer_range=0.02`` makes a model this small ignore the image; 0.1 works.
- bos/eos/pad ids must be set inside ``text_config`` (generation reads them there).
- the processor needs a ``Qwen2VLVideoProcessor`` even for images only.
- rotary frequencies: with Qwen's ``rope_theta=1e6`` and a 32-dim head, the width
  section gets frequencies ~1e-5 rad/position, so left and right are invisible; the
  nano model uses ``rope_theta=10``.
- the encoder must learn seams, not photos: with 14 training photos it memorises them
  unless it is pretrained on its own first, on augmented continuity questions, at a
  geometry that puts the middle seam inside a patch (126 px, 3x3 merge); see
  :func:`jrl_core.perception.pretrain_vision`. Without that stage no recipe (GRPO,
  letter-centred GRPO, even SFT on labelled puzzles) moved held-out 2x1 accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Qwen2-VL's chat layout (``<|im_start|>role\\n … <|im_end|>``) without the default system turn."""

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "<reason>", "</reason>"]

NANO_RECIPE_VERSION = 15
"""Bumped whenever the build recipe changes in a way the config fields do not show."""

DEFAULT_CACHE = Path(os.environ.get("JRL_CACHE", Path(__file__).resolve().parent.parent / ".cache"))


@dataclass(frozen=True)
class NanoConfig:
    """Everything that determines a nano checkpoint; its hash names the cache folder.

    Field defaults are sized for a 2-core CPU: about 2M parameters, 126x126 images
    (9x9 vision patches of 14 px, merged 3x3 into 9 image tokens). At 126 px the middle
    seam of a 2x1 or 1x2 puzzle falls *inside* a patch row/column (pixel 63 = 4.5 patches),
    where one patch embedding sees both sides of it; at 112 px it falls between patches and
    the vision stage learned nothing about continuity (measured, see
    :data:`jrl_core.perception.VISION_TASKS`).
    """

    vocab_size: int = 1024  # byte-level BPE trained on the workbook's prompts
    tokenizer: str = "phrases"  # TOKENIZERS: "phrases" (v5: merges across spaces, ~4x fewer prompt tokens) or "words"
    hidden_size: int = 128  # text decoder width
    num_layers: int = 4  # text decoder depth
    num_heads: int = 4  # head_dim 32 -> mrope sections (4, 6, 6) over (t, h, w)
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vision_hidden: int = 96
    vision_depth: int = 3
    vision_heads: int = 4
    image_size: int = 126  # pixels per side; a multiple of patch_size x merge_size
    patch_size: int = 14  # vision patch side in pixels (Qwen2.5-VL: 14)
    merge_size: int = 3  # spatial_merge_size: merge_size**2 patches -> one image token (Qwen2.5-VL: 2)
    rope_theta: float = 10.0  # see module docstring: large thetas hide the width axis
    initializer_range: float = 0.1  # 0.02 makes a model this small ignore the image
    seed: int = 0
    # Stage 1, vision encoder pretraining (perception.pretrain_vision); 0 steps = skip.
    vision_pretrain_steps: int = 7200  # v10: 3x v6's (v5: twice v4's); stage-1 held-out continuity 0.76/0.77 -> 0.83/0.82
    vision_pretrain_lr: float = 1e-3
    vision_pretrain_pool: int = 24576  # v10 (v6: 8192); items generated once on the train photos, re-drawn with augmentation
    vision_pretrain_tasks: tuple[str, ...] = ()  # empty = perception.VISION_TASKS
    vision_synthetic_pictures: int = 0  # procedural dead-leaves pictures (jrl_core.synthetic) added to stage 1; 0 = none
    vision_synthetic_share: float = 0.5  # share of the stage-1 pool cut from them (when vision_synthetic_pictures > 0)
    # Session 12, 1,024 pictures at share 0.5, recipe v10 otherwise: swap probe 0.85 / 0.88 -> 0.903 / 0.887, but the
    # base wrote a letter for 1.3% of RQ1's 2x1 prompts (v10: 60%) and GRPO seeds 0 / 1 reached 73.3 / 75.7% (v10:
    # 86.3 / 86.0%; one answer cell locked): not adopted. The pictures help as GRPO training images instead
    # (jrl_core.images.SYNTHETIC_TRAIN_PICTURES).
    freeze_vision: bool = False  # v6: stage 2 trains the encoder too (v5: True, LLaVA-style); probe on image tokens
    # 0.81 -> 0.89, RQ1 GRPO seeds 0/1/2 72.0/73.3/74.0% -> 76.7/82.3/77.3% (measured session 7)
    # Stage 2, visual instruction pretraining (perception.pretrain); 0 steps = random init.
    pretrain_steps: int = 1200  # v5: twice v4's (the base is built once and shipped, so a longer build is cheap)
    pretrain_batch: int = 32
    pretrain_lr: float = 1e-3
    pretrain_tasks: tuple[str, ...] = ()  # empty = perception.DEFAULT_TASKS
    pretrain_think_share: float = 0.25  # share of items in thinking mode (templated <think> chain + <answer>)
    pretrain_token_noise: float = 0.5  # share of items whose question gets runs of random vocabulary tokens inserted
    # (perception.insert_token_noise): the base learns that unfamiliar tokens in a prompt do not change the answer
    # format; 0 = off. v15: 100% bare letters on the 2x1 / 1x2 jigsaw prompts (v10 60 / 75%), whose phrase tokens
    # pretraining never shows
    pretrain_token_noise_vocab: str = "words"  # perception.NOISE_VOCABS: "words" (v15: no digits, letters, labels)
    pretrain_letter_smoothing: float = 0.2  # answer-letter target smoothed over the option letters
    # (perception.letter_smoothed_loss); 0 = off. Noise without it (candidate v14) left a base certain of some
    # jigsaw prompt variants' wrong answer (P(correct) 0.005 in one cell), a cell GRPO never sampled its way out of;
    # v15's lowest cell is 0.39 / 0.37 (2x1 / 1x2)
    photo_source: str = "skimage"
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def key(self) -> str:
        """A 12-hex-digit hash of the fields that change the checkpoint."""
        from jrl_core.perception import DEFAULT_TASKS

        d = dataclasses.asdict(self)
        d.pop("extra")
        from jrl_core.perception import VISION_TASKS

        d["pretrain_tasks"] = list(self.pretrain_tasks or DEFAULT_TASKS)
        d["vision_pretrain_tasks"] = list(self.vision_pretrain_tasks or VISION_TASKS)
        d["recipe_version"] = NANO_RECIPE_VERSION
        if not d["vision_synthetic_pictures"]:  # inert when off: bases built before these fields keep their hash
            del d["vision_synthetic_pictures"], d["vision_synthetic_share"]
        if not d["pretrain_token_noise"]:  # inert when off: bases built before this field keep their hash
            del d["pretrain_token_noise"]
        if not d["pretrain_letter_smoothing"]:  # inert when off
            del d["pretrain_letter_smoothing"]
        if d["pretrain_token_noise_vocab"] == "all":  # the field's first value: bases built before it keep their hash
            del d["pretrain_token_noise_vocab"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def tokenizer_corpus() -> list[str]:
    """Text the nano tokenizer is trained on: every prompt family the workbook renders.

    Returns a list of strings (prompt templates with sample fillings, perception
    questions, answers). Training a tokenizer on jigsaw prompt *wording* teaches the
    model nothing about jigsaw answers; it only keeps prompts short in tokens.
    """
    from PIL import Image

    from jrl_core import perception, puzzles

    lines: list[str] = []
    img = Image.new("RGB", (112, 112))
    for qt in ("pair", "full"):  # jigsaw prompts of every size, so that common words are single tokens
        for think in (False, True):
            for m, n in ((2, 1), (1, 2), (3, 1), (2, 2), (1, 3), (4, 1), (3, 3)):
                for seed in range(3):
                    spec = puzzles.PuzzleSpec(m=m, n=n, question_type=qt, think=think)
                    row = puzzles.make_row(img, spec, seed=seed)
                    lines.append(row["prompt"][0]["content"][-1]["text"])
                    lines.append(str(row["solution"]))
    lines.extend(perception.corpus())
    lines.extend(["<think>", "</think>", "<answer>", "</answer>", "A B C D E F G H", "0 1 2 3 4 5 6 7 8 9"])
    return lines


TOKENIZERS = ("phrases", "words")
"""Pre-tokenization of the nano BPE. ``"words"`` (recipe v4) splits text at spaces, as GPT-2/Qwen do, so the
2x1 pair prompt's 141 fixed template words cost ~160 tokens. ``"phrases"`` (recipe v5) splits only around
digits, lone capital letters and ``(A)``-style choice labels, so BPE merges learn the template's fixed phrases
(``"ĠpatchesĠthatĠhaveĠbeenĠrandomlyĠpermuted…"``) and the same prompt costs 39 tokens, while every position,
size and choice letter stays its own token. The text is the paper's, byte for byte; only how the nano model
reads it changes (the paper's Qwen tokenizer is untouched)."""

_PHRASE_SPLIT = r"[0-9]+|\([A-Z]\)|\b[A-Z]\b"


def build_tokenizer(vocab_size: int = 1024, kind: str = "phrases"):
    """Train a byte-level BPE tokenizer offline on :func:`tokenizer_corpus`.

    Args:
        vocab_size: total vocabulary including special tokens (>= 300).
        kind: pre-tokenization, one of :data:`TOKENIZERS`.
    Returns:
        ``PreTrainedTokenizerFast`` with Qwen2-VL's special tokens, ``<|endoftext|>``
        as pad/bos and ``<|im_end|>`` as eos, left padding, and the chat template.
    Any string encodes (byte fallback); single capital letters and digits are
    single tokens.
    Raises:
        ValueError: ``vocab_size < 300`` or an unknown ``kind``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE; use >= 300.")
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer={kind!r}: use one of {TOKENIZERS}.")
    tok = Tokenizer(models.BPE())
    if kind == "words":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_PHRASE_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    fast.add_tokens(TAG_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(cfg: NanoConfig):
    """A real ``Qwen2_5_VLProcessor`` around the nano tokenizer.

    Images are resized to ``cfg.image_size`` square (min = max pixels), i.e.
    ``(image_size/14)**2`` patches and a quarter as many image tokens.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    unit = cfg.patch_size * cfg.merge_size
    if cfg.image_size % unit:
        raise ValueError(f"image_size={cfg.image_size} must be a multiple of {unit} "
                         f"(patch {cfg.patch_size} x merge {cfg.merge_size}).")
    px = cfg.image_size * cfg.image_size
    image_processor = Qwen2VLImageProcessor(min_pixels=px, max_pixels=px, patch_size=cfg.patch_size,
                                            merge_size=cfg.merge_size)
    video_processor = Qwen2VLVideoProcessor()
    tokenizer = build_tokenizer(cfg.vocab_size, cfg.tokenizer)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(cfg: NanoConfig, tokenizer):
    """A randomly initialised ``Qwen2_5_VLForConditionalGeneration`` of the nano size.

    Token ids (image pad, vision start/end, bos/eos/pad) are read from ``tokenizer``
    and set on both the top-level and the text config. Deterministic for ``cfg.seed``.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = cfg.hidden_size // cfg.num_heads
    half = head_dim // 2
    t_sec = half // 4
    h_sec = (half - t_sec) // 2
    mrope = [t_sec, h_sec, half - t_sec - h_sec]
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=2048,
        initializer_range=cfg.initializer_range,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    vision_config = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_hidden * 2,
        num_heads=cfg.vision_heads,
        out_hidden_size=cfg.hidden_size,
        patch_size=cfg.patch_size,
        spatial_merge_size=cfg.merge_size,
        temporal_patch_size=2,
        window_size=cfg.image_size,
        fullatt_block_indexes=list(range(cfg.vision_depth)),
        initializer_range=cfg.initializer_range,
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    return model


DYNAMIC_VIEW_SIZE = 448
"""View side (px) for processors with dynamic resolution (Qwen2.5-VL's hub processors: min_pixels 3,136,
max_pixels 12,845,056): 448 = 16 × 28 px, 256 image tokens per view. Our choice, not the papers': Jigsaw-R1
feeds whole COCO photos at their own resolution; the workbook cuts square views of every photo."""


def view_size(processor) -> int:
    """The side in pixels at which puzzles are cut for ``processor``'s model: the one place that decides it.

    A processor with a fixed input size (``min_pixels == max_pixels``, as the nano model's, whose images are
    resized to ``NanoConfig.image_size`` square) gives that side, so views reach the model unresized; a
    dynamic-resolution processor (the Qwen hub checkpoints) gives :data:`DYNAMIC_VIEW_SIZE`, capped to its
    ``max_pixels`` and rounded down to a multiple of ``patch_size × merge_size``.

    Args:
        processor: a loaded processor with an ``image_processor`` (Qwen2-VL/Qwen2.5-VL style: ``min_pixels``,
            ``max_pixels``, ``patch_size``, ``merge_size``; other processors: ``size`` dicts with
            ``height``/``shortest_edge``).
    Returns:
        Side in pixels (≥ 28).
    Raises:
        ValueError: the processor has no image processor (not a vision-language processor).
    """
    ip = getattr(processor, "image_processor", None)
    if ip is None:
        raise ValueError(f"view_size: {type(processor).__name__} has no image_processor; pass a vision-language "
                         "processor (e.g. from jrl_core.nano.load_model).")
    size = getattr(ip, "size", None) or {}

    def get(key: str):  # ``size`` is a dict in some releases, a SizeDict object in others
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return value if value is not None else getattr(ip, key, None) if key.endswith("_pixels") else value

    lo = get("min_pixels") or get("shortest_edge")
    hi = get("max_pixels") or get("longest_edge")
    unit = int(getattr(ip, "patch_size", 14) or 14) * int(getattr(ip, "merge_size", 2) or 2)
    if lo and hi and lo == hi:  # fixed input area (the nano processor): a square of that area
        return int(round(math.sqrt(lo)))
    if get("height") and get("height") == get("width"):
        return int(get("height"))  # fixed-size processors of other families
    side = DYNAMIC_VIEW_SIZE
    if hi:
        side = min(side, int(math.sqrt(hi)))
    return max(unit, side - side % unit)


def count_parameters(model) -> int:
    """Number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def _atomic_save(model, processor, out_dir: Path, meta: dict) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / "nano.json").write_text(json.dumps(meta, indent=2, default=str))
        if (out_dir / "nano.json").exists() and (out_dir / "model.safetensors").exists():
            return  # another process (e.g. a second rank under accelerate launch) finished the same build first
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_nano(cfg: NanoConfig | None = None, *, cache_dir: str | Path | None = None, force: bool = False,
               progress: bool = True) -> Path:
    """Build (or reuse) a nano instruct checkpoint and return its folder.

    Steps: tokenizer -> random-init model -> vision encoder pretraining on the training
    photos (:func:`jrl_core.perception.pretrain_vision`, ``cfg.vision_pretrain_steps``
    steps) -> visual instruction pretraining on the training photos
    (:func:`jrl_core.perception.pretrain`, ``cfg.pretrain_steps`` steps; the encoder
    frozen when ``cfg.freeze_vision``) -> safetensors checkpoint in ``<cache_dir>/nano-<cfg.key()>``, written
    atomically. A folder that already holds a finished build is returned as is
    unless ``force``. ``nano.json`` in the folder records the config, parameter
    count, pretraining curve and per-task held-out accuracy.
    """
    from jrl_core import perception

    cfg = cfg or NanoConfig()
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    out = cache / f"nano-{cfg.key()}"
    if (out / "nano.json").exists() and (out / "model.safetensors").exists() and not force:
        return out
    processor = build_processor(cfg)
    model = build_model(cfg, processor.tokenizer)
    meta = {"config": dataclasses.asdict(cfg), "parameters": count_parameters(model)}
    if cfg.vision_pretrain_steps > 0:
        meta["vision_pretraining"] = perception.pretrain_vision(model, processor, cfg, progress=progress)
    if cfg.pretrain_steps > 0:
        meta["pretraining"] = perception.pretrain(model, processor, cfg, progress=progress)
    _atomic_save(model, processor, out, meta)
    return out


def pretrain_overrides(steps: int | None) -> dict:
    """A notebook's ``nano_pretrain_steps`` parameter as :class:`NanoConfig` overrides.

    ``None`` keeps the defaults (``{}``); an int sets both pretraining stages (vision encoder and
    visual instruction) to that many steps, e.g. 3 for smoke tests, and caps the vision stage's item
    pool at the items those steps draw (at least 64). Raises ``ValueError`` for a negative count.
    """
    if steps is None:
        return {}
    if steps < 0:
        raise ValueError(f"nano_pretrain_steps={steps}: must be >= 0 (or None for the defaults).")
    base = NanoConfig()
    pool = min(base.vision_pretrain_pool, max(64, int(steps) * base.pretrain_batch))
    return {"pretrain_steps": int(steps), "vision_pretrain_steps": int(steps), "vision_pretrain_pool": pool}


REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = REPO_ROOT / "data" / "nano"
"""Where shipped nano base checkpoints live (``data/nano/nano-v<recipe version>/``), as hub checkpoints live on
the hub: built once by ``jrl nano build``, committed, loaded by ``model="nano"``."""
BASE_VERSION = f"nano-v{NANO_RECIPE_VERSION}"
"""The shipped base that ``model="nano"`` loads; a changed build recipe gets a new version name."""
CARD_FILE = "card.json"
"""The build card beside a shipped checkpoint: recipe, config hash, sha256 of every file, held-out scores,
probe scores, build time and machine."""


def file_hashes(folder: str | Path) -> dict[str, str]:
    """``{file name: sha256 hex}`` of every file in a checkpoint folder except the card itself."""
    folder = Path(folder)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != CARD_FILE}


def read_card(folder: str | Path) -> dict:
    """The build card of a shipped checkpoint; ``FileNotFoundError`` naming the fix when it is missing."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a shipped nano base. Rebuild it with "
                                "`jrl nano build` or restore data/nano/ from git.")
    return json.loads(path.read_text(encoding="utf-8"))


def verify_base(folder: str | Path, config: NanoConfig | None = None) -> list[str]:
    """Differences between a shipped checkpoint's files and its card (``[]`` = intact): a missing, extra or
    changed file, or (with ``config``) a card built from another recipe than ``config``."""
    folder = Path(folder)
    card = read_card(folder)
    problems = []
    if config is not None and card.get("config_hash") != config.key():
        problems.append(f"built from recipe {card.get('config_hash')}, not {config.key()} (the current NanoConfig): "
                        "bump NANO_RECIPE_VERSION and run `jrl nano build`")
    have, want = file_hashes(folder), card.get("sha256", {})
    for name in sorted(set(want) | set(have)):
        if name not in have:
            problems.append(f"{name}: missing")
        elif name not in want:
            problems.append(f"{name}: not in the card")
        elif have[name] != want[name]:
            problems.append(f"{name}: sha256 {have[name][:12]}… differs from the card's {want[name][:12]}…")
    return problems


def shipped_base(version: str = BASE_VERSION) -> Path:
    """The folder of the shipped nano base ``version``; never builds.

    Raises:
        FileNotFoundError: the folder or its weights are missing, with the fix (``jrl nano build``, or restore
            ``data/nano/`` from git).
    """
    folder = SHIPPED_DIR / version
    if not (folder / "model.safetensors").is_file() or not (folder / CARD_FILE).is_file():
        raise FileNotFoundError(
            f"the shipped nano base {folder} is missing (model.safetensors and {CARD_FILE}). Restore it from git "
            f"(`git checkout -- data/nano`) or build it with `jrl nano build` (recipe v{NANO_RECIPE_VERSION}).")
    built = read_card(folder).get("config_hash")
    if version == BASE_VERSION and built != NanoConfig().key():
        raise FileNotFoundError(
            f"{folder} was built from recipe {built}, not the current NanoConfig ({NanoConfig().key()}): restore it "
            "from git (`git checkout -- data/nano`), or rebuild it with `jrl nano build` after bumping NANO_RECIPE_VERSION.")
    return folder


def resolve_model(model: str, **nano_overrides) -> str:
    """Map a recipe's ``model`` to something :func:`load_model` opens.

    ``"nano"`` without overrides is the shipped base (:func:`shipped_base`: loaded, never rebuilt silently);
    ``"nano"`` with :class:`NanoConfig` overrides (a recipe's ``nano:`` section, e.g. small pretraining for smoke
    tests) builds or reuses that variant in the cache (:func:`build_nano`); anything else (a hub id such as
    ``Qwen/Qwen2.5-VL-3B-Instruct`` or a local folder) is returned unchanged.
    """
    if model == "nano":
        return str(build_nano(NanoConfig(**nano_overrides)) if nano_overrides else shipped_base())
    return model


def build_base(out: str | Path | None = None, *, overrides: dict | None = None, progress: bool = True,
               n_probe: int = 600) -> Path:
    """Build a nano base, score it, and write it with its build card (``jrl nano build``).

    Steps: :func:`build_nano` of ``NanoConfig(**overrides)`` into a temporary cache; greedy accuracy on the RQ1
    recipe's fixed held-out set (300 2x1 pair puzzles, test photos; chance 50%) and the "halves swapped"
    linear probe (:func:`jrl_core.probe.swap_probe`); then the folder moves to ``out`` (default the shipped
    :data:`BASE_VERSION`) with ``card.json``: version, recipe (config fields), config hash, parameters,
    held-out pretraining scores, base accuracy, probe scores, build seconds, machine, package versions and the
    sha256 of every file. Deterministic on one machine for one config.

    Returns:
        The output folder.
    Raises:
        RecipeError (a ValueError): a bad override (unknown field, wrong type, out of range), before any step runs.
        ValueError: overrides that change the recipe without an ``out`` folder.
    """
    import platform
    import time

    import torch

    from jrl_core import config, evaluate, experiment, probe

    cfg = config.nano_config(overrides)  # a bad field or value fails here, before any build step
    if out is None and cfg.key() != NanoConfig().key():
        raise ValueError(f"build_base: overrides {sorted(overrides or {})} change the recipe, so the result is not "
                         f"{BASE_VERSION}; pass an output folder (jrl nano build --out DIR), or change the NanoConfig "
                         "defaults and bump NANO_RECIPE_VERSION to ship a new base.")
    out = Path(out) if out else SHIPPED_DIR / BASE_VERSION
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nano-build-") as tmp:
        built = build_nano(cfg, cache_dir=tmp, force=True, progress=progress)
        build_s = time.time() - t0
        model, processor = load_model(str(built))
        exp = experiment.load_recipe(probe.RECIPE, {"model": str(built), "n_test": 300})
        test = experiment.heldout_rows(exp, view_size=view_size(processor))
        base = evaluate.evaluate(model, processor, test, max_new_tokens=8, progress=progress).summary()
        swap = probe.swap_probe(model, processor, n_train=n_probe)
        meta = json.loads((built / "nano.json").read_text())
        card = {"version": out.name, "recipe_version": NANO_RECIPE_VERSION, "config": dataclasses.asdict(cfg),
                "config_hash": cfg.key(), "parameters": meta.get("parameters"),
                "vision_pretraining_held_out": (meta.get("vision_pretraining") or {}).get("held_out_accuracy"),
                "pretraining_held_out": (meta.get("pretraining") or {}).get("held_out_accuracy"),
                "thinking_format": (meta.get("pretraining") or {}).get("thinking_format"),
                "base_rq1_2x1_pair": {k: round(v, 4) if isinstance(v, float) else v for k, v in base.items()},
                "probe_halves_swapped": swap, "build_seconds": round(build_s, 1),
                "machine": {"platform": platform.platform(), "processor": platform.processor(),
                            "torch": torch.__version__, "threads": torch.get_num_threads()}}
        staging = out.parent / f".{out.name}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(built, staging)
        card["sha256"] = file_hashes(staging)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    return out


def load_model(name_or_path: str, *, dtype: str = "auto", device: str | None = None,
               trust_remote_code: bool = False):
    """The generic loading path: a hub id or a local folder -> (model, processor).

    Uses ``AutoProcessor`` and the model class named by the checkpoint's config
    (``AutoModelForImageTextToText``), safetensors only, ``trust_remote_code=False``
    unless asked. Raises ``FileNotFoundError`` with the fix when a local-looking path
    does not exist, and ``OSError`` from transformers when a hub id cannot be reached
    (no network here: pass a local folder).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    p = Path(name_or_path)
    if (name_or_path.startswith((".", "/", "~")) or p.exists()) and not p.expanduser().exists():
        raise FileNotFoundError(
            f"model={name_or_path!r}: no such folder. Pass 'nano', a hub id (needs network), "
            "or a folder written by save_pretrained."
        )
    torch_dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(
        name_or_path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if device:
        model.to(device)
    processor.tokenizer.padding_side = "left"
    return model, processor
