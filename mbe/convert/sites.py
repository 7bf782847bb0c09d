"""The bookkeeping of a converted model: one :class:`Site` per spiking site, and the :class:`ConversionState`
every spiking module of one model shares (``snn.mbe_state``)."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from ..functions import get_function
from ..stats import OpStats
from .config import ConversionConfig

#: how many input values a site keeps per key as its distribution sketch (a uniform random sample)
SKETCH_SIZE = 8192
#: under ``activation_domain="density"`` a site shares a neuron only if the shared domain is at most this many
#: times as wide as its own calibrated interval (:meth:`ConversionState.activation_group`)
GROUP_WIDTH_RATIO = 2.0


@dataclass
class Site:
    """One spiking site of a converted model.

    Attributes:
        name: where it is (a module path; inline calls add ``:function``).
        kind: ``attention``, ``norm``, ``activation``, ``gated_product`` or ``pool``.
        function: the neuron function that characterises it (an activation's own, ``exp2`` for attention,
            ``rsqrt`` for norms, ``identity`` for products, ``relu`` for pooling).
        operator: the spiking operator(s) it runs, for the report.
        handler: the name of the handler that built it.
        module_class: the class of the module (or function) it replaces.
        enabled: spiking under the config (``convert`` and ``exclude``).
        ranges: calibrated input intervals by key, ``{"input": (lo, hi)}``.
        sketches: a uniform random sample (at most :data:`SKETCH_SIZE` float32 values) of every finite
            calibration input by key: the distribution the site's neurons are fitted to (quantiles,
            histograms, density-weighted fits).
        seen: how many finite calibration inputs each sketch stands for.
        stats: spike counters of its operators (one :class:`mbe.stats.SpikeStats` per internal key).
        reference_error: the largest relative difference between the replacement's analog reference and
            the original on the calibration batches (``None`` before calibration).
        analog_reason: why the site stays analog although it was recognised (empty when it spikes).
    """

    name: str
    kind: str
    function: str
    operator: str
    handler: str
    module_class: str
    enabled: bool = True
    ranges: dict = field(default_factory=dict)
    sketches: dict = field(default_factory=dict)
    seen: dict = field(default_factory=dict)
    stats: OpStats = field(default_factory=OpStats)
    reference_error: Optional[float] = None
    analog_reason: str = ""

    @property
    def spiking(self) -> bool:
        """Whether the site runs spiking operators now."""
        return self.enabled and not self.analog_reason

    def observe(self, key: str, x: Tensor) -> None:
        """Widen the calibrated interval ``key`` to cover ``x``."""
        x = x.detach()
        if x.numel() == 0:
            return
        if x.dtype == torch.bool or not torch.is_floating_point(x):
            x = x.float()
        finite = x[torch.isfinite(x)]
        if finite.numel() == 0:
            return
        lo, hi = float(finite.min()), float(finite.max())
        if key in self.ranges:
            lo, hi = min(lo, self.ranges[key][0]), max(hi, self.ranges[key][1])
        self.ranges[key] = (lo, hi)
        self._sketch(key, finite.reshape(-1).float())

    def _sketch(self, key: str, values: Tensor) -> None:
        """Merge ``values`` into the key's uniform sample: old and new values are kept in proportion to how
        many inputs each stands for (seeded by the site, key and count, so calibration is reproducible)."""
        old, n_old, n_new = self.sketches.get(key), self.seen.get(key, 0), values.numel()
        gen = torch.Generator().manual_seed(zlib.crc32(f"{self.name}|{key}|{n_old}".encode()))
        size = min(SKETCH_SIZE, n_old + n_new)
        take_new = size if old is None else min(n_new, round(size * n_new / (n_old + n_new)))
        take_old = 0 if old is None else min(old.numel(), size - take_new)
        new = values[torch.randperm(n_new, generator=gen)[:take_new]] if take_new < n_new else values
        parts = [new.cpu()]
        if take_old:
            parts.insert(0, old[torch.randperm(old.numel(), generator=gen)[:take_old]])
        self.sketches[key] = torch.cat(parts)
        self.seen[key] = n_old + n_new

    def quantiles(self, key: str, q) -> Optional[Tensor]:
        """Quantiles ``q`` (floats in [0, 1]) of the key's calibration inputs, from its sketch (``None`` if unseen)."""
        if key not in self.sketches:
            return None
        return torch.quantile(self.sketches[key].double(), torch.as_tensor(q, dtype=torch.float64))

    def range(self, key: str, margin: float) -> Optional[tuple[float, float]]:
        """The calibrated interval ``key`` widened by ``margin`` of its width on both sides (``None`` if unseen)."""
        if key not in self.ranges:
            return None
        lo, hi = self.ranges[key]
        pad = margin * (hi - lo)
        return (lo - pad, hi + pad)

    def check_reference(self, reference: Tensor, original: Tensor) -> float:
        """Record ``||reference - original|| / ||original||`` (float64, the largest over calls)."""
        ref, orig = reference.detach().double(), original.detach().double()
        if ref.shape != orig.shape:
            err = float("inf")
        else:
            finite = torch.isfinite(orig)
            num = float(torch.linalg.vector_norm(torch.where(finite, ref - orig, 0.0)))
            den = float(torch.linalg.vector_norm(torch.where(finite, orig, 0.0)))
            err = num / den if den > 0 else (0.0 if num == 0 else float("inf"))
            if not bool(torch.equal(torch.isfinite(ref), finite)):
                err = float("inf")
        self.reference_error = err if self.reference_error is None else max(self.reference_error, err)
        return err


@dataclass(frozen=True)
class AnalogModule:
    """A module that stays analog, and why (a row of the conversion report)."""

    name: str
    module_class: str
    reason: str


class ConversionState:
    """Shared by every spiking module of one converted model (``snn.mbe_state``)."""

    def __init__(self, config: ConversionConfig):
        self.config = config
        self.sites: dict[str, Site] = {}
        self.calibrating = False
        self.analog: list[AnalogModule] = []
        # (function, group of site names, T) -> the neuron fitted for that group, or None for the shipped table;
        # function -> its activation sites' groups. Resolved once (per T), cleared when calibration changes ranges
        self.fitted: dict[tuple, object] = {}
        # (function, tail interval, T) -> that tail's neuron (:meth:`_tail_neuron`); the tails a site uses at a T are
        # in ``fitted`` (and saved with it), these are their fits, anchors above T=16 included
        self.tail_fits: dict[tuple, object] = {}
        self.groups: dict[str, list[tuple[str, ...]]] = {}
        self.inline_paused = 0  # > 0 while mbe's own code runs torch functions inside a model's forward
        # what identifies the model this state was made for (mbe.convert.persist.model_fingerprint), for mbe.load
        self.model_fingerprint: Optional[dict] = None

    def new_site(self, name: str, kind: str, function: str, operator: str, handler: str, module_class: str) -> Site:
        """The site called ``name``, created on first use (enabled per ``config.convert`` and ``exclude``)."""
        if name not in self.sites:
            cfg = self.config
            enabled = kind in cfg.convert and not any(e in name for e in cfg.exclude)
            self.sites[name] = Site(name, kind, function, operator, handler, module_class, enabled)
        return self.sites[name]

    def refresh_enabled(self) -> None:
        """Re-apply ``config.convert`` and ``config.exclude`` to every site."""
        for site in self.sites.values():
            site.enabled = site.kind in self.config.convert and not any(e in site.name for e in self.config.exclude)

    def op_kwargs(self, site: Site) -> dict:
        """The keywords every :mod:`mbe.ops` call of ``site`` takes from the config."""
        cfg = self.config
        return {"timesteps": cfg.timesteps, "mode": cfg.mode, "stats": site.stats, "neurons": cfg.neurons or None}

    def activation_group(self, site: Site) -> tuple[str, ...]:
        """The names of the activation sites that share ``site``'s neuron (sorted; ``site`` among them).

        Under ``activation_domain="density"`` a function's sites are grouped so that no site's neuron is fitted
        on a domain more than :data:`GROUP_WIDTH_RATIO` times as wide as its own calibrated interval (a
        classifier head's narrow activation does not share the wide neuron of the blocks, whose levels would
        mostly fall where the head never looks): sites are taken narrowest first, each joins the first group
        whose union stays within the ratio of that group's narrowest interval, else starts one. Sites of
        similar range share one neuron (one fit). Other domains: one group per function.
        """
        if site.function not in self.groups:
            self.groups[site.function] = _range_groups(
                self._group_sites(site.function, None),
                self.config.calibration_margin,
                GROUP_WIDTH_RATIO if self.config.activation_domain == "density" else math.inf,
            )
        return next((g for g in self.groups[site.function] if site.name in g), (site.name,))

    def _group_sites(self, function: str, group: Optional[tuple[str, ...]]) -> list[Site]:
        return [
            s
            for s in self.sites.values()
            if s.kind == "activation" and s.function == function and (group is None or s.name in group)
        ]

    def activation_domain(
        self, function: str, group: Optional[tuple[str, ...]] = None
    ) -> Optional[tuple[float, float]]:
        """The domain ``function``'s neuron (for the sites in ``group``; default: every site of ``function``) is
        fitted on, or ``None`` for the shipped table.

        ``calibrated``, ``density``: the union of the sites' calibrated intervals (widened by the margin); inputs
        beyond it on a side where the function saturates go to :meth:`tail_neurons`.
        ``auto``: that union rounded outward to 3 significant bits, when it is at most a quarter of the shipped
        table's domain wide (the table would spend its levels where no input falls); else the table.
        """
        cfg = self.config
        if cfg.activation_domain == "table":
            return None
        spans = [
            s.range("input", cfg.calibration_margin) for s in self._group_sites(function, group) if "input" in s.ranges
        ]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        if not spans:
            return None
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        if cfg.activation_domain in ("calibrated", "density"):
            return (lo, hi)
        lo, hi = _outward(lo), _outward(hi)
        t_lo, t_hi = get_function(function).domain
        if hi - lo > 0.25 * (t_hi - t_lo):
            return None
        return (lo, hi)

    def activation_neurons(self, function: str, site: Optional[Site] = None) -> Optional[dict]:
        """``{function: neuron}`` for ``site`` (its group's, see :meth:`fitted_neuron`), or ``None`` for the
        shipped table."""
        neuron = self.fitted_neuron(function, site)
        return None if neuron is None else {function: neuron}

    def fitted_neuron(self, function: str, site: Optional[Site] = None):
        """The neuron fitted at the current T for ``site``'s group (:meth:`activation_group`; without ``site``,
        for every site of ``function``), or ``None`` (the shipped table). Resolved once per group and T, and
        cached on disk (:func:`mbe.tables.fitted_on_domain`); above T=16 the fit starts from the group's fit at
        :func:`mbe.tables.refinement_anchor` (T), and that lower-T neuron is kept instead unless the fit is clearly
        more accurate on the group's data (:func:`mbe.tables.better_of`)."""
        group = self.activation_group(site) if site is not None and site.kind == "activation" else None
        return self._group_neuron(function, group, self.config.timesteps)

    def _group_neuron(self, function: str, group: Optional[tuple[str, ...]], timesteps: int):
        key = (function, group, timesteps)
        if key not in self.fitted:
            from ..tables import refined_fit

            cfg = self.config
            domain = self.activation_domain(function, group)
            if domain is None:
                self.fitted[key] = None
            else:
                density = self.activation_density(function, group) if cfg.activation_domain == "density" else None
                self.fitted[key] = refined_fit(
                    function,
                    domain,
                    cfg.basis(function, timesteps),
                    timesteps,
                    lambda t: self._group_neuron(function, group, t),
                    density=density,
                )
        return self.fitted[key]

    def tail_neurons(self, function: str, site: Optional[Site] = None) -> tuple:
        """:class:`~mbe.ops.Tail` neurons for the inputs beyond ``site``'s fitted neuron's domain
        (:func:`activation_tails`: to the asymptote where ``function`` saturates,
        :data:`mbe.ops.encoding.HEADROOM` widths where it grows), each fitted (and cached) on its interval,
        weighted towards the domain's edge (:func:`_tail_density`), with the short schedule
        (:data:`mbe.tables.QUICK_FIT`: a few seconds; tails serve the rare inputs beyond). An input beyond the
        calibrated interval then costs about a tail neuron's error instead of the function's change between the
        edge and the input, and the main neuron keeps all its levels on the calibrated interval; each tail takes
        only the inputs beyond its :func:`tail_onset`, so that cost is never more than a clamp's. Above T=16 a tail
        follows the main neurons' rule (:meth:`_tail_neuron`). Empty for the shipped tables and overrides."""
        main = self.fitted_neuron(function, site)
        if main is None or function in (self.config.neurons or {}):
            return ()
        cfg = self.config
        key = (function, tuple(float(v) for v in main.domain), cfg.timesteps, "tails")
        if key not in self.fitted:
            from ..ops import Tail

            tails = []
            for interval in activation_tails(function, *main.domain):
                neuron = self._tail_neuron(function, interval, main.domain, cfg.timesteps)
                edge = interval[1] if interval[1] == main.domain[0] else interval[0]
                onset = tail_onset(function, neuron, edge)
                if onset is not None:
                    tails.append(Tail(neuron, onset))
            self.fitted[key] = tuple(tails)
        return self.fitted[key]

    def _tail_neuron(self, function: str, interval: tuple, main_domain: tuple, timesteps: int):
        """The tail neuron of ``function`` on ``interval`` (beside ``main_domain``) at ``timesteps``: fitted with the
        short schedule on :func:`_tail_density`; above T=16 started from the tail at
        :func:`mbe.tables.refinement_anchor` (T) and kept only where clearly more accurate than it
        (:func:`mbe.tables.better_of`), as the main neurons are, since a fresh short fit at T=32 can be far worse
        than the T=16 tail (tiny XLM-RoBERTa's classifier tanh, a held-out input 0.05 beyond the edge: error 1.7e-4
        at T=32 against 1.6e-5 at T=16)."""
        key = (function, tuple(float(v) for v in interval), timesteps)
        if key not in self.tail_fits:
            from ..tables import refined_fit

            self.tail_fits[key] = refined_fit(
                function,
                interval,
                self.config.basis(function, timesteps),
                timesteps,
                lambda t: self._tail_neuron(function, interval, main_domain, t),
                density=_tail_density(interval, main_domain, float(main_domain[1] - main_domain[0])),
                quick=True,
            )
        return self.tail_fits[key]

    def activation_density(self, function: str, group: Optional[tuple[str, ...]] = None) -> Optional[Tensor]:
        """The calibration inputs of the activation sites of ``function`` (those in ``group`` when given), each
        site weighted alike (its sketch resampled to :data:`SKETCH_SIZE` values, seeded): a head's one small
        activation counts as much as a block's large one, since either error reaches the output. ``None`` if no
        site was seen."""
        parts = []
        for s in self._group_sites(function, group):
            if "input" in s.sketches:
                sketch = s.sketches["input"]
                gen = torch.Generator().manual_seed(zlib.crc32(s.name.encode()))
                parts.append(sketch[torch.randint(sketch.numel(), (SKETCH_SIZE,), generator=gen)])
        return torch.cat(parts) if parts else None

    def fit_activation_neurons(self) -> None:
        """Fit (or load from the fit cache) every activation site's neuron for the current T (nothing under
        ``activation_domain='table'``). Tail neurons are fitted when an input first goes beyond a neuron's
        domain (:func:`mbe.convert.handlers.activation.spiking_activation`): calibration inputs never do."""
        for site in self.sites.values():
            if site.kind == "activation":
                self.fitted_neuron(site.function, site)


#: a density domain reaches as far as its function takes to come within this fraction of its output range on the
#: calibrated interval of its asymptote (on a side where the function saturates)
SATURATION_TOLERANCE = 1e-3


def activation_tails(function: str, lo: float, hi: float) -> tuple[tuple[float, float], ...]:
    """The intervals beyond the calibrated ``(lo, hi)`` that get tail neurons, one per side that has one:

    - where ``function`` saturates (tanh and sigmoid on both sides, GELU and SiLU below): up to where it is within
      :data:`SATURATION_TOLERANCE` of its asymptote (:func:`saturation_extended`), none if it already is there;
    - where it keeps growing (GELU, SiLU and ReLU above): :data:`mbe.ops.encoding.HEADROOM` times the interval's
      width, as the products' operands get (beyond that, inputs are clamped and counted).

    Clamping at the calibrated edge costs an input the function's whole change between the edge and the input,
    unbounded where the function grows; a tail costs about its neuron's error."""
    from ..ops.encoding import HEADROOM

    reach = saturation_extended(function, lo, hi, per_side=True)
    width = hi - lo
    tails = []
    if reach[0] is None or reach[0] < lo:
        tails.append((lo - HEADROOM * width if reach[0] is None else reach[0], lo))
    if reach[1] is None or reach[1] > hi:
        tails.append((hi, hi + HEADROOM * width if reach[1] is None else reach[1]))
    return tuple(tails)


#: points of the grid :func:`tail_onset` checks (half log-spaced from the edge, half uniform)
ONSET_GRID = 8192


def tail_onset(function: str, neuron, edge: float) -> Optional[float]:
    """Where a tail ``neuron`` (domain starting or ending at ``edge``) starts to cost less than a clamp.

    An input :math:`x` beyond the main domain's edge :math:`e` either stays clamped at the edge, costing the
    function's change :math:`|f(x) - f(e)|`, or takes the tail, costing at most the tail's largest error
    :math:`E` on its domain. The onset is the distance from the edge beyond which the change is at least
    :math:`E` everywhere on a dense grid (``ONSET_GRID`` points, log-spaced near the edge): tail inputs from
    there on cost at most what a clamp would, and the nearer ones are clamped. ``None`` when the change never
    stays above :math:`E` to the tail's end (a clamp is never worse: no tail)."""
    spec = get_function(function)
    t_lo, t_hi = (float(v) for v in neuron.domain)
    length = t_hi - t_lo
    half = ONSET_GRID // 2
    dist = (
        torch.cat(
            [
                torch.logspace(math.log10(length * 1e-6), math.log10(length), half, dtype=torch.float64),
                torch.linspace(0, length, half, dtype=torch.float64)[1:],
            ]
        )
        .sort()
        .values
    )
    below = t_hi == edge
    x = (edge - dist if below else edge + dist).clamp(t_lo, t_hi)
    with torch.no_grad():
        approx = neuron(x.float()).double()
    truth = spec.fn(x)
    worst = float((approx - truth).abs().max())
    clamp_cost = (truth - spec.fn(torch.tensor([edge], dtype=torch.float64))).abs()
    worse = torch.nonzero(clamp_cost < worst).flatten()
    if worse.numel() == 0:
        return float(edge)
    last = int(worse[-1])
    if last + 1 >= dist.numel():
        return None
    return float(x[last + 1])


def _tail_density(tail: tuple[float, float], main: tuple[float, float], width: float) -> Tensor:
    """A sample on ``tail`` whose distance from the main domain's edge is log-uniform from 1/64 of the main
    domain's ``width`` to the tail's length: every octave of distance weighs alike, so inputs just past the
    edge (the common case) get about the main neuron's precision and far ones a coarser one."""
    t_lo, t_hi = tail
    length = t_hi - t_lo
    near = min(width / 64, length / 2)
    u = torch.linspace(0, 1, SKETCH_SIZE, dtype=torch.float64)
    dist = near * (length / near) ** u
    return (t_lo + dist if t_lo == float(main[1]) else t_hi - dist).clamp(t_lo, t_hi).float()


def saturation_extended(function: str, lo: float, hi: float, per_side: bool = False) -> tuple:
    """``(lo, hi)`` widened, for a function that saturates on both sides of its registry domain (tanh,
    sigmoid), to where it is within :data:`SATURATION_TOLERANCE` of its output range of its asymptotes.

    A side saturates when the function varies by less than the tolerance over the outer tenth of the
    registry domain on that side. A function that grows on a side (GELU, SiLU, ReLU above) keeps the calibrated
    interval on both; with ``per_side=True`` the result is per side instead, ``None`` for a side that grows
    (:func:`activation_tails`). The interval never shrinks. Used for the tail neurons
    (:meth:`ConversionState.tail_neurons`), not for the main neuron's domain: fitting tanh on the widened domain
    cost 10-100x in relative logit error where calibration and evaluation agree (tiny MobileBERT T=8: 0.27
    against 0.004; Gemma-2's logit soft-cap: 0.17 against 0.008), since the levels spread over inputs that
    never come.
    """
    spec = get_function(function)
    t_lo, t_hi = spec.domain
    inner = torch.linspace(lo, hi, 257, dtype=torch.float64)
    y = spec.fn(inner)
    tol = SATURATION_TOLERANCE * max(float(y.max() - y.min()), 1e-12)
    out: list = [lo, hi]
    for side, (edge, far) in enumerate(((lo, t_lo), (hi, t_hi))):
        outer = torch.linspace(far - 0.1 * (far - (t_hi if side == 0 else t_lo)), far, 410, dtype=torch.float64)
        fo = spec.fn(outer)
        if float((fo - fo[-1:]).abs().max()) > tol:
            out[side] = None  # no asymptote on this side (e.g. GELU/SiLU above): it grows
            continue
        if (far - edge) * (1 if side else -1) <= 0:
            continue  # the calibrated interval already reaches past the registry domain here
        grid = torch.linspace(edge, far, 4097, dtype=torch.float64)
        gap = (spec.fn(grid) - spec.fn(grid[-1:])).abs()
        outside = (gap > tol).nonzero()
        reach = float(grid[int(outside[-1]) + 1]) if len(outside) else edge
        out[side] = min(reach, edge) if side == 0 else max(reach, edge)
    if per_side:
        return (out[0], out[1])
    return (lo, hi) if None in out else (out[0], out[1])


def _outward(v: float, bits: int = 3) -> float:
    """``v`` rounded away from zero to ``bits`` significant binary digits (at most 1/4 wider for 3 bits),
    so calibrated domains of similar models share cached fits; 0 stays 0."""
    if v == 0:
        return 0.0
    step = 2.0 ** (math.floor(math.log2(abs(v))) - (bits - 1))
    return math.copysign(math.ceil(abs(v) / step) * step, v)


def _range_groups(sites: list, margin: float, ratio: float) -> list[tuple[str, ...]]:
    """Group ``sites`` (narrowest calibrated interval first) so that each group's union is at most ``ratio``
    times as wide as its narrowest member's interval; sites without a range join the widest group."""
    spans = {s.name: s.range("input", margin) for s in sites}
    ranged = sorted((n for n, r in spans.items() if r is not None), key=lambda n: (spans[n][1] - spans[n][0], n))
    groups: list[list] = []  # [narrowest width, lo, hi, names]
    for name in ranged:
        lo, hi = spans[name]
        for g in groups:
            u_lo, u_hi = min(g[1], lo), max(g[2], hi)
            if u_hi - u_lo <= ratio * g[0]:
                g[1], g[2] = u_lo, u_hi
                g[3].append(name)
                break
        else:
            groups.append([hi - lo, lo, hi, [name]])
    unranged = [n for n, r in spans.items() if r is None]
    if unranged:
        if groups:
            max(groups, key=lambda g: g[2] - g[1])[3].extend(unranged)
        else:
            groups.append([0.0, 0.0, 0.0, unranged])
    return [tuple(sorted(g[3])) for g in groups]
