"""lm-evaluation-harness on a converted causal LM (``mbe.integrations.lm_eval``): the harness's per-request
log-likelihoods of a spiking tiny Llama equal the ones computed here from ``snn(input_ids).logits``.

Offline: a tiny random Llama (``mbe.zoo.tiny``), a word-level tokenizer built from a few sentences, and three
local tasks written as JSON-lines files and task YAMLs into ``tmp_path`` (``multiple_choice``,
``loglikelihood``, ``loglikelihood_rolling``). Skipped when lm-eval is not installed (``pip install -e '.[lmeval]'``).
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

pytest.importorskip(
    "lm_eval.models.huggingface", reason="lm-eval (optional extra) is not installed: pip install -e '.[lmeval]'"
)

import mbe  # noqa: E402
from mbe.integrations import evaluate_tasks, harness_model  # noqa: E402
from mbe.zoo.tiny import tiny_model  # noqa: E402

SENTENCES = [
    "the cat sat on the mat",
    "the dog ran in the park",
    "the sun is hot and the sea is cold",
    "a bird flew over the green tree",
    "fish swim in the blue sea",
    "is the sun hot ? yes",
    "is the sea hot ? no",
]
MC_DOCS = [  # multiple_choice: one-token and several-token choices
    {"query": "question : is the sun hot ? answer :", "choices": ["yes", "no", "red"], "gold": 0},
    {"query": "the cat sat on the", "choices": ["mat", "green tree", "blue sea"], "gold": 0},
    {"query": "a bird flew over the", "choices": ["green tree", "fish swim", "park"], "gold": 0},
    {"query": "question : is the sea hot ? answer :", "choices": ["yes", "no", "cold and blue"], "gold": 1},
]
LL_DOCS = [  # loglikelihood: a context and a continuation of one or more tokens
    {"context": "the dog ran in the", "continuation": "park"},
    {"context": "the sun is hot and the sea is", "continuation": "cold"},
    # the same tokens as MC_DOCS[2] with its first choice, split elsewhere: lm-eval 0.4.13's logits cache
    # answers the shorter of the two wrongly; harness_model sidesteps it (mbe.integrations.lm_eval.split_collision)
    {"context": "a bird", "continuation": "flew over the green tree"},
]
ROLLING_DOCS = [{"text": s} for s in SENTENCES[:3]]  # loglikelihood_rolling: every token, after the eos token


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for s in SENTENCES + [d["query"] for d in MC_DOCS] for w in s.split()})
    words += sorted({w for d in MC_DOCS for c in d["choices"] for w in c.split()} - set(words))
    vocab = {tok: i for i, tok in enumerate(["<unk>", "<pad>", "<eos>"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def _write_tasks(folder) -> None:
    """Three task YAMLs (written as JSON, a subset of YAML) and their JSON-lines documents in ``folder``."""
    cache = str(folder / "hf_datasets")

    def task(name, docs, **config):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        dataset = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": cache}}
        (folder / f"{name}.yaml").write_text(json.dumps({"task": name, **dataset, "test_split": "test", **config}))

    task(
        "mbe_tiny_mc",
        MC_DOCS,
        output_type="multiple_choice",
        doc_to_text="{{query}}",
        doc_to_choice="{{choices}}",
        doc_to_target="{{gold}}",
        metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    )
    task(
        "mbe_tiny_ll",
        LL_DOCS,
        output_type="loglikelihood",
        doc_to_text="{{context}}",
        doc_to_target="{{' ' + continuation}}",  # no target_delimiter for loglikelihood (as in lambada)
        metric_list=[
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
    )
    task(
        "mbe_tiny_rolling",
        ROLLING_DOCS,
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="{{text}}",
        metric_list=[{"metric": "word_perplexity"}],
    )


TASKS = ["mbe_tiny_mc", "mbe_tiny_ll", "mbe_tiny_rolling"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(tokenizer, ann, snn at T=16, task folder). The SNN uses the shipped neuron tables
    (``activation_domain="table"``, the registry's N), so nothing is fitted; ``MBE_CACHE_DIR`` points into the
    test's folder and the test checks it stays empty. The neurons run their eager path (``MBE_COMPILE=0``). Both
    variables hold for every test of this module."""
    folder = tmp_path_factory.mktemp("lm_eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MBE_COMPILE", "0")
        mp.setenv("MBE_CACHE_DIR", str(folder / "fits"))
        tokenizer = _tokenizer()
        ann, _ = tiny_model("llama")
        assert len(tokenizer) <= ann.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        calibration = [{"input_ids": torch.randint(3, len(tokenizer), (2, 16), generator=gen)} for _ in range(2)]
        config = mbe.ConversionConfig(timesteps=16, activation_domain="table", n_basis={})
        snn = mbe.convert(ann, calibration, config, progress=False)
        tasks = folder / "tasks"
        tasks.mkdir()
        _write_tasks(tasks)
        yield tokenizer, ann, snn, tasks
        fits = folder / "fits"
        assert not fits.exists() or not any(fits.rglob("*.json")), "a neuron was fitted: the test would be slow"


@torch.no_grad()
def _direct(model, tokenizer, context: str, continuation: str) -> float:
    """mbe's own log-likelihood of ``continuation`` after ``context``: the tokens of ``context + continuation``
    past those of ``context`` (an empty context is the eos token), scored by
    ``log_softmax(model(input_ids).logits)`` of one unpadded sequence, float64 sum."""
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    if context:
        ctx, whole = encode(context), encode(context + continuation)
    else:  # lm-eval's prefix token: bos, else eos
        ctx = [tokenizer.eos_token_id]
        whole = ctx + encode(continuation)
    cont = torch.tensor(whole[len(ctx) :])
    assert len(ctx) >= 1 and len(cont) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # domain clamping is counted in the conversion report
        logits = model(torch.tensor(whole[:-1])[None]).logits[0].float()
    logp = logits.log_softmax(-1)[len(ctx) - 1 :]
    return float(logp.gather(-1, cont[:, None]).double().sum())


def _requests(results, tasks=TASKS) -> list[tuple[str, str, str, float]]:
    """``(task, context, continuation, harness log-likelihood)`` for every request the harness ran."""
    out = []
    for task in tasks:
        for sample in results["samples"][task]:
            for args, resp in zip(sample["arguments"], sample["resps"], strict=True):
                answer = resp[0]
                if task == "mbe_tiny_rolling":  # (text,) -> log p(text | eos)
                    out.append((task, "", args[0], float(answer)))
                else:  # (context, continuation) -> (log p, is_greedy)
                    out.append((task, args[0], args[1], float(answer[0])))
    return out


def _check(model, tokenizer, results) -> dict:
    """Assert every harness log-likelihood equals :func:`_direct`; return them by request."""
    got = {}
    for task, context, continuation, harness in _requests(results):
        direct = _direct(model, tokenizer, context, continuation)
        assert harness == pytest.approx(direct, rel=1e-5, abs=1e-6), (task, context, continuation)
        got[(task, context, continuation)] = (harness, direct)
    assert len(got) == 3 * len(MC_DOCS) + len(LL_DOCS) + len(ROLLING_DOCS)
    return got


@pytest.mark.slow  # a spiking forward pass takes ~0.3-0.7 s on 2 cores
def test_harness_loglikelihoods_match_mbe(setup):
    """ANN and SNN (T=16) through lm-eval's HFLM, batched (4 requests per forward, right-padded): each request's
    log-likelihood equals log_softmax of the model's own logits for that request alone; the multiple-choice
    accuracy is the argmax of those numbers."""
    tokenizer, ann, snn, tasks = setup
    out = {}
    for name, model in (("ann", ann), ("snn", snn)):
        res = evaluate_tasks(model, tokenizer, TASKS, task_dir=tasks, batch_size=4, bootstrap_iters=0)
        assert snn.mbe_state.config.timesteps == 16
        out[name] = _check(model, tokenizer, res)
        chosen = [
            max(
                range(len(doc["choices"])),
                key=lambda i, doc=doc: out[name][("mbe_tiny_mc", doc["query"], " " + doc["choices"][i])][1],
            )
            for doc in MC_DOCS
        ]
        acc = sum(c == doc["gold"] for c, doc in zip(chosen, MC_DOCS, strict=True)) / len(MC_DOCS)
        assert res["results"]["mbe_tiny_mc"]["acc,none"] == pytest.approx(acc)
    # the spiking model is close to the ANN but not the same computation
    diffs = [abs(out["snn"][k][1] - out["ann"][k][1]) for k in out["ann"]]
    assert 0 < max(diffs) < 0.1  # measured: 0.022 nats at most


@pytest.mark.slow  # a spiking forward pass takes ~0.3-0.7 s on 2 cores
def test_timesteps_and_direct_instances(setup):
    """``timesteps=`` sets T in place before evaluating; a bare ``harness_model`` answers lm-eval ``Instance``s
    one at a time with the same numbers as a batched run."""
    from lm_eval.api.instance import Instance

    tokenizer, ann, snn16, tasks = setup
    gen = torch.Generator().manual_seed(0)
    calibration = [{"input_ids": torch.randint(3, len(tokenizer), (2, 16), generator=gen)} for _ in range(2)]
    config = mbe.ConversionConfig(timesteps=16, activation_domain="table", n_basis={})
    snn = mbe.convert(ann, calibration, config, progress=False)
    res = evaluate_tasks(snn, tokenizer, ["mbe_tiny_ll"], task_dir=tasks, timesteps=8, batch_size=3, bootstrap_iters=0)
    assert snn.mbe_state.config.timesteps == 8
    ran = _requests(res, ["mbe_tiny_ll"])
    requests, harness8 = [(ctx, cont) for _, ctx, cont, _ in ran], [h for *_, h in ran]
    for (ctx, cont), h in zip(requests, harness8, strict=True):
        assert h == pytest.approx(_direct(snn, tokenizer, ctx, cont), rel=1e-5, abs=1e-6)
    t16 = [_direct(snn16, tokenizer, ctx, cont) for ctx, cont in requests]
    assert any(abs(a - b) > 1e-4 for a, b in zip(harness8, t16, strict=True)), "T=8 and T=16 should differ"

    lm = harness_model(snn, tokenizer, batch_size=1)
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, cont), idx=0) for ctx, cont in requests]
    single = lm.loglikelihood(instances, disable_tqdm=True)
    assert [ll for ll, _ in single] == pytest.approx(harness8, rel=1e-6, abs=1e-7)
    assert all(isinstance(ll, float) and isinstance(greedy, bool) for ll, greedy in single)
    assert all(math.isfinite(ll) and ll < 0 for ll, _ in single)


def test_split_collision_guard(setup):
    """Two requests over the same tokens, split differently, in one batch: both answers exact (lm-eval's own
    logits cache would give the shorter one the log-probabilities of the wrong positions)."""
    from lm_eval.api.instance import Instance

    from mbe.integrations.lm_eval import split_collision

    tokenizer, ann, _, _ = setup
    pairs = [("a bird flew over the", " green tree"), ("a bird", " flew over the green tree")]
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    tokenized = [(p, encode(p[0]), encode(p[0] + p[1])[len(encode(p[0])) :]) for p in pairs]
    assert split_collision(tokenized) and not split_collision(tokenized[:1])
    lm = harness_model(ann, tokenizer, batch_size=2)
    assert lm.logits_cache  # the harness's default stays on for the calls it is right for
    got = lm.loglikelihood([Instance("loglikelihood", {}, p, 0) for p in pairs], disable_tqdm=True)
    assert [ll for ll, _ in got] == pytest.approx([_direct(ann, tokenizer, *p) for p in pairs], rel=1e-5, abs=1e-6)
    assert lm.logits_cache


def test_bad_arguments(setup):
    tokenizer, ann, snn, tasks = setup
    with pytest.raises(TypeError, match="snn_or_model"):
        harness_model("llama", tokenizer)
    with pytest.raises(TypeError, match="snn_or_model"):
        harness_model(torch.nn.Linear(2, 2), tokenizer)
    with pytest.raises(TypeError, match="tokenizer"):
        harness_model(ann, "gpt2")
    with pytest.raises(ValueError, match="batch_size"):
        harness_model(ann, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        harness_model(ann, tokenizer, batch_size="big")
    with pytest.raises(ValueError, match="max_length"):
        harness_model(ann, tokenizer, max_length=0)
    with pytest.raises(ValueError, match="timesteps"):
        evaluate_tasks(ann, tokenizer, TASKS, task_dir=tasks, timesteps=8)
    with pytest.raises(ValueError, match="timesteps"):
        evaluate_tasks(snn, tokenizer, TASKS, task_dir=tasks, timesteps=0)
    with pytest.raises(ValueError, match="tasks"):
        evaluate_tasks(ann, tokenizer, [], task_dir=tasks)
    with pytest.raises(ValueError, match="task_dir"):
        evaluate_tasks(ann, tokenizer, TASKS, task_dir=tasks / "missing")
    with pytest.raises(ValueError, match="limit"):
        evaluate_tasks(ann, tokenizer, TASKS, task_dir=tasks, limit=0)
    with pytest.raises(ValueError, match="num_fewshot"):
        evaluate_tasks(ann, tokenizer, TASKS, task_dir=tasks, num_fewshot=-1)
    with pytest.raises(ValueError, match="include_defaults"):
        evaluate_tasks(ann, tokenizer, TASKS, include_defaults=False)
    with pytest.raises(TypeError, match="task_manager"):
        evaluate_tasks(ann, tokenizer, TASKS, task_dir=tasks, task_manager=None)
    with pytest.raises(TypeError, match="model"):
        evaluate_tasks("llama", tokenizer, TASKS, task_dir=tasks)
    assert snn.mbe_state.config.timesteps == 16  # the failed call did not change T


def test_missing_lm_eval_names_the_extra(setup, monkeypatch):
    import sys

    tokenizer, ann, _, _ = setup
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[lmeval\]'"):
        harness_model(ann, tokenizer)
