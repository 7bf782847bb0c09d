"""Fitting recipes: every setting of a fit in one frozen object, and the two named recipes.

``paper`` is appendix G.1 and nothing more; ``best`` is the project's (see :mod:`mbe.fitting`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Union

from .. import paper


@dataclass(frozen=True)
class FitRecipe:
    """All settings of a fit; :mod:`mbe.fitting`'s docstring says what each switch does."""

    name: str = "best"
    samples: int = paper.FIT_SAMPLES
    epochs: int = paper.FIT_EPOCHS
    lr: float = paper.FIT_LR
    lr_decay: float = paper.FIT_LR_DECAY
    surrogate_slope: float = 4.0
    decay: bool = True
    init: str = "halving"  # "halving" | "ramps"
    input_shift: str = "none"  # "none" | "per_basis"
    per_basis_levels: bool = False
    output_bias: bool = False
    least_squares: bool = False
    ls_every: int = 10
    restarts: int = 1
    ramp_steps: int = 300

    def __post_init__(self):
        if self.init not in ("halving", "ramps"):
            raise ValueError(f"FitRecipe.init must be 'halving' or 'ramps', got {self.init!r}")
        if self.input_shift not in ("none", "per_basis"):
            raise ValueError(f"FitRecipe.input_shift must be 'none' or 'per_basis', got {self.input_shift!r}")
        if self.init == "ramps" and self.input_shift != "per_basis":
            raise ValueError("FitRecipe.init='ramps' needs input_shift='per_basis'")
        for name in ("samples", "epochs", "restarts", "ls_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitRecipe.{name} must be >= 1, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> "FitRecipe":
        """A copy with some fields changed (``TypeError`` naming an unknown field)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"unknown recipe override(s) {unknown}; FitRecipe fields: {[f.name for f in fields(self)]}")
        return replace(self, **overrides) if overrides else self


RECIPES: dict[str, FitRecipe] = {
    "paper": FitRecipe(name="paper"),
    "best": FitRecipe(
        name="best",
        epochs=300,
        lr=0.003,
        lr_decay=0.995,
        init="ramps",
        input_shift="per_basis",
        per_basis_levels=True,
        output_bias=True,
        least_squares=True,
        ls_every=10,
        restarts=4,
    ),
}


def get_recipe(recipe: Union[str, FitRecipe]) -> FitRecipe:
    if isinstance(recipe, FitRecipe):
        return recipe
    if not isinstance(recipe, str):
        raise TypeError(f"recipe must be a name {sorted(RECIPES)} or a FitRecipe, got {type(recipe).__name__}")
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} or pass a FitRecipe") from None
