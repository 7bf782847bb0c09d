"""Each converted zoo model's forward (fused, event) against its ANN's, on a fixed batch.

The spiking twin is calibrated on the model's usual calibration batches (as the notebooks do), then
one batch is timed: ``vit-mnist`` and ``resnet-mnist`` 100 test digits, ``minilm-tweets`` and ``roberta-tweets`` 32 test tweets,
``gpt2-pydocs`` 4 windows of 128 held-out tokens, ``smollm2-135m`` (only when installed) 1 window.
"""

from __future__ import annotations

#: label -> (zoo name, batch size)
CASES = {
    "vit-mnist (100 digits)": ("vit-mnist", 100),
    "resnet-mnist (100 digits)": ("resnet-mnist", 100),
    "minilm-tweets (32 tweets)": ("minilm-tweets", 32),
    "roberta-tweets (32 tweets)": ("roberta-tweets", 32),
    "gpt2-pydocs (4 x 128 tokens)": ("gpt2-pydocs", 4),
    "smollm2-135m (1 x 128 tokens)": ("smollm2-135m", 1),
}
#: event mode simulates every spike pair; on the largest models a single call takes minutes
EVENT_SKIP = {"smollm2-135m (1 x 128 tokens)", "minilm-tweets (32 tweets)"}


def cases(timesteps, event_timesteps):
    from ..zoo import smollm2

    out = []
    for label, (name, _) in CASES.items():
        if name == smollm2.NAME and not smollm2.available():
            continue
        out.append((label, label, "baseline", 0, 5))
        out += [(label, label, "fused", t, 3) for t in timesteps]
        if label not in EVENT_SKIP:
            out += [(label, label, "event", t, 1) for t in event_timesteps]
    return out


def build(label: str, impl: str, timesteps: int):
    from ..convert import ConversionConfig, convert
    from ..zoo import MODELS

    name, size = CASES[label]
    zoo = MODELS[name]
    ann = zoo.load()
    test = zoo.batches("test", batch_size=size, limit=size, labels=False)[0]
    model = ann
    if impl != "baseline":
        calib = zoo.batches(
            "train", batch_size=min(size, 32), limit=min(size, 32) if name != "gpt2-pydocs" else 8, labels=False
        )
        model = convert(ann, calib, ConversionConfig(timesteps=timesteps, mode=impl), progress=False)
    return (lambda: model(**test)), 0
