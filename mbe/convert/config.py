"""What a conversion does: :class:`ConversionConfig`, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from ..neuron.base import validate_counts
from ..ops.encoding import check_mode

#: the kinds of spiking site a converted model has
SITE_KINDS = ("attention", "norm", "activation", "gated_product", "pool")
ACTIVATION_DOMAINS = ("auto", "table", "calibrated", "density")
#: the default N of the smooth activation functions (the paper uses 4): the error of a fitted neuron on a smooth
#: function is mostly that of its N ramps (a piecewise-linear fit with about N kinks), not of T, so it stops
#: falling with T once T >= 16; N=8 cut the relative logit error of tiny random GPT-2/ELECTRA/DeiT by 3-6x at T=16
#: and N=16 by another 2-4x (DeiT 0.0088 -> 0.0035, GPT-2 0.0011 -> 0.0003; see README, "Default configuration").
#: tanh and sigmoid too: they saturate over most of their registry domain, but the default fits them on the
#: calibrated interval, where they are not flat (the error on the calibration inputs of tiny BERT's pooler tanh at
#: T=16: 4.0e-5 RMS with N=8, 1.4e-5 with N=16; tiny XLM-RoBERTa's classifier tanh 2.5e-5 and 1.1e-5)
ACTIVATION_N_BASIS = {"gelu": 16, "gelu_tanh": 16, "silu": 16, "tanh": 16, "sigmoid": 16}
#: below :data:`SLOT_T` these functions' default N grows as ``SLOT_T / T`` (:func:`default_n_basis`): a neuron of N
#: bases and T steps has N T spike slots, and at T=8 the smooth activations and the products' identity encoders were
#: limited by them (SmolLM2-135M at T=8: SiLU N=16 -> 32 took the SiLU-only perplexity change from +0.47 % to
#: -0.06 %; identity N=8 -> 16 took attention-only from +0.62 % to +0.20 %; see README, "Default configuration")
SLOT_SCALED = ("gelu", "gelu_tanh", "silu", "tanh", "sigmoid", "identity")
SLOT_T = 16
#: the named configurations of :meth:`ConversionConfig.preset`
PRESETS = ("default", "paper")


def check_timesteps(timesteps) -> None:
    validate_counts(1, timesteps)


def default_n_basis(timesteps: int) -> dict:
    r"""The default N per function at T (functions not listed use the registry's, the paper's, N).

    :data:`ACTIVATION_N_BASIS` at ``T >= SLOT_T``; below, each function of :data:`SLOT_SCALED` gets
    :math:`N = \lceil N_{16} \cdot 16 / T \rceil` (at most 64), so its slots N T stay at their T=16 count: at T=8
    GELU, tanh-GELU, SiLU, tanh and sigmoid N=32 and the identity N=16; at T=4 64 and 32."""
    check_timesteps(timesteps)
    from ..functions import get_function

    out = dict(ACTIVATION_N_BASIS)
    if timesteps < SLOT_T:
        for fn in SLOT_SCALED:
            n16 = out.get(fn, get_function(fn).n_basis)
            out[fn] = min(64, math.ceil(n16 * SLOT_T / timesteps))
    return out


@dataclass
class ConversionConfig:
    """What to convert and how.

    Attributes:
        timesteps: T for every neuron.
        n_basis: per-function basis counts, e.g. ``{"gelu": 8}``; unset functions use the paper's N; ``{}`` is the
            paper's N everywhere. Default ``None``: :func:`default_n_basis` at the current T (N=16 for the smooth
            activations at T >= 16, more below T=16), so it follows :func:`mbe.set_timesteps`. Read it with
            :meth:`basis`. To change one function and keep the rest: ``{**default_n_basis(8), "identity": 32}``.
        mode: ``"fused"`` or ``"event"`` (see :mod:`mbe.ops`).
        convert: site kinds to make spiking (``"attention"``, ``"norm"``, ``"activation"``, ``"pool"``,
            ``"gated_product"``); leave one out for partial conversion or ablations.
        exclude: site-name substrings to leave analog (e.g. ``["layer.0."]``).
        calibration_margin: widen each calibrated interval by this fraction of its width on both sides.
        strict: raise instead of leaving a module analog (no handler, or a replacement whose analog
            reference disagrees with the module it replaces).
        reference_tolerance: the largest relative difference (``||ref - orig|| / ||orig||`` on the
            calibration batches) between a replacement's analog reference and the original module for
            which the swap is kept; above it the site stays analog (float rounding is ~1e-7).
        refine, row_scaling: the operators' switches (``0``/``False`` = the paper).
        budget_mb: event mode's memory budget per tile.
        neurons: per-function neuron overrides, e.g. ``{"gelu": fs_neuron}`` (the FS or no-decay
            ablations); each runs at most the config's T steps (fewer: silent for the rest). They take precedence
            over tables and calibrated fits.
        activation_domain: ``"density"`` (default, see below); ``"auto"`` fits one neuron per activation function on the union of
            its sites' calibrated intervals (rounded outward to 3 significant bits) when that is at most a
            quarter of the shipped table's domain, else uses the table; ``"table"`` always uses the shipped
            neurons on the paper's domains (no fitting); ``"calibrated"`` always fits on the exact union;
            ``"density"`` fits on that union too, weighting the error by the calibration inputs' density
            (the sites' sketches, see :class:`mbe.convert.Site`), so outliers that stretch the interval do not
            take the precision from where most inputs fall; sites share a neuron only when the shared domain is
            at most twice as wide as each one's own range (:meth:`mbe.convert.ConversionState.activation_group`:
            a narrow classifier-head activation gets its own). A fitted neuron also gets a tail neuron beyond each
            edge of its domain (:meth:`mbe.convert.ConversionState.tail_neurons`): to the asymptote where the
            function saturates, :data:`mbe.ops.encoding.HEADROOM` widths where it grows, so inputs beyond the
            calibrated interval are not clamped to its edge.
            Fits take seconds and are cached on disk (:func:`mbe.tables.fitted_on_domain`), so a
            domain/N/T is fitted once per machine.
    """

    timesteps: int = 16
    n_basis: Optional[dict] = None
    mode: str = "fused"
    convert: tuple = SITE_KINDS
    exclude: tuple = ()
    calibration_margin: float = 0.05
    strict: bool = False
    reference_tolerance: float = 1e-4
    refine: int = 1
    row_scaling: bool = True
    budget_mb: float = 256.0
    activation_domain: str = "density"
    neurons: dict = field(default_factory=dict)

    def basis(self, function: str, timesteps: Optional[int] = None) -> Optional[int]:
        """The N ``function``'s neurons use under this config at ``timesteps`` (default: the config's T);
        ``None``: the registry's (the paper's) N."""
        t = self.timesteps if timesteps is None else timesteps
        return (default_n_basis(t) if self.n_basis is None else self.n_basis).get(function)

    @classmethod
    def paper(cls, **overrides) -> "ConversionConfig":
        """The paper's exact setup: the shipped neurons on the paper's domains at the paper's N
        (``activation_domain="table"``, no ``n_basis`` overrides) and the operators without this project's
        refinement and row scaling (``refine=0``, ``row_scaling=False``). ``overrides`` change any field."""
        return cls(**{"activation_domain": "table", "n_basis": {}, "refine": 0, "row_scaling": False, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> "ConversionConfig":
        """A named configuration: ``"default"`` (:class:`ConversionConfig`'s defaults, the best measured) or
        ``"paper"`` (:meth:`paper`)."""
        if name not in PRESETS:
            raise ValueError(f"ConversionConfig.preset: unknown preset {name!r}; choose from {PRESETS}")
        return cls.paper(**overrides) if name == "paper" else cls(**overrides)

    def __post_init__(self):
        if self.activation_domain not in ACTIVATION_DOMAINS:
            raise ValueError(
                f"ConversionConfig.activation_domain must be one of {ACTIVATION_DOMAINS}, "
                f"got {self.activation_domain!r}"
            )
        check_mode(self.mode)
        check_timesteps(self.timesteps)
        for name in ("convert", "exclude"):
            if not isinstance(getattr(self, name), (tuple, list)):
                raise TypeError(
                    f"ConversionConfig.{name} must be a tuple or list of strings, "
                    f"got {type(getattr(self, name)).__name__}"
                )
        unknown = set(self.convert) - set(SITE_KINDS)
        if unknown:
            raise ValueError(
                f"ConversionConfig.convert: unknown site kinds {sorted(unknown)}; choose from {SITE_KINDS}"
            )
        if self.n_basis is not None and not isinstance(self.n_basis, dict):
            raise TypeError(
                f"ConversionConfig.n_basis must be a dict {{function: N}} or None, got {type(self.n_basis).__name__}"
            )
        from ..functions import list_functions

        for fn, n in (self.n_basis or {}).items():
            if fn not in list_functions():
                raise ValueError(f"ConversionConfig.n_basis: unknown function {fn!r}; registered: {list_functions()}")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
                raise ValueError(f"ConversionConfig.n_basis[{fn!r}] must be an integer in [1, 64], got {n!r}")
        if not (isinstance(self.calibration_margin, (int, float)) and 0 <= self.calibration_margin < 10):
            raise ValueError(
                f"ConversionConfig.calibration_margin must be a fraction in [0, 10), got {self.calibration_margin!r}"
            )
        if not (isinstance(self.reference_tolerance, (int, float)) and self.reference_tolerance > 0):
            raise ValueError(
                f"ConversionConfig.reference_tolerance must be a positive number, got {self.reference_tolerance!r}"
            )
