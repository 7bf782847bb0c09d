"""One-call conversion of any Transformer into its spiking twin (paper section 3).

``snn = mbe.convert(model, calibration, mbe.ConversionConfig(timesteps=16))`` deep-copies ``model`` (the
original stays usable as the ANN) and replaces what it recognises, by what modules compute rather than by
their class names:

- **module sites** through a registry of handlers (:mod:`.registry`; built-ins in :mod:`.handlers`: norms
  recognised on a probe, including RMSNorm's ``1 + weight`` variant; activations by the function they
  compute; gated MLPs; max pooling), extensible with :func:`register_site`;
- **attention** of every model that routes through transformers' ``AttentionInterface``
  (:mod:`.handlers.attention`);
- **inline calls** to tanh/GELU/SiLU/sigmoid/ReLU, softmax and scaled-dot-product attention in a model's
  own code (:mod:`.handlers.inline`).

Calibration (paper appendix Algorithm 1) runs the batches with every site exact, recording input intervals
(the encoding ranges) and checking each replacement's analog reference against the module it replaced;
mismatches and unrecognised modules stay analog and are reported (:func:`conversion_report`). Weights are
never modified; linear layers, embeddings and residual additions stay as they are (a linear layer fed a
spike train with intensities computes the same sum).

Layout: :mod:`.config` (:class:`ConversionConfig`), :mod:`.sites` (:class:`Site`, the shared state),
:mod:`.base` (:class:`SiteModule`), :mod:`.registry`, :mod:`.handlers`, :mod:`.api` (the functions),
:mod:`.report`, :mod:`.budget` (the error budget), :mod:`.matrix` (the support matrix), :mod:`.persist`
(:func:`save` and :func:`load`: a conversion stored and restored without calibrating).
"""

from .api import ConversionWarning, calibrate, convert, reset_stats, set_timesteps, sites, spiking_modules
from .base import SiteModule
from .budget import error_budget, layer_of
from .config import SITE_KINDS, ConversionConfig, default_n_basis
from .handlers.activation import build_activation, which_function
from .handlers.attention import ATTENTION_NAME, spiking_attention
from .handlers.norm import build_norm, norm_spec
from .persist import ConversionFileError, load, model_fingerprint, save
from .registry import (
    SiteHandler,
    SiteSpec,
    Unsupported,
    find_handler,
    handlers,
    linear_reason,
    register_site,
    unregister_site,
)
from .report import conversion_report
from .sites import ConversionState, Site

__all__ = [
    "ATTENTION_NAME",
    "SITE_KINDS",
    "ConversionConfig",
    "ConversionFileError",
    "default_n_basis",
    "ConversionState",
    "ConversionWarning",
    "Site",
    "SiteHandler",
    "SiteModule",
    "SiteSpec",
    "Unsupported",
    "build_activation",
    "build_norm",
    "calibrate",
    "conversion_report",
    "convert",
    "error_budget",
    "find_handler",
    "handlers",
    "layer_of",
    "linear_reason",
    "load",
    "model_fingerprint",
    "norm_spec",
    "register_site",
    "reset_stats",
    "save",
    "set_timesteps",
    "sites",
    "spiking_attention",
    "spiking_modules",
    "unregister_site",
    "which_function",
]
