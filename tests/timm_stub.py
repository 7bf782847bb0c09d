"""timm without torchvision, for the tests' own process: :func:`import_timm` (used by ``test_timm.py`` and
``test_paper_fixture.py``).

timm must be installed WITHOUT its torchvision dependency (``pip install --no-deps timm==1.0.31``; its other
dependencies, pyyaml, huggingface_hub and safetensors, come with transformers): the only torchvision wheel for
torch 2.13 on the project's machines is a CUDA build that fails to import (``operator torchvision::nms does
not exist``) and then breaks ``from transformers import BertForSequenceClassification``. Every timm release
that has the register-token ViTs (0.9.8 and later) imports ``torchvision`` when ``timm`` is imported
(``timm.layers`` needs ``torchvision.ops.misc.FrozenBatchNorm2d``, ``timm.data`` its transforms and data sets),
and importing ``timm.models.vision_transformer`` alone runs ``timm/__init__`` too, so :func:`import_timm`
lends stand-ins for torchvision's names during that one import and removes them afterwards: nothing of
timm that is used here touches them (a timm feature that does raises ``ImportError`` saying torchvision is
missing), and transformers, which checks for torchvision through package metadata, keeps treating it as
absent (its ``is_timm_available()`` is False without torchvision, so transformers never imports timm itself).

Once imported here, ``timm`` is in ``sys.modules``, so :func:`mbe.zoo.timm_models.import_timm` finds it in this
process; a fresh process (a notebook kernel) still cannot import timm without torchvision (:func:`importable`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import subprocess
import sys
import types

TIMM_VERSION = "1.0.31"
INSTALL = (
    f"timm not installed: pip install --no-deps timm=={TIMM_VERSION} (never torchvision: its only wheel for "
    "torch 2.13 here is a CUDA build that fails to import and then breaks transformers)"
)

MISSING = "torchvision is not installed (timm was installed with --no-deps); this timm feature needs it"


class _Absent(type):
    """A stand-in for any torchvision name: its attributes are stand-ins, calling it raises ImportError
    (so timm's module-level ``isinstance`` checks, subclassing and constant tables still import)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise ImportError(f"{MISSING} ({cls.__name__})")


class _AbsentModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(name, (), {})


class _AbsentTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``torchvision`` / ``torchvision.*`` import with an :class:`_AbsentModule` package."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _AbsentModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_timm():
    """``import timm``; where torchvision is absent, with stand-ins for its names during the import only
    (see the module docstring). Nothing named ``torchvision`` is left in ``sys.modules`` afterwards."""
    if "timm" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        import timm

        return timm
    finder = _AbsentTorchvision()
    sys.meta_path.insert(0, finder)
    try:
        import timm
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return timm


def importable() -> bool:
    """Whether ``import timm`` works in a fresh interpreter (a notebook kernel), without stand-ins."""
    code = "import timm"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300).returncode == 0
