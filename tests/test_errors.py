"""Bad arguments to the public API raise ValueError/TypeError naming the argument and what is allowed.

``TableError`` is only for table files (missing, stale, corrupt); an invalid argument never reaches it.
"""

import pytest
import torch

import mbe
from mbe import energy, ops
from mbe.fitting import evaluation_grid, get_recipe
from mbe.zoo.tiny import tiny_model

X = torch.linspace(-1, 1, 12).reshape(3, 4)

CASES = [
    # (call, exception type, a regex the message must match)
    (lambda: mbe.get_neuron("gelu", n_basis=0), ValueError, r"n_basis must be an integer in \[1, 64\], got 0"),
    (lambda: mbe.get_neuron("gelu", timesteps=0), ValueError, r"timesteps must be an integer in \[1, 64\], got 0"),
    (lambda: mbe.get_neuron("gelu", timesteps=2.5), ValueError, r"timesteps must be an integer"),
    (lambda: mbe.get_neuron("nope"), ValueError, r"unknown function 'nope'.*gelu"),
    (lambda: mbe.get_neuron("gelu", recipe="fast"), ValueError, r"recipe.*'fast'.*best"),
    (lambda: mbe.get_neuron(3), TypeError, r"function must be a registered name"),
    (lambda: mbe.get_function("nope"), ValueError, r"unknown function 'nope'"),
    (lambda: mbe.fit_neuron("gelu", n_basis=0), ValueError, r"n_basis must be an integer in \[1, 64\]"),
    (lambda: mbe.fit_neuron("gelu", timesteps=-1), ValueError, r"timesteps must be an integer in \[1, 64\]"),
    (lambda: mbe.fit_neuron("gelu", domain=(1.0, 1.0)), ValueError, r"domain must be finite with low < high"),
    (lambda: mbe.fit_neuron("gelu", domain=(0.0, float("nan"))), ValueError, r"domain must be finite"),
    (lambda: mbe.fit_neuron("gelu", domain="ab"), ValueError, r"domain must be a pair"),
    (lambda: mbe.fit_neuron("nope"), ValueError, r"unknown function 'nope'"),
    (lambda: mbe.fit_neuron(42), TypeError, r"target must be a registered name"),
    (lambda: mbe.fit_neuron(torch.sin), ValueError, r"callable target needs an explicit domain"),
    (lambda: mbe.fit_neuron("gelu", recipe="fast"), ValueError, r"unknown recipe 'fast'"),
    (lambda: mbe.fit_neuron("gelu", learning_rate=0.1), TypeError, r"learning_rate.*FitRecipe fields"),
    (lambda: mbe.fit_neuron("gelu", epochs=0), ValueError, r"FitRecipe.epochs must be >= 1"),
    (lambda: mbe.fit_fs_neuron("relu", init="zeros"), ValueError, r"init must be 'binary' or 'random'"),
    (lambda: mbe.fit_fs_neuron("relu", timesteps=0), ValueError, r"timesteps must be an integer"),
    (lambda: get_recipe(3), TypeError, r"recipe must be a name"),
    (lambda: evaluation_grid((0, 1), points=0), ValueError, r"points must be an integer >= 2"),
    (lambda: mbe.register_function("", torch.sin, (0, 1)), ValueError, r"function name must be"),
    (lambda: mbe.register_function("sine", "sin", (0, 1)), TypeError, r"fn must be callable"),
    (lambda: mbe.register_function("sine", torch.sin, (1, 0)), ValueError, r"domain must be finite with low < high"),
    (lambda: mbe.register_function("sine", torch.sin, (0, 1), n_basis=0), ValueError, r"n_basis must be an integer"),
    (lambda: mbe.get_neuron("gelu")(torch.arange(4)), TypeError, r"floating"),
    (lambda: mbe.get_neuron("gelu")([1.0, 2.0]), TypeError, r"must be a torch.Tensor"),
    (lambda: mbe.get_neuron("gelu")(torch.tensor([float("nan")])), ValueError, r"non-finite value"),
    (lambda: mbe.get_neuron("gelu", backend="cuda"), ValueError, r"backend must be one of"),
    (lambda: mbe.ConversionConfig(timesteps=0), ValueError, r"timesteps must be an integer in \[1, 64\]"),
    (lambda: mbe.ConversionConfig(mode="async"), ValueError, r"mode must be one of"),
    (lambda: mbe.ConversionConfig(convert=("mlp",)), ValueError, r"convert: unknown site kinds \['mlp'\]"),
    (lambda: mbe.ConversionConfig(activation_domain="wide"), ValueError, r"activation_domain must be"),
    (lambda: mbe.ConversionConfig(n_basis={"gelu": 0}), ValueError, r"n_basis\['gelu'\] must be an integer"),
    (lambda: mbe.ConversionConfig(n_basis={"nope": 4}), ValueError, r"n_basis: unknown function 'nope'"),
    (lambda: mbe.ConversionConfig(calibration_margin=-0.1), ValueError, r"calibration_margin must be"),
    (lambda: mbe.ConversionConfig(exclude="layer.0"), TypeError, r"exclude must be a tuple or list"),
    (lambda: mbe.convert("bert", [{}]), TypeError, r"model must be a torch.nn.Module"),
    (lambda: mbe.convert(tiny_model("bert")[0], []), ValueError, r"calibration is empty"),
    (lambda: mbe.convert(tiny_model("bert")[0], [torch.zeros(2, 3)]), TypeError, r"dict of forward kwargs"),
    (lambda: mbe.conversion_report(torch.nn.Linear(2, 2)), ValueError, r"not a converted model"),
    (lambda: ops.spiking_mul(X, torch.ones(5)), ValueError, r"shape"),
    (lambda: ops.spiking_mul(X, X, timesteps=0), ValueError, r"timesteps must be an integer"),
    (lambda: ops.spiking_mul(X, X, mode="async"), ValueError, r"mode must be one of"),
    (lambda: ops.spiking_matmul(X, X), ValueError, r"shape"),
    (lambda: ops.spiking_mul(X.long(), X), TypeError, r"expected a floating-point tensor, got dtype torch.int64"),
    (lambda: ops.spiking_matmul(X, X.T.int()), TypeError, r"expected a floating-point tensor, got dtype torch.int32"),
    (lambda: ops.spiking_mul(X, X.clone().fill_(float("nan"))), ValueError, r"non-finite value"),
    (lambda: ops.spiking_softmax(X, dim=5), ValueError, r"dim 5 is out of range"),
    (lambda: ops.spiking_activation("nope", X), ValueError, r"unknown function 'nope'"),
    (lambda: ops.spiking_layer_norm(X, 5), ValueError, r"normalized_shape"),
    (lambda: ops.spiking_mul(X, X, ranges=((1.0, 0.0), None)), ValueError, r"range must satisfy low <= high"),
    (lambda: energy.neuron_energy_ratio(1.5), ValueError, r"firing_rate must be in \[0, 1\]"),
    (lambda: energy.neuron_energy_ratio(0.3, accounting="both"), ValueError, r"accounting must be"),
    (lambda: energy.spike_table(torch.nn.Linear(2, 2)), ValueError, r"not a converted model"),
]


@pytest.mark.parametrize("call, exc, message", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_argument_raises_a_clear_error(call, exc, message):
    with pytest.raises(exc, match=message) as info:
        call()
    assert not isinstance(info.value, mbe.TableError), "an invalid argument must not be reported as a table problem"


def test_set_timesteps_rejects_an_invalid_t_and_keeps_the_model():
    model, batch = tiny_model("gpt2")
    snn = mbe.convert(model, [batch], progress=False)
    with pytest.raises(ValueError, match=r"timesteps must be an integer in \[1, 64\], got 0"):
        mbe.set_timesteps(snn, 0)
    assert snn.mbe_state.config.timesteps == 16  # nothing lost: the model still runs at its old T
    snn(**batch)


def test_a_valid_t_without_a_table_is_a_table_error_with_the_fix():
    with pytest.raises(mbe.TableError, match="python -m mbe fit gelu"):
        mbe.get_neuron("gelu", timesteps=7)
