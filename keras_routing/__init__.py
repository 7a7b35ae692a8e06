"""keras-routing: conditional-computation layers and models for Keras 3.

Submodules load on first use (``keras_routing.zoo``, ``.layers``, ``.data``, ...), so that the
``keras-routing`` command can choose the Keras backend before Keras is imported.

The layers register themselves with Keras's serialization when ``keras_routing.layers`` is
imported; ``keras.saving.load_model`` needs them registered. So importing this package imports
the layers at once if Keras is imported already, and otherwise as soon as Keras is imported
(an import hook, which imports nothing itself): after ``import keras_routing``, a saved model
loads whichever was imported first.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"
_SUBMODULES = (
    "analysis",
    "data",
    "deploy",
    "layers",
    "losses",
    "metrics",
    "models",
    "profiler",
    "schedules",
    "training",
    "transforms",
    "zoo",
)
_FUNCTIONS = {
    "Task": "keras_routing.models.task",
    "profile": "keras_routing.profiler",
    "Profile": "keras_routing.profiler",
    "export": "keras_routing.deploy",
    "set_inference": "keras_routing.layers",
    "ensemble_predict": "keras_routing.inference_utils",
    "recalibrate_batchnorm": "keras_routing.training.batchnorm",
    "prune_gated_layers": "keras_routing.transforms.prune_layers",
    "prune_gated_channels": "keras_routing.transforms.prune_channels",
}
__all__ = [
    "Profile",
    "Task",
    "ensemble_predict",
    "export",
    "profile",
    "prune_gated_channels",
    "prune_gated_layers",
    "recalibrate_batchnorm",
    "set_inference",
    *_SUBMODULES,
    "__version__",
]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_routing.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'keras_routing' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


# Modules whose layers register with Keras's serialization: the layers, and those the transforms
# create (a folded model's ``Offset``), the schedules in layers' configs, the task models
# (``Task``, ``EarlyExitTask``) and the zoo's own (``DeepMoETask``, the segmentation tasks, the
# routing zoo's ``DenseExpert`` and ``TaskReadouts``): without them a saved zoo model would not
# load after ``import keras_routing``.
_REGISTERING = (
    "keras_routing.layers",
    "keras_routing.transforms",
    "keras_routing.schedules",
    "keras_routing.models.task",
    "keras_routing.models.early_exit_task",
    "keras_routing.zoo",
)


class _RegisterLayersAfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``keras`` is first imported, it wraps Keras's own loader so
    that ``keras_routing.layers`` is imported (its classes registered) once Keras is loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once, and out of the way of the search below
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            for registering in _REGISTERING:
                importlib.import_module(registering)

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    for _module in _REGISTERING:
        importlib.import_module(_module)
elif not any(isinstance(finder, _RegisterLayersAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersAfterKeras())
