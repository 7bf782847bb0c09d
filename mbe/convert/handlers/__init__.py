"""The built-in site handlers, registered in the order they are tried: norms, gated MLPs, activations,
pooling. Attention needs no module handler: it is routed through transformers' ``AttentionInterface``
(:mod:`.attention`), and inline torch calls are caught where they happen (:mod:`.inline`)."""

from . import norm  # noqa: I001  (import order = the order handlers are tried)
from . import mlp
from . import activation
from . import pool
from . import attention, inline

__all__ = ["activation", "attention", "inline", "mlp", "norm", "pool"]
