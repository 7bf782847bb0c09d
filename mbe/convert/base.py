r"""The one base every spiking replacement module derives from.

A :class:`SiteModule` replaces one module of the model and keeps the original (hidden from the module
tree, so ``state_dict`` keys and parameters are the ANN's, bit for bit). It runs in one of three ways:

- **calibrating** (``state.calibrating``): :meth:`observe` records the site's input intervals, the
  analog :meth:`reference` (the replacement's math with exact operators) and the original module both
  run, and the site records their relative difference (:meth:`Site.check_reference`); the original's
  output is returned, so calibration sees the ANN exactly;
- **analog** (site not enabled, or a reference mismatch): the reference when it matched the original
  (children that are sites of their own may still spike), else the original module;
- **spiking**: :meth:`spiking`, built from :mod:`mbe.ops`.

The original's own parameters and buffers are registered on the replacement under the same names (the
same objects), so a handler only writes the math.

Subclasses implement ``observe``, ``reference`` and ``spiking`` with the original's call signature.
"""

from __future__ import annotations

from torch import nn

from .sites import ConversionState, Site


class SiteModule(nn.Module):
    """Base of every spiking replacement (see the module docstring)."""

    def __init__(self, original: nn.Module, site: Site, state: ConversionState):
        super().__init__()
        object.__setattr__(self, "original", original)  # not a child: parameters and state_dict keys unchanged
        object.__setattr__(self, "site", site)
        object.__setattr__(self, "state", state)
        # the original's own parameters and buffers, the same objects under the same names
        persistent = set(original.state_dict(keep_vars=True))
        for name, param in original.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in original.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name in persistent)

    # --- what a subclass provides ---------------------------------------------------------------
    def observe(self, *args, **kwargs) -> None:
        raise NotImplementedError

    def reference(self, *args, **kwargs):
        raise NotImplementedError

    def spiking(self, *args, **kwargs):
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        site = self.site
        if self.state.calibrating:
            self.observe(*args, **kwargs)
            ref = self.reference(*args, **kwargs)
            out = self.original(*args, **kwargs)
            site.check_reference(_main(ref), _main(out))
            return out
        if site.spiking:
            return self.spiking(*args, **kwargs)
        if site.reference_error is not None and site.reference_error <= self.state.config.reference_tolerance:
            return self.reference(*args, **kwargs)
        return self.original(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"site={self.site.name!r}, {self.site.operator}, replaces {self.site.module_class}"


def _main(output):
    """The tensor to compare of a module's output (the first element of a tuple output)."""
    return output[0] if isinstance(output, (tuple, list)) else output
