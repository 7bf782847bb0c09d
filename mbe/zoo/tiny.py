"""Tiny randomly initialised Hugging Face models, one per supported architecture, for tests and the support matrix.

:func:`tiny_model` builds a model of the task-head class a user would convert (``*ForSequenceClassification``
for text encoders, ``*ForCausalLM`` for decoders, ``*ForConditionalGeneration`` for the encoder-decoders,
``*ForImageClassification`` for vision models) from a config alone (hidden size 32, 2 layers, 4 attention
heads, 2 key/value heads where the architecture has grouped-query attention, vocabulary of 100-110 tokens),
together with one example batch of forward keyword arguments. Nothing is downloaded, so every architecture
can be converted and checked offline in seconds; the weights and the batch depend only on ``seed``.

Batches: text encoders get ``input_ids`` and ``attention_mask`` of shape ``[2, 9]`` with the second row padded
at positions 6-8; causal language models get ``input_ids`` ``[2, 9]``; the encoder-decoders also get
``decoder_input_ids`` ``[2, 5]`` (Whisper gets ``input_features`` instead of text); vision models get
``pixel_values`` ``[2, 3, H, W]`` with ``H = W`` 16 or 32. The ``vit``, ``bert``, ``roberta``, ``gpt2``, ``llama``
and ``resnet`` entries use the same configs and draw order as ``mbe.zoo.hub.tiny_model``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch


class _Spec(NamedTuple):
    config: str  # transformers config class name
    model: str  # transformers model class name
    kwargs: dict[str, Any]  # config keyword arguments
    kind: str  # "text" (encoder, padded mask) | "causal" | "seq2seq" | "audio" (Whisper) | "image"
    id_offset: int = 0  # added to the token ids drawn from [0, 100), e.g. 2 to skip pad_token_id=1
    image_size: int = 16


_ENCODER = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
    num_labels=2,
)
_ROBERTA = {**_ENCODER, "vocab_size": 110, "max_position_embeddings": 40, "pad_token_id": 1}
_DECODER = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
)
_DECODER_HD = {**_DECODER, "head_dim": 8}  # configs whose head_dim defaults to a fixed 128 or 256
_VIT = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
_VIT.update(intermediate_size=64, num_labels=3)

_SPECS: dict[str, _Spec] = {
    "vit": _Spec("ViTConfig", "ViTForImageClassification", _VIT, "image"),
    "deit": _Spec("DeiTConfig", "DeiTForImageClassification", _VIT, "image"),
    "bert": _Spec("BertConfig", "BertForSequenceClassification", _ENCODER, "text"),
    "roberta": _Spec("RobertaConfig", "RobertaForSequenceClassification", _ROBERTA, "text", 2),
    "distilbert": _Spec(
        "DistilBertConfig",
        "DistilBertForSequenceClassification",
        dict(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32, num_labels=2),
        "text",
    ),
    "albert": _Spec("AlbertConfig", "AlbertForSequenceClassification", {**_ENCODER, "embedding_size": 16}, "text"),
    "electra": _Spec("ElectraConfig", "ElectraForSequenceClassification", {**_ENCODER, "embedding_size": 32}, "text"),
    "gpt2": _Spec(
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=99, eos_token_id=99),
        "causal",
    ),
    "gpt_neo": _Spec(
        "GPTNeoConfig",
        "GPTNeoForCausalLM",
        dict(
            vocab_size=100,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            intermediate_size=64,
            max_position_embeddings=32,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
            bos_token_id=99,
            eos_token_id=99,
        ),
        "causal",
    ),
    "opt": _Spec(
        "OPTConfig",
        "OPTForCausalLM",
        dict(
            vocab_size=110,
            hidden_size=32,
            word_embed_proj_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            max_position_embeddings=32,
        ),
        "causal",
        2,
    ),
    "llama": _Spec("LlamaConfig", "LlamaForCausalLM", _DECODER, "causal"),
    "qwen2": _Spec("Qwen2Config", "Qwen2ForCausalLM", _DECODER, "causal"),
    "mistral": _Spec("MistralConfig", "MistralForCausalLM", _DECODER_HD, "causal"),
    "gemma": _Spec("GemmaConfig", "GemmaForCausalLM", _DECODER_HD, "causal"),
    "phi": _Spec("PhiConfig", "PhiForCausalLM", _DECODER, "causal"),
    "t5": _Spec(
        "T5Config",
        "T5ForConditionalGeneration",
        dict(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0),
        "seq2seq",
    ),
    "bart": _Spec(
        "BartConfig",
        "BartForConditionalGeneration",
        dict(
            vocab_size=110,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=32,
        ),
        "seq2seq",
        2,
    ),
    "whisper": _Spec(
        "WhisperConfig",
        "WhisperForConditionalGeneration",
        dict(
            vocab_size=100,
            num_mel_bins=8,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_source_positions=16,  # input_features are [batch, num_mel_bins, 2 * max_source_positions]
            max_target_positions=32,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=0,
            suppress_tokens=None,
            begin_suppress_tokens=None,
        ),
        "audio",
    ),
    "resnet": _Spec(
        "ResNetConfig",
        "ResNetForImageClassification",
        dict(
            num_channels=3,
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            layer_type="basic",
            hidden_act="relu",
            num_labels=3,
        ),
        "image",
        image_size=32,
    ),
    "convnext": _Spec(
        "ConvNextConfig",
        "ConvNextForImageClassification",
        dict(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3),
        "image",
        image_size=32,
    ),
    "swin": _Spec(
        "SwinConfig",
        "SwinForImageClassification",
        dict(image_size=16, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=2, num_labels=3),
        "image",
    ),
    "mobilebert": _Spec(
        "MobileBertConfig",
        "MobileBertForSequenceClassification",
        {**_ENCODER, "embedding_size": 16, "intra_bottleneck_size": 16, "num_feedforward_networks": 2},
        "text",
    ),
    "xlm_roberta": _Spec("XLMRobertaConfig", "XLMRobertaForSequenceClassification", _ROBERTA, "text", 2),
    "bloom": _Spec(
        "BloomConfig", "BloomForCausalLM", dict(vocab_size=100, hidden_size=32, n_layer=2, n_head=4), "causal"
    ),
    "falcon": _Spec(
        "FalconConfig",
        "FalconForCausalLM",
        dict(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_kv_heads=2,
            new_decoder_architecture=True,
            ffn_hidden_size=64,
            max_position_embeddings=32,
        ),
        "causal",
    ),
    "stablelm": _Spec("StableLmConfig", "StableLmForCausalLM", _DECODER, "causal"),
    "gemma2": _Spec("Gemma2Config", "Gemma2ForCausalLM", {**_DECODER_HD, "query_pre_attn_scalar": 8}, "causal"),
    "qwen3": _Spec("Qwen3Config", "Qwen3ForCausalLM", _DECODER_HD, "causal"),
    "olmo": _Spec("OlmoConfig", "OlmoForCausalLM", {**_DECODER, "eos_token_id": 2}, "causal"),
    "mixtral": _Spec(
        "MixtralConfig",
        "MixtralForCausalLM",
        {**_DECODER_HD, "num_local_experts": 4, "num_experts_per_tok": 2},
        "causal",
    ),
    "gpt_neox": _Spec(
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=32,
        ),
        "causal",
    ),
    "mpt": _Spec(
        "MptConfig",
        "MptForCausalLM",
        dict(vocab_size=100, d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=32),
        "causal",
    ),
}

TINY_ARCHS: tuple[str, ...] = tuple(_SPECS)


def tiny_model(arch: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """A tiny randomly initialised model (the task head class, e.g. ``*ForSequenceClassification``,
    ``*ForCausalLM``, ``*ForImageClassification``, or ``*ForConditionalGeneration`` for T5/BART/Whisper)
    in eval mode, and one example batch (a dict of forward kwargs); see the module docstring."""
    if arch not in _SPECS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {TINY_ARCHS}")
    import transformers

    spec = _SPECS[arch]
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (2, 9), generator=gen) + spec.id_offset
    if spec.kind == "text":
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[1, 6:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
    elif spec.kind == "causal":
        batch = {"input_ids": ids}
    elif spec.kind == "seq2seq":
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[1, 6:] = 0
        dec = torch.randint(0, 100, (2, 5), generator=gen) + spec.id_offset
        batch = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}
    elif spec.kind == "audio":
        n = 2 * spec.kwargs["max_source_positions"]
        feats = torch.randn(2, spec.kwargs["num_mel_bins"], n, generator=gen)
        batch = {"input_features": feats, "decoder_input_ids": torch.randint(0, 100, (2, 5), generator=gen)}
    else:
        batch = {"pixel_values": torch.randn(2, 3, spec.image_size, spec.image_size, generator=gen)}
    config = getattr(transformers, spec.config)(**spec.kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model)(config)
    return model.eval(), batch
