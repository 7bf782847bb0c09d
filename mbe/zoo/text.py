"""Byte-level BPE tokenizers trained here (the zoo's small text models have no hub tokenizer).

A tokenizer is trained once from its model's training split with the ``tokenizers`` library (a
transformers dependency), shipped as ``weights/<name>.tokenizer.json`` and wrapped as a transformers
``PreTrainedTokenizerFast``, so the rest of the code treats it like any hub tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from .storage import ZooError

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_bpe(texts: list[str], vocab_size: int, path: Path, wrap: bool = False):
    """Train a byte-level BPE on ``texts`` with :data:`SPECIAL_TOKENS` and save it to ``path``.

    ``wrap=True`` makes encoding add ``<s> ... </s>`` around each text (what a RoBERTa classifier reads
    its sentence vector from); causal LMs keep the plain stream.
    """
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS.values()), show_progress=False
    )
    if wrap:
        bos, eos = SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]
        bpe.post_processor = TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, bpe.token_to_id(bos)), (eos, bpe.token_to_id(eos))]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    bpe.save(str(path))
    return load_bpe(path)


def load_bpe(path: Path):
    """The tokenizer saved by :func:`train_bpe`, as a ``PreTrainedTokenizerFast``."""
    from transformers import PreTrainedTokenizerFast

    if not path.is_file():
        raise ZooError(
            f"tokenizer {path} is missing; retrain its model with: python -m mbe zoo train "
            f"{path.name.removesuffix('.tokenizer.json')}"
        )
    return PreTrainedTokenizerFast(tokenizer_file=str(path), **SPECIAL_TOKENS)
