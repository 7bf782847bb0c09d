r"""Training-free fitting: one neuron per primitive function, fitted offline and reused network-wide.

The loss is the MSE between the neuron's decoded output and the target on ``samples`` uniform random
points of the domain (paper: M = 10,000), minimised by Adam through a surrogate gradient of the
Heaviside spike function. Two recipes:

``paper``
    The paper's stated settings and nothing more (appendix G.1): lr 0.01, 200 epochs (one
    full-batch step each), exponential lr decay 0.99; one shared level :math:`\alpha` (the target's
    maximum magnitude) for every kernel; learnable :math:`\tau^d, \tau^r, \tau^{th}, \Delta t, w`;
    no input offset, no output bias; halving initialisation (:math:`\Delta t/\tau = \ln 2`), the
    bases told apart by a small seeded perturbation of their :math:`\tau` (the paper is silent).

``best``
    The project's recipe. Every addition is a switch of :class:`FitRecipe`:

    - ``input_shift="per_basis"``: basis :math:`n` starts at :math:`u_n[0] = x - c_n` with a learnable
      offset :math:`c_n`. Handles signed inputs (thresholds are positive, so a negative membrane never
      fires) and lets each basis cover its own sub-interval.
    - ``per_basis_levels``: learnable leading levels :math:`\alpha^r_n, \alpha^{th}_n, \alpha^d_n`, so
      bases are not nested copies of one code.
    - ``least_squares``: the readout :math:`(w, b)` is linear given the spikes; it is solved exactly
      (float64 least squares) every ``ls_every`` steps and at the end.
    - ``output_bias``: a learnable constant :math:`b` in the readout.
    - ``init="ramps"``: a halving basis with offset :math:`c` and leading level :math:`A` is a
      :math:`T`-bit quantiser of :math:`\mathrm{clamp}(x - c, 0, 2A)`, a "ramp". The init first fits
      :math:`b + \sum_n w_n \mathrm{clamp}(x - c_n, 0, L_n)` (a smooth free-knot piecewise-linear
      problem, ``restarts`` starts) and sets :math:`c_n`, :math:`A_n = L_n/2` from it; the surrogate
      phase then refines every value. The best exact-MSE state seen is kept.

Both recipes are deterministic for a given ``seed`` (CPU, one thread or many).

Layout: :mod:`.recipes` (the settings), :mod:`.targets` (target, samples, MSE grid), :mod:`.state` (the
learnable parametrisation), :mod:`.initialisation` (halving or ramps), :mod:`.loop` (the optimiser loop and
least-squares readout), :mod:`.fit` (the public fits).
"""

from .fit import FitResult, fit_fs_neuron, fit_neuron
from .recipes import RECIPES, FitRecipe, get_recipe
from .targets import evaluation_grid, neuron_mse

__all__ = [
    "RECIPES",
    "FitRecipe",
    "FitResult",
    "evaluation_grid",
    "fit_fs_neuron",
    "fit_neuron",
    "get_recipe",
    "neuron_mse",
]
