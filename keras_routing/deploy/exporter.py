"""``export``: check the request, gather the int8 calibration examples, then convert here (on
TensorFlow) or in the TensorFlow export worker (on JAX and PyTorch)."""

import pathlib

import numpy as np

import keras

from keras_routing.deploy.convert import convert
from keras_routing.deploy.formats import check_request
from keras_routing.deploy.worker import convert_in_tensorflow

CALIBRATION_EXAMPLES = 200


def export(model, path, format="saved_model", quantize=None, representative_dataset=None, batch_size=None):
    """Write ``model`` to ``path`` in ``format`` and return the path.

    - ``format``: ``"saved_model"`` (a directory; ``tf.saved_model.load(path).serve(images)``),
      ``"litert"`` (a ``.tflite`` file of builtin ops) or ``"onnx"`` (a ``.onnx`` file). Every
      output of the model is exported.
    - ``quantize`` (LiteRT only): ``None`` (float32), ``"dynamic"`` (int8 weights, float
      activations) or ``"int8"`` (weights and activations; float input and output), which needs
      ``representative_dataset``: images as the model takes them, as an array, a
      ``tf.data.Dataset`` or an iterable of batches or ``(images, labels)`` pairs; the first
      200 examples calibrate the activation ranges.
    - ``batch_size``: the exported graph's batch size; ``None`` accepts any. On phones use 1:
      CondConv then runs one convolution with the mixed kernel per layer.
    """
    path = pathlib.Path(path)
    batch_size = check_request(path, format, quantize, representative_dataset, batch_size)
    calibration = None if quantize != "int8" else calibration_examples(representative_dataset, model)
    if keras.backend.backend() != "tensorflow":
        return convert_in_tensorflow(model, path, format, quantize, calibration, batch_size)
    return convert(model, path, format, quantize, calibration, batch_size)


def calibration_examples(dataset, model):
    """Up to ``CALIBRATION_EXAMPLES`` examples, stacked, from what the user gave: checked against
    the shape ``model`` takes (a wrong shape would otherwise fail deep in the converter)."""
    if isinstance(dataset, np.ndarray):
        batches = [dataset]
    else:
        batches = (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in dataset)
    examples = []
    for batch in batches:
        batch = np.asarray(batch, dtype="float32")
        examples.extend(batch[i : i + 1] for i in range(len(batch)))
        if len(examples) >= CALIBRATION_EXAMPLES:
            break
    if not examples:
        raise ValueError("`representative_dataset` holds no examples.")
    examples = examples[:CALIBRATION_EXAMPLES]
    shapes = sorted({example.shape[1:] for example in examples})
    expected = tuple(model.input_shape[1:])  # (None where the model takes any size)
    for shape in shapes:
        if len(shape) != len(expected) or any(e not in (None, s) for e, s in zip(expected, shape)):
            raise ValueError(
                f"`representative_dataset` has examples of shape {shape}, but {model.name} takes inputs of "
                f"shape {expected}: calibrate with images as the model takes them."
            )
    if len(shapes) > 1:
        raise ValueError(f"`representative_dataset` has examples of several shapes: {shapes}.")
    return np.concatenate(examples)
