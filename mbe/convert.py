"""One-call conversion of Hugging Face Transformers into spiking twins (paper section 3).

``snn = mbe.convert(model, calibration, mbe.ConversionConfig(timesteps=16))`` deep-copies ``model`` (the
original stays usable as the ANN), then uses the library's own extension points:

- attention: a function registered with ``transformers.AttentionInterface`` (plus a mask builder with
  ``AttentionMaskInterface``, so padded batches keep their mask) computes ``Q K^T``, softmax and
  ``attn V`` with :mod:`mbe.ops`; the copy is switched to it with ``set_attn_implementation``;
- module swaps: LayerNorm/RMSNorm, activations (GELU, tanh-GELU, SiLU, tanh, sigmoid) and Llama's gated
  MLP product are replaced by spiking modules that hold the *same* parameters under the same names.

Calibration (paper appendix Algorithm 1) runs the calibration batches through the copy with every site
in exact mode, recording each site's input interval; those intervals become the encoding ranges. Weights
are never modified; linear layers, embeddings and residual additions stay as they are (a linear layer fed
a spike train with intensities computes the same sum; see :func:`conversion_report`'s analog list).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional

import pandas as pd
import torch
from torch import Tensor, nn

from . import ops
from .stats import OpStats

ATTENTION_NAME = "mbe_spiking"
SITE_KINDS = ("attention", "norm", "activation", "gated_product", "pool")
#: the neuron whose N a site's report row shows (activations name their own function)
SITE_FUNCTION = {"attention": "exp2", "norm": "rsqrt", "gated_product": "identity", "pool": "relu"}


@dataclass
class ConversionConfig:
    """What to convert and how.

    Attributes:
        timesteps: T for every neuron.
        n_basis: per-function basis counts, e.g. ``{"gelu": 8}``; unset functions use the paper's N.
        mode: ``"fused"`` or ``"event"`` (see :mod:`mbe.ops`).
        convert: site kinds to make spiking (``"attention"``, ``"norm"``, ``"activation"``, ``"pool"``,
            ``"gated_product"``); leave one out for partial conversion or ablations.
        exclude: site-name substrings to leave analog (e.g. ``["layer.0."]``).
        calibration_margin: widen each calibrated interval by this fraction of its width on both sides.
        allow_partial: list unknown nonlinear modules as analog instead of raising.
        refine, row_scaling: the operators' switches (``0``/``False`` = the paper).
        budget_mb: event mode's memory budget per tile.
        neurons: per-function neuron overrides, e.g. ``{"gelu": fs_neuron}`` (the FS or no-decay
            ablations); each must run the config's T. They take precedence over tables and calibrated fits.
        activation_domain: ``"table"`` uses the shipped neurons on the paper's domains (no fitting);
            ``"calibrated"`` fits one neuron per activation function on the union of its sites'
            calibrated intervals (best recipe, a few seconds each, cached per T), far more accurate where
            activations are small; :func:`set_timesteps` then fits for a new T once.
    """

    timesteps: int = 16
    n_basis: dict = field(default_factory=dict)
    mode: str = "fused"
    convert: tuple = SITE_KINDS
    exclude: tuple = ()
    calibration_margin: float = 0.05
    allow_partial: bool = False
    refine: int = 1
    row_scaling: bool = True
    budget_mb: float = 256.0
    activation_domain: str = "table"
    neurons: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.activation_domain not in ("table", "calibrated"):
            raise ValueError(
                f"ConversionConfig.activation_domain must be 'table' or 'calibrated', got {self.activation_domain!r}"
            )
        ops.encoding.check_mode(self.mode)
        unknown = set(self.convert) - set(SITE_KINDS)
        if unknown:
            raise ValueError(
                f"ConversionConfig.convert: unknown site kinds {sorted(unknown)}; choose from {SITE_KINDS}"
            )
        _check_timesteps(self.timesteps)
        for name in ("convert", "exclude"):
            if not isinstance(getattr(self, name), (tuple, list)):
                raise TypeError(
                    f"ConversionConfig.{name} must be a tuple or list of strings, "
                    f"got {type(getattr(self, name)).__name__}"
                )
        if not isinstance(self.n_basis, dict):
            raise TypeError(
                f"ConversionConfig.n_basis must be a dict {{function: N}}, got {type(self.n_basis).__name__}"
            )
        from .functions import list_functions

        for fn, n in self.n_basis.items():
            if fn not in list_functions():
                raise ValueError(f"ConversionConfig.n_basis: unknown function {fn!r}; registered: {list_functions()}")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
                raise ValueError(f"ConversionConfig.n_basis[{fn!r}] must be an integer in [1, 64], got {n!r}")
        if not (isinstance(self.calibration_margin, (int, float)) and 0 <= self.calibration_margin < 10):
            raise ValueError(
                f"ConversionConfig.calibration_margin must be a fraction in [0, 10), got {self.calibration_margin!r}"
            )


def _check_timesteps(timesteps) -> None:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 64:
        raise ValueError(f"timesteps must be an integer in [1, 64], got {timesteps!r}")


@dataclass
class Site:
    """One spiking site: its name, kind, operator, calibrated intervals and statistics."""

    name: str
    kind: str
    operator: str
    enabled: bool = True
    ranges: dict = field(default_factory=dict)
    stats: OpStats = field(default_factory=OpStats)

    @property
    def function(self) -> str:
        """The neuron function that characterises the site (an activation's own, else the kind's)."""
        return self.operator.split("'")[1] if "'" in self.operator else SITE_FUNCTION[self.kind]

    def observe(self, key: str, x: Tensor) -> None:
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if key in self.ranges:
            lo, hi = min(lo, self.ranges[key][0]), max(hi, self.ranges[key][1])
        self.ranges[key] = (lo, hi)

    def range(self, key: str, margin: float):
        if key not in self.ranges:
            return None
        lo, hi = self.ranges[key]
        pad = margin * (hi - lo)
        return (lo - pad, hi + pad)


class ConversionState:
    """Shared by every spiking module of one converted model (``snn.mbe_state``)."""

    def __init__(self, config: ConversionConfig):
        self.config = config
        self.sites: dict[str, Site] = {}
        self.calibrating = False
        self.analog: list[tuple[str, str]] = []
        self.fitted: dict[tuple[str, int], object] = {}  # (function, T) -> neuron fitted on calibrated domain

    def fit_activation_neurons(self) -> None:
        """Under ``activation_domain='calibrated'``, fit every activation function's neuron for the current T."""
        for fn in sorted({s.operator.split("'")[1] for s in self.sites.values() if s.kind == "activation"}):
            self.activation_neurons(fn)

    def activation_neurons(self, function: str) -> Optional[dict]:
        """``{function: neuron}`` for :func:`mbe.ops.spiking_activation` under ``activation_domain='calibrated'``."""
        cfg = self.config
        if cfg.activation_domain == "table":
            return None
        key = (function, cfg.timesteps)
        if key not in self.fitted:
            from .fitting import fit_neuron

            spans = [
                s.range("input", cfg.calibration_margin)
                for s in self.sites.values()
                if s.kind == "activation" and s.operator == f"spiking_activation({function!r})" and s.ranges
            ]
            if not spans:
                return None
            lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
            self.fitted[key] = fit_neuron(
                function, domain=(lo, hi), n_basis=cfg.n_basis.get(function), timesteps=cfg.timesteps
            ).neuron
        return {function: self.fitted[key]}

    def site(self, name: str, kind: str, operator: str) -> Site:
        if name not in self.sites:
            enabled = kind in self.config.convert and not any(e in name for e in self.config.exclude)
            self.sites[name] = Site(name, kind, operator, enabled)
        return self.sites[name]

    def op_kwargs(self, site: Site) -> dict:
        cfg = self.config
        return {"timesteps": cfg.timesteps, "mode": cfg.mode, "stats": site.stats, "neurons": cfg.neurons or None}


# ---------------------------------------------------------------------------------------------
# spiking modules (same parameter names as the modules they replace)
# ---------------------------------------------------------------------------------------------
class SpikingLayerNorm(nn.Module):
    """Replaces ``nn.LayerNorm``, keeping its ``weight``/``bias`` Parameters (same objects)."""

    def __init__(self, original: nn.LayerNorm, site: Site, state: ConversionState):
        super().__init__()
        self.normalized_shape = tuple(original.normalized_shape)
        self.eps = original.eps
        self.weight = original.weight
        self.bias = original.bias
        self.site, self.state = site, state

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.state.config
        if self.state.calibrating or not self.site.enabled:
            if self.state.calibrating:
                dims = tuple(range(-len(self.normalized_shape), 0))
                self.site.observe("centered", x - x.mean(dims, keepdim=True))
            return nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return ops.spiking_layer_norm(
            x,
            self.normalized_shape,
            self.weight,
            self.bias,
            self.eps,
            refine=cfg.refine,
            row_scaling=cfg.row_scaling,
            centered_range=self.site.range("centered", cfg.calibration_margin),
            budget_mb=cfg.budget_mb,
            n_basis=cfg.n_basis.get("rsqrt"),
            name="layer_norm",
            **self.state.op_kwargs(self.site),
        )

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, site={self.site.name!r}"


class SpikingRMSNorm(nn.Module):
    """Replaces a Llama-style RMSNorm (``weight``, ``variance_epsilon``), keeping its ``weight``."""

    def __init__(self, original: nn.Module, site: Site, state: ConversionState):
        super().__init__()
        self.weight = original.weight
        self.variance_epsilon = getattr(original, "variance_epsilon", getattr(original, "eps", 1e-6))
        self.site, self.state = site, state

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.state.config
        dtype = x.dtype
        xf = x.to(torch.float32)
        if self.state.calibrating or not self.site.enabled:
            if self.state.calibrating:
                self.site.observe("input", xf)
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        else:
            y = ops.spiking_rms_norm(
                xf,
                None,
                self.variance_epsilon,
                refine=cfg.refine,
                row_scaling=cfg.row_scaling,
                input_range=self.site.range("input", cfg.calibration_margin),
                budget_mb=cfg.budget_mb,
                n_basis=cfg.n_basis.get("rsqrt"),
                name="rms_norm",
                **self.state.op_kwargs(self.site),
            )
        return self.weight * y.to(dtype)


class SpikingActivation(nn.Module):
    """Replaces an activation module by one fitted neuron (``function`` from the registry)."""

    def __init__(self, function: str, exact: nn.Module, site: Site, state: ConversionState):
        super().__init__()
        self.function = function
        self.exact = exact
        self.site, self.state = site, state

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.state.config
        if self.state.calibrating or not self.site.enabled:
            if self.state.calibrating:
                self.site.observe("input", x)
            return self.exact(x)
        kw = self.state.op_kwargs(self.site)
        fitted = self.state.activation_neurons(self.function)
        if fitted:  # calibrated fits, under any explicit override
            kw["neurons"] = {**fitted, **(cfg.neurons or {})}
        return ops.spiking_activation(self.function, x, n_basis=cfg.n_basis.get(self.function), **kw)

    def extra_repr(self) -> str:
        return f"{self.function!r}, site={self.site.name!r}"


class SpikingGatedMLP(nn.Module):
    """Replaces Llama's MLP ``down(act(gate(x)) * up(x))``: the product becomes a spiking product.

    Keeps ``gate_proj``, ``up_proj``, ``down_proj`` (same modules) and the (converted) ``act_fn``.
    """

    def __init__(self, original: nn.Module, site: Site, state: ConversionState):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = original.gate_proj, original.up_proj, original.down_proj
        self.act_fn = original.act_fn
        self.site, self.state = site, state

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.state.config
        act, up = self.act_fn(self.gate_proj(x)), self.up_proj(x)
        if self.state.calibrating or not self.site.enabled:
            if self.state.calibrating:
                self.site.observe("act", act)
                self.site.observe("up", up)
            return self.down_proj(act * up)
        prod = ops.spiking_mul(
            act,
            up,
            ranges=(self.site.range("act", cfg.calibration_margin), self.site.range("up", cfg.calibration_margin)),
            budget_mb=cfg.budget_mb,
            n_basis=cfg.n_basis.get("identity"),
            name="gated_product",
            **self.state.op_kwargs(self.site),
        )
        return self.down_proj(prod)


class SpikingMaxPool2d(nn.Module):
    """Replaces ``nn.MaxPool2d`` (square kernel, no dilation): comparisons by the ReLU neuron."""

    def __init__(self, original: nn.MaxPool2d, site: Site, state: ConversionState):
        super().__init__()
        k, s, p, dil = (original.kernel_size, original.stride, original.padding, original.dilation)
        if (
            any(isinstance(v, tuple) and len(set(v)) > 1 for v in (k, s, p))
            or dil not in (1, (1, 1))
            or original.ceil_mode
            or original.return_indices
        ):
            raise ValueError(
                f"mbe.convert: {site.name}: only square, undilated MaxPool2d without ceil_mode or "
                f"indices is supported, got {original}"
            )
        self.kernel_size, self.stride, self.padding = (v[0] if isinstance(v, tuple) else v for v in (k, s, p))
        self.exact = original
        self.site, self.state = site, state

    def forward(self, x: Tensor) -> Tensor:
        if self.state.calibrating or not self.site.enabled:
            if self.state.calibrating:
                self.site.observe("input", x)
            return self.exact(x)
        cfg = self.state.config
        return ops.spiking_max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            n_basis=cfg.n_basis.get("relu"),
            **self.state.op_kwargs(self.site),
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, site={self.site.name!r}"


class SpikingClassificationHead(nn.Module):
    """Replaces RoBERTa's classification head, whose ``torch.tanh`` is a function call (not a module):
    same ``dense``, ``dropout``, ``out_proj``; the tanh becomes a spiking activation."""

    def __init__(self, original: nn.Module, activation: "SpikingActivation"):
        super().__init__()
        self.dense, self.dropout, self.out_proj = original.dense, original.dropout, original.out_proj
        self.activation = activation

    def forward(self, features: Tensor, **kwargs) -> Tensor:
        x = self.dropout(features[:, 0, :])
        x = self.activation(self.dense(x))
        return self.out_proj(self.dropout(x))


# ---------------------------------------------------------------------------------------------
# the attention function registered with transformers
# ---------------------------------------------------------------------------------------------
def _repeat_kv(x: Tensor, heads: int) -> Tensor:
    if x.shape[1] == heads:
        return x
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def spiking_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Optional[Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs,
):
    """``AttentionInterface`` function: ``softmax(Q K^T * scaling + mask) V`` with spiking operators.

    Shapes: query ``[B, H, Lq, D]``, key/value ``[B, Hkv, Lk, D]`` (grouped heads are repeated), mask
    ``[B, 1, Lq, Lk]`` additive or ``None``. Returns ``([B, Lq, H, D], probs)`` like the eager function.
    """
    state: Optional[ConversionState] = getattr(module, "_mbe_state", None)
    if state is None:
        raise RuntimeError(
            f"{type(module).__name__} runs attn_implementation={ATTENTION_NAME!r} but was not "
            f"converted by mbe.convert(); convert the model instead of setting the implementation"
        )
    site = state.site(module._mbe_name, "attention", "spiking_matmul + spiking_softmax")
    heads = query.shape[1]
    key, value = _repeat_kv(key, heads), _repeat_kv(value, heads)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    cfg = state.config
    if state.calibrating or not site.enabled:
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        if state.calibrating:
            for k_, t_ in (("query", query), ("key", key), ("value", value)):
                site.observe(k_, t_)
        out = torch.matmul(probs, value)
        return out.transpose(1, 2).contiguous(), probs
    kw = dict(state.op_kwargs(site), budget_mb=cfg.budget_mb)
    m = cfg.calibration_margin
    identity_n = cfg.n_basis.get("identity")
    scores = (
        ops.spiking_matmul(
            query,
            key.transpose(-1, -2),
            ranges=(site.range("query", m), site.range("key", m)),
            n_basis=identity_n,
            name="scores",
            **kw,
        )
        * scaling
    )
    probs = ops.spiking_softmax(
        scores, mask=attention_mask, refine=cfg.refine, name="softmax", n_basis=cfg.n_basis.get("exp2"), **kw
    )
    out = ops.spiking_matmul(
        probs,
        value,
        ranges=((0.0, 1.0), site.range("value", m)),
        name="context",
        n_basis=identity_n,
        silent_zeros=True,
        **kw,
    )
    return out.transpose(1, 2).contiguous(), probs


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, spiking_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------
#: leaf modules that are linear (or lookups) and stay as they are
LINEAR_TYPES = (
    "Linear",
    "Conv1D",
    "Conv2d",
    "Embedding",
    "Dropout",
    "Identity",
    "LlamaRotaryEmbedding",
    "ViTPatchEmbeddings",
    "BatchNorm2d",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "Flatten",
)
ACTIVATIONS = {
    "GELUActivation": "gelu",
    "GELU": "gelu",
    "NewGELUActivation": "gelu_tanh",
    "GELUTanh": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",
    "FastGELUActivation": "gelu_tanh",
    "SiLUActivation": "silu",
    "SiLU": "silu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "ReLU": "relu",
}
SUPPORTED_MODELS = (
    "ViTForImageClassification",
    "ViTModel",
    "BertForSequenceClassification",
    "BertModel",
    "RobertaForSequenceClassification",
    "RobertaModel",
    "GPT2LMHeadModel",
    "GPT2Model",
    "LlamaForCausalLM",
    "LlamaModel",
    "ResNetForImageClassification",
    "ResNetModel",
)


def _activation_function(module: nn.Module) -> Optional[str]:
    name = type(module).__name__
    if name == "GELU" and getattr(module, "approximate", "none") == "tanh":
        return "gelu_tanh"
    return ACTIVATIONS.get(name)


def _is_rms_norm(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RMSNorm") and hasattr(module, "weight")


def convert(
    model: nn.Module, calibration: Iterable[dict], config: Optional[ConversionConfig] = None, *, progress: bool = True
) -> nn.Module:
    """Return the spiking twin of ``model`` (a deep copy; ``model`` itself is untouched).

    Args:
        model: a transformers ViT, BERT, RoBERTa, GPT-2 or Llama model (others raise unless
            ``config.allow_partial``).
        calibration: an iterable of input batches, each a dict of the model's forward keywords
            (e.g. ``{"input_ids": ..., "attention_mask": ...}``); at least one.
        config: :class:`ConversionConfig`.
    Returns:
        the converted model, called exactly like ``model``; ``snn.mbe_state`` holds the sites.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mbe.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if config is not None and not isinstance(config, ConversionConfig):
        raise TypeError(f"mbe.convert: config must be a ConversionConfig, got {type(config).__name__}")
    config = config or ConversionConfig()
    cls = type(model).__name__
    if getattr(getattr(model, "config", None), "reorder_and_upcast_attn", False):
        raise ValueError(
            "mbe.convert: GPT-2's reorder_and_upcast_attn path bypasses the attention interface; "
            "set config.reorder_and_upcast_attn=False (the result is the same up to float rounding)"
        )
    if cls not in SUPPORTED_MODELS and not config.allow_partial:
        raise ValueError(
            f"mbe.convert: unsupported architecture {cls}; supported: {', '.join(SUPPORTED_MODELS)}. "
            f"Pass ConversionConfig(allow_partial=True) to convert what mbe knows and keep the rest analog."
        )
    _register_attention()
    snn = copy.deepcopy(model).eval()
    state = ConversionState(config)
    _swap_modules(snn, state)
    for name, module in snn.named_modules():  # the attention function finds its site through its module
        module._mbe_state, module._mbe_name = state, name
    if getattr(snn, "_supports_attention_backend", False):  # CNNs have no attention to route
        snn.set_attn_implementation(ATTENTION_NAME)
    snn.mbe_state = state
    calibrate(snn, calibration, progress=progress)
    state.fit_activation_neurons()
    return snn


def _swap_modules(root: nn.Module, state: ConversionState) -> None:
    unknown = []
    for parent_name, parent in list(root.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            kind = type(child).__name__
            if kind == "RobertaClassificationHead":
                site = state.site(f"{full}.activation", "activation", "spiking_activation('tanh')")
                act = SpikingActivation("tanh", nn.Tanh(), site, state)
                setattr(parent, child_name, SpikingClassificationHead(child, act))
            elif kind == "LlamaMLP" or (
                hasattr(child, "gate_proj")
                and hasattr(child, "up_proj")
                and hasattr(child, "down_proj")
                and hasattr(child, "act_fn")
            ):
                site = state.site(full, "gated_product", "spiking_mul")
                setattr(parent, child_name, SpikingGatedMLP(child, site, state))
            elif isinstance(child, nn.LayerNorm):
                setattr(
                    parent, child_name, SpikingLayerNorm(child, state.site(full, "norm", "spiking_layer_norm"), state)
                )
            elif _is_rms_norm(child):
                setattr(parent, child_name, SpikingRMSNorm(child, state.site(full, "norm", "spiking_rms_norm"), state))
            elif isinstance(child, nn.MaxPool2d):
                setattr(
                    parent, child_name, SpikingMaxPool2d(child, state.site(full, "pool", "spiking_max_pool2d"), state)
                )
            elif _activation_function(child) is not None:
                fn = _activation_function(child)
                site = state.site(full, "activation", f"spiking_activation({fn!r})")
                setattr(parent, child_name, SpikingActivation(fn, child, site, state))
            elif next(child.children(), None) is None and kind not in LINEAR_TYPES:
                unknown.append((full, kind))
    # the swapped-in modules' children (e.g. a gated MLP's act_fn) were visited before the swap
    for name, module in root.named_modules():
        if isinstance(module, SpikingGatedMLP) and not isinstance(module.act_fn, SpikingActivation):
            fn = _activation_function(module.act_fn)
            if fn is None:
                unknown.append((f"{name}.act_fn", type(module.act_fn).__name__))
            else:
                site = state.site(f"{name}.act_fn", "activation", f"spiking_activation({fn!r})")
                module.act_fn = SpikingActivation(fn, module.act_fn, site, state)
    if unknown:
        if not state.config.allow_partial:
            listing = ", ".join(f"{n} ({k})" for n, k in unknown)
            raise ValueError(
                f"mbe.convert: no spiking operator for module(s) {listing}. Pass "
                f"ConversionConfig(allow_partial=True) to keep them analog (they are listed in the report)."
            )
        state.analog.extend(unknown)


@torch.no_grad()
def calibrate(snn: nn.Module, calibration: Iterable[dict], progress: bool = True) -> None:
    """Run the batches with every site exact, recording each site's input intervals (Algorithm 1)."""
    state: ConversionState = snn.mbe_state
    batches = list(calibration)
    if not batches:
        raise ValueError("mbe.convert: calibration is empty; pass at least one batch (a dict of forward kwargs)")
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc="calibrating", leave=False)
    state.calibrating = True
    try:
        for batch in it:
            if not isinstance(batch, dict):
                raise TypeError(f"each calibration batch must be a dict of forward kwargs, got {type(batch).__name__}")
            snn(**batch)
    finally:
        state.calibrating = False


def set_timesteps(snn: nn.Module, timesteps: int) -> nn.Module:
    """Change T in place, reusing the calibration (no recalibration; no refit with the shipped tables,
    one fit per activation function under ``activation_domain='calibrated'``)."""
    _check_timesteps(timesteps)
    state: ConversionState = snn.mbe_state
    state.config = replace(state.config, timesteps=timesteps)
    state.fit_activation_neurons()  # only under activation_domain='calibrated', once per T
    return snn


def reset_stats(snn: nn.Module) -> None:
    for site in snn.mbe_state.sites.values():
        site.stats.reset()


def sites(snn: nn.Module) -> dict[str, Site]:
    """The spiking sites of a converted model by name (raises ``ValueError`` for a model not converted)."""
    state = getattr(snn, "mbe_state", None)
    if not isinstance(state, ConversionState):
        raise ValueError(f"{type(snn).__name__} is not a converted model: run mbe.convert(model, calibration) first")
    return state.sites


def conversion_report(snn: nn.Module) -> pd.DataFrame:
    """One row per site: kind, operator, N, T, calibrated ranges, and (after a run) spikes, firing rate,
    synaptic operations and saturation; then one row per module or part that stays analog."""
    from .functions import get_function

    sites(snn)  # a clear error for a model that was not converted
    state: ConversionState = snn.mbe_state
    cfg = state.config
    rows = []
    for site in state.sites.values():
        frame = site.stats.as_frame()
        spikes = int(frame.spikes.sum()) if len(frame) else 0
        slots = int((frame.elements * frame.n_basis * frame.timesteps).sum()) if len(frame) else 0
        fn = site.function
        override = (cfg.neurons or {}).get(fn)
        n = override.n_basis if override is not None else cfg.n_basis.get(fn, get_function(fn).n_basis)
        fitted = state.fitted.get((fn, cfg.timesteps)) if site.kind == "activation" else None
        fitted = override if override is not None else fitted
        rows.append(
            {
                "site": site.name,
                "kind": site.kind,
                "operator": site.operator,
                "spiking": site.enabled,
                "neuron_domain": str(fitted.domain)
                if fitted is not None
                else (str(get_function(fn).domain) if site.kind == "activation" else ""),
                "n_basis": n,
                "timesteps": cfg.timesteps,
                "mode": cfg.mode,
                "ranges": "; ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in site.ranges.items()),
                "spikes": spikes,
                "firing_rate": spikes / slots if slots else float("nan"),
                "sops": int(frame.sops.sum()) if len(frame) else 0,
                "clamped": int(frame.clamped.sum()) if len(frame) else 0,
            }
        )
    for name, kind in state.analog:
        rows.append({"site": name, "kind": "analog", "operator": kind, "spiking": False})
    for part in (
        "embeddings and position encodings (lookups)",
        "residual additions",
        "linear layers (weights untouched; exact on decoded spike trains)",
    ):
        rows.append({"site": part, "kind": "analog (linear)", "operator": "-", "spiking": False})
    return pd.DataFrame(rows)
