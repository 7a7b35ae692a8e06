"""Export for deployment: TensorFlow SavedModel, LiteRT (TFLite) and ONNX, folded for inference.

    keras_routing.export(model, "model.tflite", format="litert", batch_size=1)
    keras_routing.export(model, "model_int8.tflite", format="litert", quantize="int8",
                         representative_dataset=images)
    keras_routing.deploy.run_litert("model.tflite", images)

- ``formats``: the formats and quantizations, and the checks of a request (Keras-free);
- ``exporter``: ``export`` and its int8 calibration examples;
- ``convert``: the conversion itself, on the TensorFlow backend: batch normalization folded
  into the CondConv experts, the layers' inference forms for the runtime. LiteRT models hold
  builtin ops only: a graph that would need TensorFlow ops (Flex) or a per-example loop
  (``WHILE``) fails at conversion instead of on the phone;
- ``worker``: the TensorFlow export worker, which converts for a model on JAX or PyTorch;
- ``litert``: running LiteRT models in the ``ai-edge-litert`` interpreter.

The names below load their module on first use, so that ``formats`` (the command's choices) is
read without importing Keras.
"""

import importlib

from keras_routing.deploy.formats import FORMATS, QUANTIZATIONS

_NAMES = {
    "export": "keras_routing.deploy.exporter",
    "CALIBRATION_EXAMPLES": "keras_routing.deploy.exporter",
    "run_litert": "keras_routing.deploy.litert",
    "litert_predictor": "keras_routing.deploy.litert",
    "litert_ops": "keras_routing.deploy.litert",
}
__all__ = ["FORMATS", "QUANTIZATIONS", *_NAMES]


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'keras_routing.deploy' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
