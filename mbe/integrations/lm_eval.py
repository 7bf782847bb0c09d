"""EleutherAI's lm-evaluation-harness for converted causal language models.

A converted model (:func:`mbe.convert`) stays an instance of the transformers class it was copied from and is
called like it, so the harness's own Hugging Face backend, ``lm_eval.models.huggingface.HFLM``, evaluates it
unchanged: :func:`harness_model` wraps an ANN or its spiking twin as ``HFLM(pretrained=<module>, tokenizer=...)``
(no registered model type is needed; the subclass only guards against one lm-eval bug, :func:`split_collision`),
and :func:`evaluate_tasks` runs ``lm_eval.simple_evaluate`` on it at a
chosen T, with task YAMLs from a local folder if wanted::

    from mbe.integrations import evaluate_tasks, harness_model

    snn = mbe.convert(ann, calibration, mbe.ConversionConfig(timesteps=16))
    res = evaluate_tasks(snn, tokenizer, ["my_task"], task_dir="tasks/", timesteps=8)  # sets snn to T=8
    res["results"]["my_task"]["acc,none"]

What the harness computes for a ``loglikelihood`` request ``(context, continuation)`` of a causal LM: it encodes
``context + continuation`` and ``context`` with the tokenizer, takes the tokens past the context's as the
continuation, feeds the whole sequence less its last token to the model (batched, right-padded; causal
attention keeps padding out of every scored position) and returns
``(sum of log_softmax(logits)[t - 1, token_t] over the continuation's tokens, whether each was the argmax)``.
A ``multiple_choice`` task scores each choice this way. The spiking operators act on each row on its own, so
batching and padding change nothing: ``tests/test_lm_eval.py`` checks the harness's numbers against
``log_softmax(snn(input_ids).logits)`` computed here, request by request.

lm-eval is an optional dependency (``pip install -e '.[lmeval]'``); it is imported when a function is called.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from torch import nn

#: how to install the optional dependency (named in the ImportError)
INSTALL_HINT = "pip install -e '.[lmeval]'  (or: pip install 'lm-eval[hf]>=0.4.13,<0.5')"

#: simple_evaluate arguments that evaluate_tasks sets itself
_RESERVED = ("model", "model_args", "tasks", "task_manager", "limit", "num_fewshot", "batch_size", "log_samples")


def _import_lm_eval():
    """``(lm_eval, HFLM, TaskManager, LM)``, or an ImportError saying how to install them."""
    try:
        import lm_eval
        from lm_eval.api.model import LM
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise ImportError(
            f"mbe.integrations.lm_eval needs lm-evaluation-harness with its Hugging Face backend ({err}); "
            f"install it with: {INSTALL_HINT}"
        ) from err
    return lm_eval, HFLM, TaskManager, LM


def split_collision(requests) -> bool:
    """Whether two of lm-eval's tokenized loglikelihood requests ``(strings, context_ids, continuation_ids)`` share
    ``context_ids + continuation_ids[:-1]`` but not the continuation's length.

    lm-eval's logits cache (``HFLM(logits_cache=True)``, its default) runs one forward for all requests with the
    same ``context + continuation[:-1]`` tokens (meant for one-token answers of one context) and, in 0.4.13, then
    gathers each request's log-probabilities from the *leading* positions of the longest continuation's logits:
    for a request with a shorter continuation (another split of the same tokens, e.g. ``("a bird flew over the",
    " green tree")`` beside ``("a bird", " flew over the green tree")``) it returns a wrong number. Such pairs are
    rare within one task but happen when tasks are run together."""
    lengths: dict[tuple, int] = {}
    for _, context, continuation in requests:
        key = tuple(context) + tuple(continuation[:-1])
        if lengths.setdefault(key, len(continuation)) != len(continuation):
            return True
    return False


@functools.lru_cache(maxsize=None)
def _harness_class():
    """``HFLM`` with the logits cache turned off for the calls that :func:`split_collision` finds unsafe."""
    _, HFLM, _, _ = _import_lm_eval()

    class MBEHarnessLM(HFLM):
        """lm-eval's ``HFLM``; a ``_loglikelihood_tokens`` call holding a :func:`split_collision` runs without the
        logits cache (every request scored on its own row), so every answer is exact."""

        def _loglikelihood_tokens(self, requests, *args, **kwargs):
            if not (self.logits_cache and split_collision(requests)):
                return super()._loglikelihood_tokens(requests, *args, **kwargs)
            self.logits_cache = False
            try:
                return super()._loglikelihood_tokens(requests, *args, **kwargs)
            finally:
                self.logits_cache = True

    return MBEHarnessLM


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, str):
        head, _, factor = batch_size.partition(":")
        if head == "auto" and (not factor or factor.replace(".", "", 1).isdigit()):
            return
        raise ValueError(f"batch_size must be a positive int, 'auto' or 'auto:N', got {batch_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be a positive int, 'auto' or 'auto:N', got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, 'auto' or 'auto:N', got {batch_size}")


def harness_model(
    snn_or_model: nn.Module, tokenizer, *, batch_size: Union[int, str] = 1, max_length: Optional[int] = None
):
    """An lm-eval ``LM`` that evaluates ``snn_or_model`` (an ANN or its converted twin) as the harness's
    Hugging Face backend does: ``lm_eval.models.huggingface.HFLM(pretrained=snn_or_model, tokenizer=tokenizer)``.

    Every request goes through ``snn_or_model(input_ids).logits`` on the model's own device and dtype; a spiking
    model runs at its current T (change it with :func:`mbe.set_timesteps`, or use :func:`evaluate_tasks`).
    ``loglikelihood`` and ``loglikelihood_rolling`` (multiple-choice and perplexity tasks) are what this is
    tested for; ``generate_until`` tasks go through ``snn_or_model.generate`` and are not tested here.

    Args:
        snn_or_model: a transformers causal LM (``*ForCausalLM``, ``GPT2LMHeadModel``, ...) or the result of
            :func:`mbe.convert` on one: an ``nn.Module`` with a ``.config`` whose call ``model(input_ids)`` with
            ``input_ids`` a ``[batch, seq]`` long tensor returns ``.logits`` of shape ``[batch, seq, vocab]``.
            Put it on its device first; the harness does not move it. HFLM calls ``.eval()`` on it.
        tokenizer: a ``transformers.PreTrainedTokenizer`` or ``PreTrainedTokenizerFast`` whose ids index the
            model's vocabulary, with an ``eos_token`` (or ``bos_token``): the harness uses it as the context of
            a continuation scored from an empty context. Without a pad token the harness sets one (its unk,
            else its eos token) on this tokenizer object.
        batch_size: requests per forward pass, a positive int, or ``"auto"``/``"auto:N"`` (the harness finds
            the largest that fits). Results do not depend on it (up to float rounding).
        max_length: the longest token sequence the model is given (longer ones are cut from the left), a
            positive int; ``None`` reads it from the model's config (``max_position_embeddings``,
            ``n_positions``, ...; 2048 if none).
    Returns:
        an ``lm_eval.models.huggingface.HFLM`` (an ``lm_eval.api.model.LM``; a subclass that sidesteps an lm-eval
        0.4.13 logits-cache bug, see :func:`split_collision`) for ``lm_eval.simple_evaluate``,
        ``lm_eval.evaluate`` or direct ``loglikelihood([Instance, ...])`` calls, which return one
        ``(log_prob: float, is_greedy: bool)`` per request.
    Raises:
        ImportError: lm-eval is not installed (``pip install -e '.[lmeval]'``).
        TypeError, ValueError: a bad argument (named in the message).
    """
    if not isinstance(snn_or_model, nn.Module):
        raise TypeError(f"harness_model: snn_or_model must be a torch.nn.Module, got {type(snn_or_model).__name__}")
    if getattr(snn_or_model, "config", None) is None:
        raise TypeError(
            f"harness_model: snn_or_model must be a transformers causal LM (or mbe.convert of one) with a "
            f".config; {type(snn_or_model).__name__} has none"
        )
    _check_batch_size(batch_size)
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)):
        raise TypeError(f"harness_model: max_length must be a positive int or None, got {type(max_length).__name__}")
    if max_length is not None and max_length < 1:
        raise ValueError(f"harness_model: max_length must be a positive int or None, got {max_length}")
    _import_lm_eval()  # an ImportError naming the extra, also after the class below was built once
    harness_class = _harness_class()
    import transformers

    if not isinstance(tokenizer, (transformers.PreTrainedTokenizer, transformers.PreTrainedTokenizerFast)):
        raise TypeError(
            "harness_model: tokenizer must be a transformers PreTrainedTokenizer or PreTrainedTokenizerFast "
            f"(load one with AutoTokenizer.from_pretrained(path)), got {type(tokenizer).__name__}"
        )
    if tokenizer.eos_token_id is None and tokenizer.bos_token_id is None:
        raise ValueError(
            "harness_model: tokenizer has neither an eos_token nor a bos_token; lm-eval needs one as the "
            "context of continuations scored from an empty context (set tokenizer.eos_token)"
        )
    return harness_class(pretrained=snn_or_model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


def _task_paths(task_dir) -> Optional[list[str]]:
    if task_dir is None:
        return None
    items = [task_dir] if isinstance(task_dir, (str, os.PathLike)) else task_dir
    if not isinstance(items, (list, tuple)) or not items:
        raise TypeError(
            f"evaluate_tasks: task_dir must be a folder path or a non-empty list of them, got {type(task_dir).__name__}"
        )
    paths = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"evaluate_tasks: task_dir entries must be paths, got {type(item).__name__}")
        if not Path(item).is_dir():
            raise ValueError(f"evaluate_tasks: task_dir {str(item)!r} is not a folder (of lm-eval task YAMLs)")
        paths.append(str(item))
    return paths


def _check_limit(limit) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise TypeError(f"evaluate_tasks: limit must be an int, a float in (0, 1) or None, got {type(limit).__name__}")
    if isinstance(limit, int) and limit < 1 or isinstance(limit, float) and not 0 < limit < 1:
        raise ValueError(
            f"evaluate_tasks: limit must be a positive int (documents per task) or a float in (0, 1) (a fraction "
            f"of them), got {limit!r}"
        )


def evaluate_tasks(
    model,
    tokenizer,
    tasks: Union[str, Sequence[Union[str, dict]]],
    *,
    timesteps: Optional[int] = None,
    task_dir: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], None] = None,
    limit: Union[int, float, None] = None,
    num_fewshot: Optional[int] = None,
    batch_size: Union[int, str] = 1,
    max_length: Optional[int] = None,
    include_defaults: Optional[bool] = None,
    log_samples: bool = True,
    **simple_evaluate_kwargs: Any,
) -> dict:
    """Run lm-evaluation-harness tasks on ``model`` (an ANN or its converted twin) with ``lm_eval.simple_evaluate``
    and return its results dict.

    Args:
        model: a transformers causal LM or :func:`mbe.convert` of one (wrapped with :func:`harness_model`), or an
            ``LM`` that :func:`harness_model` returned (``tokenizer``, ``batch_size`` and ``max_length`` are then
            ignored).
        tokenizer: see :func:`harness_model`.
        tasks: a task, group or tag name, or a list of them (or of lm-eval task config dicts).
        timesteps: T to evaluate a converted model at: :func:`mbe.set_timesteps` is called on it first, which
            changes the model **in place** (it stays at that T afterwards; with the default config a T below 16
            may fit activation neurons once, cached). ``None`` keeps its current T. Only for converted models
            (``ValueError`` for an ANN).
        task_dir: a folder (or list of folders) of task YAMLs, e.g. a local task with ``dataset_path: json`` and
            ``dataset_kwargs: {data_files: ...}``; passed to ``lm_eval.tasks.TaskManager(include_path=...)``.
        limit: at most this many documents per task (an int), or this fraction of them (a float in (0, 1)).
        num_fewshot: few-shot examples per prompt (``None``: each task's own setting, else 0).
        batch_size, max_length: see :func:`harness_model`.
        include_defaults: also index lm-eval's ~15,000 built-in tasks (about 15 s on 2 cores). ``None``: only
            when ``task_dir`` is not given.
        log_samples: keep every request, response and per-document metric in ``results["samples"]``.
        **simple_evaluate_kwargs: passed on to ``lm_eval.simple_evaluate`` (e.g. ``bootstrap_iters=0`` to skip
            stderr bootstrapping, ``random_seed``, ``apply_chat_template``); not ``model``, ``tasks``,
            ``task_manager``, ``limit``, ``num_fewshot``, ``batch_size`` or ``log_samples``.
    Returns:
        ``lm_eval.simple_evaluate``'s dict: ``results[task][f"{metric},{filter}"]`` (e.g. ``"acc,none"``),
        ``"configs"``, ``"n-samples"``, ``"config"`` and, with ``log_samples``, ``"samples"[task]``: one dict
        per document with ``"arguments"`` (the ``(context, continuation)`` pairs) and ``"resps"``/
        ``"filtered_resps"`` (the ``(log_prob, is_greedy)`` answers).
        Note that ``simple_evaluate`` seeds Python's, NumPy's and torch's global generators (its defaults).
    Raises:
        ImportError: lm-eval is not installed (``pip install -e '.[lmeval]'``).
        TypeError, ValueError: a bad argument (named in the message).
    """
    lm_eval, _, TaskManager, LM = _import_lm_eval()
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"evaluate_tasks: tasks must be a task name or a non-empty list of them, got {tasks!r}")
    for task in tasks:
        if not isinstance(task, (str, dict)):
            raise TypeError(f"evaluate_tasks: tasks must hold names (str) or config dicts, got {type(task).__name__}")
    bad = sorted(set(simple_evaluate_kwargs) & set(_RESERVED))
    if bad:
        raise TypeError(f"evaluate_tasks: {bad} are set by evaluate_tasks itself; use its own arguments")
    _check_limit(limit)
    if num_fewshot is not None and (isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int)):
        raise TypeError(f"evaluate_tasks: num_fewshot must be a non-negative int or None, got {num_fewshot!r}")
    if num_fewshot is not None and num_fewshot < 0:
        raise ValueError(f"evaluate_tasks: num_fewshot must be a non-negative int or None, got {num_fewshot}")
    paths = _task_paths(task_dir)
    if include_defaults is None:
        include_defaults = paths is None
    if not isinstance(include_defaults, bool):
        raise TypeError(
            f"evaluate_tasks: include_defaults must be a bool or None, got {type(include_defaults).__name__}"
        )
    if not include_defaults and paths is None:
        raise ValueError("evaluate_tasks: include_defaults=False needs a task_dir, else no task can be found")

    if isinstance(model, LM):
        lm, module = model, getattr(model, "model", None)
    elif isinstance(model, nn.Module):
        lm, module = None, model
    else:
        raise TypeError(
            f"evaluate_tasks: model must be a torch.nn.Module or an lm-eval LM (harness_model), got {type(model).__name__}"
        )
    if timesteps is not None:
        if getattr(module, "mbe_state", None) is None:
            raise ValueError(
                f"evaluate_tasks: timesteps={timesteps!r} applies to a converted model (mbe.convert), but "
                f"{type(module).__name__} has no mbe_state; pass timesteps=None to evaluate an ANN"
            )
        from ..convert import set_timesteps

        set_timesteps(module, timesteps)
    if lm is None:
        lm = harness_model(module, tokenizer, batch_size=batch_size, max_length=max_length)

    manager = TaskManager(include_path=paths, include_defaults=include_defaults)
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=log_samples,
        **simple_evaluate_kwargs,
    )
