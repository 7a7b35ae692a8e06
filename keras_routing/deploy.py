"""Export for deployment: TensorFlow SavedModel, LiteRT (TFLite) and ONNX, folded for inference.

    keras_routing.export(model, "model.tflite", format="litert", batch_size=1)
    keras_routing.export(model, "model_int8.tflite", format="litert", quantize="int8",
                         representative_dataset=images)

Batch normalization after a CondConv layer is first folded into its experts
(``keras_routing.folding``); then, while the model is traced for export, its conditional layers
take their inference form for the runtime (``keras_routing.layers.deployment``). LiteRT models
hold builtin ops only: a graph that would need TensorFlow ops (Flex) or a per-example loop
(``WHILE``) fails here, at conversion, instead of on the phone.

Every format is written by TensorFlow, so a model trained on JAX or PyTorch is exported by a
TensorFlow-backend process: its weights move there through a ``.keras`` file.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

import keras
from keras_routing.folding import fold_batch_normalization
from keras_routing.layers import deployment
from keras_routing.validation import integer

FORMATS = ("saved_model", "litert", "onnx")
QUANTIZATIONS = (None, "dynamic", "int8")
# Ops a mobile runtime cannot take: TensorFlow ops (Flex) and per-example loops.
FORBIDDEN_LITERT_OPS = ("WHILE", "FLEX", "CUSTOM")
CALIBRATION_EXAMPLES = 200
_EXTRA = "pip install 'keras-routing[export]'"
_COMMAND_ERROR = "keras-routing: error: "  # how the command reports a bad request (exit status 2)


def export(model, path, format="saved_model", quantize=None, representative_dataset=None, batch_size=None):
    """Write ``model`` to ``path`` in ``format`` and return the path.

    - ``format``: ``"saved_model"`` (a directory; ``tf.saved_model.load(path).serve(images)``),
      ``"litert"`` (a ``.tflite`` file of builtin ops) or ``"onnx"`` (a ``.onnx`` file).
    - ``quantize`` (LiteRT only): ``None`` (float32), ``"dynamic"`` (int8 weights, float
      activations) or ``"int8"`` (weights and activations; float input and output), which needs
      ``representative_dataset``: images as the model takes them, as an array, a
      ``tf.data.Dataset`` or an iterable of batches or ``(images, labels)`` pairs; the first
      200 examples calibrate the activation ranges.
    - ``batch_size``: the exported graph's batch size; ``None`` accepts any. On phones use 1:
      CondConv then runs one convolution with the mixed kernel per layer.
    """
    path = pathlib.Path(path)
    batch_size = _check_request(path, format, quantize, representative_dataset, batch_size)
    calibration = None if quantize != "int8" else _calibration_examples(representative_dataset, model)
    if keras.backend.backend() != "tensorflow":
        return _export_with_tensorflow(model, path, format, quantize, calibration, batch_size)
    model = fold_batch_normalization(model)  # converters fold it into static kernels only
    signature = [keras.InputSpec(shape=(batch_size, *model.input_shape[1:]), dtype="float32")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with deployment.exporting_for(format, quantize):
        if format == "saved_model":
            model.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False)
        elif format == "litert":
            _export_litert(model, path, signature, quantize, calibration)
        else:
            _export_onnx(model, path, signature)
    return path


def run_litert(path, images, threads=None):
    """Outputs of the LiteRT model at ``path`` on ``images`` (see ``litert_predictor``)."""
    return litert_predictor(path, threads)(images)


def litert_predictor(path, threads=None):
    """A function from images to the outputs of the LiteRT model at ``path``, holding one
    interpreter for all its calls. It runs the model's own batch size, or all the images at
    once when that is free."""
    interpreter = _litert_interpreter(path, threads)
    (inputs,), (outputs,) = interpreter.get_input_details(), interpreter.get_output_details()
    fixed = inputs["shape_signature"][0] != -1

    def predict(images):
        images = np.asarray(images, dtype="float32")
        batch = inputs["shape"][0] if fixed else len(images)
        if not fixed:
            interpreter.resize_tensor_input(inputs["index"], (batch, *images.shape[1:]))
        interpreter.allocate_tensors()
        results = []
        for start in range(0, len(images), batch):
            interpreter.set_tensor(inputs["index"], images[start : start + batch])
            interpreter.invoke()
            results.append(interpreter.get_tensor(outputs["index"]).copy())
        return np.concatenate(results)

    return predict


def litert_ops(path):
    """The set of op names in a LiteRT model, read by the ``ai-edge-litert`` interpreter."""
    interpreter = _litert_interpreter(path)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def _check_request(path, format, quantize, representative_dataset, batch_size):
    """Every check of the arguments, made before any work (and before a TensorFlow subprocess);
    returns the batch size as an ``int`` (or ``None``)."""
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}, got {format!r}.")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got {quantize!r}.")
    if quantize is not None and format != "litert":
        raise ValueError(
            f"`quantize` applies to format='litert' only, got format={format!r}. For ONNX, quantize "
            "the exported file with onnxruntime.quantization."
        )
    if quantize == "int8" and representative_dataset is None:
        raise ValueError(
            "quantize='int8' needs `representative_dataset`: some images as the model takes them "
            "(an array or a tf.data.Dataset), to calibrate the activation ranges."
        )
    batch_size = integer(batch_size, "batch_size", optional=True)  # None: any batch size
    suffix = {"litert": ".tflite", "onnx": ".onnx"}.get(format)
    if suffix is not None and path.suffix != suffix:
        kind = "A LiteRT model is a .tflite file" if format == "litert" else "An ONNX model is a .onnx file"
        raise ValueError(f"{kind}, got path {str(path)!r}.")
    return batch_size


def _calibration_examples(dataset, model):
    """Up to CALIBRATION_EXAMPLES examples, stacked, from what the user gave: checked against the
    shape ``model`` takes (a wrong shape would otherwise fail deep in the converter)."""
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


def _export_litert(model, path, signature, quantize, calibration):
    import tensorflow as tf

    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        # Integer ops throughout (what NPUs and the int8 CPU kernels need); float in and out,
        # so the model is called exactly like the float one.
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
        options["representative_dataset"] = lambda: ([example[None]] for example in calibration)
    try:
        model.export(str(path), format="litert", input_signature=signature, verbose=False, **options)
    except Exception as error:  # the converter raises its own ConverterError
        raise ValueError(
            f"{model.name} cannot be converted to LiteRT with builtin ops only: "
            f"{_first_line(error)}. Ops that need TensorFlow (Flex) do not run on phones; replace "
            "the layer that uses them."
        ) from error
    forbidden = sorted(op for op in litert_ops(path) if op.upper().startswith(FORBIDDEN_LITERT_OPS))
    if forbidden:
        path.unlink()
        raise ValueError(
            f"{model.name} converted to LiteRT with {forbidden}, which mobile delegates reject "
            "(a per-example loop or a TensorFlow op); nothing was written."
        )


def _export_onnx(model, path, signature):
    try:
        import tf2onnx  # noqa: F401  (Keras converts TensorFlow graphs with it)
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx: {_EXTRA}") from error
    model.export(str(path), format="onnx", input_signature=signature, verbose=False)


def _litert_interpreter(path, threads=None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(f"Running LiteRT models needs ai-edge-litert: {_EXTRA}") from error
    return Interpreter(model_path=str(path), num_threads=threads)


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _export_with_tensorflow(model, path, format, quantize, calibration, batch_size):
    with tempfile.TemporaryDirectory() as scratch:
        saved = pathlib.Path(scratch) / "model.keras"
        model.save(saved)
        command = [
            sys.executable,
            "-m",
            "keras_routing",
            "--backend",
            "tensorflow",
            "export",
            str(saved),
            "--format",
            format,
            "--output",
            str(path),
        ]
        if quantize is not None:
            command += ["--quantize", quantize]
        if calibration is not None:
            np.save(pathlib.Path(scratch) / "calibration.npy", calibration)
            command += ["--representative", str(pathlib.Path(scratch) / "calibration.npy")]
        if batch_size is not None:
            command += ["--batch-size", str(batch_size)]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith(_COMMAND_ERROR)]
    if result.returncode == 2 and errors:  # the export's own ValueError: the same one here
        raise ValueError(errors[-1][len(_COMMAND_ERROR) :])
    if result.returncode != 0:
        raise RuntimeError(f"Exporting through TensorFlow failed:\n{result.stderr[-2000:]}")
    return path
