"""mbe: training-free conversion of Transformers to spiking networks with MBE neurons."""

from .convert import (
    ConversionConfig,
    ConversionFileError,
    ConversionWarning,
    conversion_report,
    convert,
    default_n_basis,
    error_budget,
    load,
    register_site,
    save,
    set_timesteps,
)
from .evaluate import compare_classifiers, compare_language_models
from .fitting import RECIPES, FitRecipe, FitResult, fit_fs_neuron, fit_neuron, neuron_mse
from .functions import FunctionSpec, get_function, list_functions, register_function
from .neuron import (
    DomainWarning,
    FSNeuron,
    FSParameters,
    MBENeuron,
    MBEParameters,
    NeuronOutput,
    SigmoidSurrogate,
    simulate,
)
from .tables import TableError, TableKey, get_neuron, load_table, save_table

__version__ = "0.1.0"

__all__ = [
    "RECIPES",
    "FitRecipe",
    "FitResult",
    "fit_fs_neuron",
    "fit_neuron",
    "neuron_mse",
    "FunctionSpec",
    "get_function",
    "list_functions",
    "register_function",
    "DomainWarning",
    "FSNeuron",
    "FSParameters",
    "MBENeuron",
    "MBEParameters",
    "NeuronOutput",
    "SigmoidSurrogate",
    "simulate",
    "__version__",
    "TableError",
    "TableKey",
    "ConversionConfig",
    "default_n_basis",
    "conversion_report",
    "error_budget",
    "convert",
    "save",
    "load",
    "ConversionFileError",
    "set_timesteps",
    "register_site",
    "ConversionWarning",
    "compare_classifiers",
    "compare_language_models",
    "get_neuron",
    "load_table",
    "save_table",
]
