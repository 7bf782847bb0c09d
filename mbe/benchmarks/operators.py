"""Each spiking operator (fused, event) against its exact torch op, at one ViT-B/16 layer's sizes."""

from __future__ import annotations

#: label -> key; realistic sizes: one ViT-B/16 layer at 197 tokens
CASES = {
    "softmax 12x197x197": "softmax",
    "gelu 197x3072": "gelu",
    "layer_norm 197x768": "layer_norm",
    "QK^T 12x197x64 @ 12x64x197": "qk",
    "attn V 12x197x197 @ 12x197x64": "av",
}


def cases(timesteps, event_timesteps):
    out = []
    for label, key in CASES.items():
        out.append((label, key, "baseline", 0, 20))
        out += [(label, key, "fused", t, 5) for t in timesteps]
        out += [(label, key, "event", t, 1) for t in event_timesteps]
    return out


def _inputs(key: str) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    if key == "softmax":
        return {"x": torch.randn(12, 197, 197, generator=g) * 2}
    if key == "gelu":
        return {"x": torch.randn(197, 3072, generator=g) * 1.5 - 0.5}
    if key == "layer_norm":
        return {"x": torch.randn(197, 768, generator=g), "w": torch.ones(768), "b": torch.zeros(768)}
    if key == "qk":
        return {"a": torch.randn(12, 197, 64, generator=g), "b": torch.randn(12, 64, 197, generator=g)}
    if key == "av":
        return {
            "a": torch.softmax(torch.randn(12, 197, 197, generator=g), -1),
            "b": torch.randn(12, 197, 64, generator=g),
        }
    raise ValueError(f"unknown operator case {key!r}")


def build(key: str, impl: str, timesteps: int):
    import torch

    from .. import ops

    inp = _inputs(key)
    elements = next(iter(inp.values())).numel()
    if impl == "baseline":
        fn = {
            "softmax": lambda: torch.softmax(inp["x"], -1),
            "gelu": lambda: torch.nn.functional.gelu(inp["x"]),
            "layer_norm": lambda: torch.nn.functional.layer_norm(inp["x"], (768,), inp["w"], inp["b"]),
            "qk": lambda: inp["a"] @ inp["b"],
            "av": lambda: inp["a"] @ inp["b"],
        }[key]
        return fn, elements
    kw = {"timesteps": timesteps, "mode": impl}
    fn = {
        "softmax": lambda: ops.spiking_softmax(inp["x"], **kw),
        "gelu": lambda: ops.spiking_activation("gelu", inp["x"], **kw),
        "layer_norm": lambda: ops.spiking_layer_norm(inp["x"], 768, inp["w"], inp["b"], **kw),
        "qk": lambda: ops.spiking_matmul(inp["a"], inp["b"], **kw),
        "av": lambda: ops.spiking_matmul(inp["a"], inp["b"], **kw),
    }[key]
    return fn, elements
