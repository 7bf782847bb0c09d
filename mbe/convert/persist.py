"""Save a converted model's conversion and load it onto the same model again, without calibrating.

Calibration (running batches, recording every site's input intervals and sketches, checking every replacement)
and the neurons fitted to those inputs are the expensive part of a conversion. :func:`save` writes them to a
folder; :func:`load` rebuilds the spiking twin of the same model from it in about the time of a deep copy, with
outputs identical to the converted model that was saved (the same sites, intervals, groups and neurons, bit for
bit). Evaluation workers and later sessions use it to skip calibration.

The folder holds two files, neither a pickle:

- ``mbe_conversion.json``: the format version, ``mbe``'s version, the :class:`~mbe.convert.ConversionConfig`,
  a fingerprint of the model it was made for (class, parameter names and shapes, a strided sample of the
  values), every site's record (kind, function, operator, handler, intervals, sample counts, reference check,
  why it stays analog), the activation groups and every fitted neuron (parameters as JSON floats, which
  round-trip float32 exactly), tails included;
- ``mbe_sketches.safetensors``: every site's calibration sketch (``<site>|<key>`` -> float32 ``[n]``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Optional, Union

from torch import nn

from ..neuron.fs import FSNeuron, FSParameters
from ..neuron.mbe import BinaryIdentity, MBENeuron, MBEParameters
from .config import ConversionConfig
from .sites import ConversionState

FORMAT = "mbe-conversion"
FORMAT_VERSION = 1
CONFIG_FILE = "mbe_conversion.json"
SKETCH_FILE = "mbe_sketches.safetensors"
#: values per parameter tensor that enter the model fingerprint (evenly strided)
FINGERPRINT_SAMPLES = 4096
#: the :class:`Site` fields stored in the JSON record (``sketches`` go to safetensors; spike counters are not kept)
SITE_FIELDS = (
    "name",
    "kind",
    "function",
    "operator",
    "handler",
    "module_class",
    "enabled",
    "ranges",
    "seen",
    "reference_error",
    "analog_reason",
)


class ConversionFileError(ValueError):
    """A saved conversion is missing, corrupt, of another format version, or was made for another model."""


def model_fingerprint(model: nn.Module) -> dict:
    """What identifies the model a conversion belongs to: its class, a digest of its parameter and buffer names,
    shapes and dtypes, and a digest of up to :data:`FINGERPRINT_SAMPLES` evenly strided values of each (float64
    bytes): another checkpoint of the same architecture changes the second digest."""
    structure, values = hashlib.sha256(), hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        structure.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel() > FINGERPRINT_SAMPLES:
            flat = flat[:: math.ceil(flat.numel() / FINGERPRINT_SAMPLES)]
        values.update(flat.cpu().double().contiguous().numpy().tobytes())
    return {"class": type(model).__name__, "structure": structure.hexdigest()[:16], "values": values.hexdigest()[:16]}


# --- neurons -----------------------------------------------------------------------------------------------------


def neuron_record(neuron) -> Optional[dict]:
    """A JSON-safe record of an MBE or FS neuron (``None`` stays ``None``: the shipped table)."""
    if neuron is None:
        return None
    base = {"function": neuron.function, "domain": list(neuron.domain)}
    if isinstance(neuron, MBENeuron):
        kind = "binary_identity" if isinstance(neuron, BinaryIdentity) else "mbe"  # exact halving kernels
        return {"type": kind, "timesteps": neuron.timesteps, "params": neuron.parameters_record().to_dict(), **base}
    if isinstance(neuron, FSNeuron):
        return {"type": "fs", "params": neuron.parameters_record().to_dict(), **base}
    raise TypeError(f"mbe.save: cannot store a neuron of type {type(neuron).__name__} (MBENeuron or FSNeuron)")


def neuron_from_record(record: Optional[dict]):
    """The neuron :func:`neuron_record` describes (float32)."""
    if record is None:
        return None
    kind = record.get("type")
    if kind in ("mbe", "binary_identity"):
        params = MBEParameters.from_dict(record["params"])
        return (BinaryIdentity if kind == "binary_identity" else MBENeuron)(
            params, record["timesteps"], function=record["function"], domain=record["domain"]
        )
    if kind == "fs":
        return FSNeuron(FSParameters.from_dict(record["params"]), function=record["function"], domain=record["domain"])
    raise ValueError(f"unknown neuron type {kind!r}")


# --- config ------------------------------------------------------------------------------------------------------


def config_record(config: ConversionConfig) -> dict:
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "neurons":
            value = {fn: neuron_record(n) for fn, n in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_record(record: dict) -> ConversionConfig:
    known = {f.name for f in fields(ConversionConfig)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}")
    values = dict(record)
    values["neurons"] = {fn: neuron_from_record(r) for fn, r in values.get("neurons", {}).items()}
    for name in ("convert", "exclude"):
        if name in values:
            values[name] = tuple(values[name])
    return ConversionConfig(**values)


# --- the fitted neurons of a state -------------------------------------------------------------------------------


def _fitted_records(state: ConversionState) -> list[dict]:
    out = []
    for key, value in state.fitted.items():
        if len(key) == 4 and key[3] == "tails":
            function, domain, timesteps, _ = key
            tails = [{"neuron": neuron_record(t.neuron), "onset": t.onset} for t in value]
            out.append({"tails": [function, list(domain), timesteps], "items": tails})
        else:
            function, group, timesteps = key
            out.append(
                {"key": [function, None if group is None else list(group), timesteps], "neuron": neuron_record(value)}
            )
    return out


def _restore_fitted(state: ConversionState, records: list[dict]) -> None:
    from ..ops import Tail

    for rec in records:
        if "tails" in rec:
            function, domain, timesteps = rec["tails"]
            items = tuple(Tail(neuron_from_record(t["neuron"]), t["onset"]) for t in rec["items"])
            state.fitted[(function, tuple(float(v) for v in domain), timesteps, "tails")] = items
        else:
            function, group, timesteps = rec["key"]
            state.fitted[(function, None if group is None else tuple(group), timesteps)] = neuron_from_record(
                rec["neuron"]
            )


# --- save / load -------------------------------------------------------------------------------------------------


def save(snn: nn.Module, directory: Union[str, Path], *, source: Optional[str] = None) -> Path:
    """Write ``snn``'s conversion (config, sites, groups, fitted neurons, sketches) to ``directory``.

    Args:
        snn: a model returned by :func:`mbe.convert` (``ValueError`` otherwise).
        directory: created if missing; its two files (:data:`CONFIG_FILE`, :data:`SKETCH_FILE`) are overwritten.
        source: where the model came from (a zoo name or a model folder), stored for the record and the CLI.
    Returns:
        the folder. The model's weights are not written: :func:`load` takes the model.
    """
    from safetensors.torch import save_file

    from .. import __version__
    from .api import _state

    state = _state(snn)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    sites = []
    sketches = {}
    for site in state.sites.values():
        rec = {name: getattr(site, name) for name in SITE_FIELDS}
        rec["ranges"] = {k: list(v) for k, v in site.ranges.items()}
        sites.append(rec)
        for key, sketch in site.sketches.items():
            sketches[f"{site.name}|{key}"] = sketch.detach().float().contiguous().cpu()
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mbe_version": __version__,
        "source": source,
        "model": state.model_fingerprint,
        "config": config_record(state.config),
        "sites": sites,
        "analog": [{"name": a.name, "module_class": a.module_class, "reason": a.reason} for a in state.analog],
        "groups": {fn: [list(g) for g in groups] for fn, groups in state.groups.items()},
        "fitted": _fitted_records(state),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=1))
    save_file(sketches, str(folder / SKETCH_FILE), metadata={"format": FORMAT})
    return folder


def read_record(directory: Union[str, Path]) -> dict:
    """The JSON record of a saved conversion (:class:`ConversionFileError` naming what is wrong)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConversionFileError(
            f"no saved conversion at {Path(directory)}: {CONFIG_FILE} is missing (write one with mbe.save(snn, DIR) "
            "or python -m mbe convert ... --out DIR)"
        )
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConversionFileError(f"{path} is not valid JSON ({exc}); save the conversion again") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConversionFileError(f"{path} is not an mbe conversion (format {record.get('format')!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise ConversionFileError(
            f"{path} has format version {record.get('format_version')}; this mbe reads {FORMAT_VERSION}: "
            "convert the model again"
        )
    return record


def load(
    directory: Union[str, Path],
    model: nn.Module,
    *,
    timesteps: Optional[int] = None,
    check_model: bool = True,
) -> nn.Module:
    """The spiking twin of ``model`` from a conversion :func:`save` wrote, without calibrating.

    Args:
        directory: the folder :func:`save` wrote.
        model: the same model the conversion was made for (it is deep-copied and left untouched).
        timesteps: run at this T instead of the saved one (:func:`mbe.set_timesteps`; neurons of a T that was
            never used are fitted, or read from the fit cache, as there).
        check_model: compare ``model``'s fingerprint (:func:`model_fingerprint`) with the saved one and raise
            :class:`ConversionFileError` if they differ (another architecture or checkpoint: its calibration
            does not hold).
    Returns:
        the converted model, equal to the saved one in every output.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .api import _prepare, _settle, set_timesteps

    if not isinstance(model, nn.Module):
        raise TypeError(f"mbe.load: model must be a torch.nn.Module, got {type(model).__name__}")
    folder = Path(directory)
    record = read_record(folder)
    if check_model and record.get("model") is not None:
        have = model_fingerprint(model)
        want = record["model"]
        if have != want:
            what = (
                "class"
                if have["class"] != want["class"]
                else "structure"
                if have["structure"] != want["structure"]
                else "weights"
            )
            raise ConversionFileError(
                f"mbe.load: the conversion in {folder} was made for another model ({what} differ: saved {want}, "
                f"given {have}); pass the model it was made for, convert this one, or load with check_model=False"
            )
    try:
        config = config_from_record(record["config"])
        sketch_path = folder / SKETCH_FILE
        sketches = load_file(str(sketch_path)) if sketch_path.is_file() else {}
    except (KeyError, TypeError, ValueError, SafetensorError, OSError) as exc:
        raise ConversionFileError(
            f"mbe.load: {folder} is corrupt ({type(exc).__name__}: {exc}); save it again"
        ) from None
    snn, state = _prepare(model, config)
    state.model_fingerprint = record.get("model")
    try:
        for rec in record["sites"]:
            site = state.new_site(
                rec["name"], rec["kind"], rec["function"], rec["operator"], rec["handler"], rec["module_class"]
            )
            site.enabled = bool(rec["enabled"])
            site.ranges = {k: (float(v[0]), float(v[1])) for k, v in rec["ranges"].items()}
            site.seen = {k: int(v) for k, v in rec["seen"].items()}
            site.reference_error = None if rec["reference_error"] is None else float(rec["reference_error"])
            site.analog_reason = str(rec["analog_reason"])
            # in the order calibration saw the keys (the ranges' order; safetensors sorts its keys)
            site.sketches = {k: sketches[f"{site.name}|{k}"] for k in site.ranges if f"{site.name}|{k}" in sketches}
        state.groups = {fn: [tuple(g) for g in groups] for fn, groups in record["groups"].items()}
        _restore_fitted(state, record["fitted"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConversionFileError(
            f"mbe.load: {folder} is corrupt ({type(exc).__name__}: {exc}); save it again"
        ) from None
    saved = {rec["name"] for rec in record["sites"]}
    unknown = sorted(set(state.sites) - saved)
    if unknown:
        raise ConversionFileError(
            f"mbe.load: {type(model).__name__} has sites the saved conversion does not know ({unknown[:5]}); it was "
            "made for another model or another mbe version: convert again"
        )
    _settle(snn, state)
    if timesteps is not None:
        set_timesteps(snn, timesteps)
    return snn
