"""keras-routing: conditional-computation layers and models for Keras 3.

Submodules load on first use (``keras_routing.zoo``, ``.layers``, ``.data``, ...), so that the
``keras-routing`` command can choose the Keras backend before Keras is imported.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = ("analysis", "data", "layers", "training", "zoo")
_FUNCTIONS = {"profile": "keras_routing.profiler", "Profile": "keras_routing.profiler", "export": "keras_routing.deploy"}
__all__ = ["Profile", "export", "profile", *_SUBMODULES, "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_routing.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'keras_routing' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
