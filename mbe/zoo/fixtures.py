"""A test fixture of the ``paper`` profile's local copies: tiny random models and tiny data sets.

:func:`write_paper_fixture` writes, in the layouts :mod:`mbe.zoo.local` reads, a tiny randomly initialised
model of the same architecture class as each paper hub model (ViT image classifier, RoBERTa sequence classifier,
GPT-2 LM: hidden size 32, 2 layers) with its word-level tokenizer or image processor, and tiny data sets
(16 PNG images in 3 class folders, 16 labelled sentences, a few KB of text). The timm hub models (the paper's
ViT-M/16) get a tiny timm ViT of the same architecture (``vit_medium_patch16_reg4_gap_256`` at image size 32,
patch 8, width 32, 2 blocks: 4 register tokens, no class token, GAP head) in a timm checkpoint folder, only when
timm can be imported in this process (:func:`mbe.zoo.timm_models.import_timm`; it needs a working torchvision);
otherwise they are left out, and a paper run that asks for them reports their local copies missing. Its models
folder holds a ``MBE_FIXTURE`` marker file, so a run on it is reported as a fixture run, never as results. It
exists to test the paper profile's wiring offline (``python -m mbe reproduce --profile paper --models M --data
D``); the numbers it gives mean nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

from . import hub
from .local import FIXTURE_MARKER, data_folder, model_folder

WORDS = (
    "the a film story music actor scene plot cast city river song year team game book war king house night day "
    "music world life time people man woman child water light road field town village army season album"
).split()
GOOD = "good great fine wonderful lovely moving bright warm".split()
BAD = "bad poor dull awful boring weak flat cold".split()
PUNCT = [".", ",", "=", "@-@", "(", ")"]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0-3; GPT-2's end of text after the words


def _vocab() -> dict[str, int]:
    words = list(dict.fromkeys(SPECIAL + WORDS + GOOD + BAD + PUNCT + ["<|endoftext|>"]))
    return {w: i for i, w in enumerate(words)}


def _tokenizer(vocab: dict[str, int], kind: str):
    """A word-level fast tokenizer over ``vocab`` (built offline with the ``tokenizers`` library)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "roberta":
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tk,
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            model_max_length=128,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        model_max_length=128,
    )


def _sentence(rng: random.Random, n: int, extra: list[str] = ()) -> str:
    words = [rng.choice(WORDS) for _ in range(n)] + list(extra)
    rng.shuffle(words)
    return " ".join(words) + " ."


def _write_vit(folder: Path, n_classes: int) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=n_classes,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _write_timm_vit(folder: Path, architecture: str, n_classes: int, seed: int = 0) -> bool:
    """A tiny timm ViT of ``architecture`` (ViT-M/16's layout) in a timm checkpoint folder; False (nothing
    written) when timm cannot be imported here. Its own torch RNG stream, so the other models do not depend on it."""
    import torch

    from .storage import ZooError
    from .timm_models import import_timm, write_folder

    try:
        timm = import_timm("the fixture's timm ViT")
    except ZooError:
        return False
    args = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model(architecture, pretrained=False, num_classes=n_classes, **args)
    write_folder(model.eval(), folder, architecture, args)
    return True


def _write_roberta(folder: Path, vocab: dict[str, int]) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,  # 128 tokens after RoBERTa's offset of pad_token_id + 1
        type_vocab_size=1,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        num_labels=2,
    )
    RobertaForSequenceClassification(config).save_pretrained(folder)
    _tokenizer(vocab, "roberta").save_pretrained(folder)


def _write_gpt2(folder: Path, vocab: dict[str, int]) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    eot = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=128, n_embd=32, n_layer=2, n_head=4, bos_token_id=eot, eos_token_id=eot
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    _tokenizer(vocab, "gpt2").save_pretrained(folder)


def _write_images(folder: Path, rng: random.Random, n_images: int = 16, n_classes: int = 3) -> None:
    """``n_images`` small PNGs in ``n_classes`` synset-like class folders (a colour per class, plus noise)."""
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(rng.randrange(2**32))
    for i in range(n_images):
        label = i % n_classes
        base = np.zeros((24, 24, 3)) + 255 * np.eye(3)[label]
        pixels = np.clip(0.6 * base + gen.normal(0, 40, size=base.shape) + 50, 0, 255).astype(np.uint8)
        path = folder / f"n{label + 1:08d}" / f"ILSVRC2012_val_{i + 1:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def _write_sentences(path: Path, rng: random.Random, n: int = 16) -> None:
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        lines.append(f"{_sentence(rng, rng.randint(4, 12), [rng.choice(GOOD if label else BAD)])}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_wikitext(path: Path, rng: random.Random, n_bytes: int = 5000) -> None:
    """WikiText-style raw text (`` = Heading = `` lines between paragraphs), about ``n_bytes`` long."""
    parts = []
    while sum(map(len, parts)) < n_bytes:
        parts.append(f" = {rng.choice(WORDS).title()} {rng.choice(WORDS).title()} = \n \n")
        para = " ".join(_sentence(rng, rng.randint(6, 16), [rng.choice(GOOD + BAD)]) for _ in range(rng.randint(3, 6)))
        parts.append(f" {para} \n \n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")


def write_paper_fixture(root, seed: int = 0) -> tuple[Path, Path]:
    """Write the fixture under ``root``; returns ``(models_dir, data_dir)`` for
    ``python -m mbe reproduce --profile paper --models ... --data ...``. Deterministic for a given ``seed``."""
    import torch

    root = Path(root)
    models_dir, data_dir = root / "models", root / "data"
    models_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / FIXTURE_MARKER).write_text(
        "Written by mbe.zoo.fixtures.write_paper_fixture: tiny random models and synthetic data, not the paper's.\n"
        "A reproduce run on this folder is a fixture run; its numbers are not results.\n"
    )
    rng = random.Random(seed)
    torch.manual_seed(seed)
    vocab = _vocab()
    models = {
        "image-classification": lambda m, e: _write_vit(m, 3),
        "text-classification": lambda m, e: _write_roberta(m, vocab),
        "causal-lm": lambda m, e: _write_gpt2(m, vocab),
    }
    data = {
        "image-classification": lambda d, split: _write_images(d / split, rng),
        "text-classification": lambda d, split: _write_sentences(d / f"{split}.tsv", rng),
        "causal-lm": lambda d, split: _write_wikitext(d / f"wiki.{split}.raw", rng),
    }
    written = set()  # data sets shared by several models (ImageNet) are written once
    for name, e in hub.HUB.items():
        if e.task not in models:
            continue
        if e.library == "timm":
            architecture = e.model_id.rsplit("/", 1)[-1].split(".", 1)[0]  # timm/<architecture>.<weight tag>
            if not _write_timm_vit(model_folder(name, models_dir), architecture, 3, seed):
                continue
        else:
            models[e.task](model_folder(name, models_dir), e)
        if (e.dataset, e.task) not in written:
            data[e.task](data_folder(name, data_dir), e.dataset[2])
            written.add((e.dataset, e.task))
    return models_dir, data_dir
