"""Conversion in this process, on the TensorFlow backend, whose converters write every format.

Batch normalization after a CondConv layer is first folded into its experts; then, while the
model is traced, its conditional layers take their inference form for the runtime
(``keras_routing.layers.deployment``). Every output of the model is exported.
"""

import keras

from keras_routing.deploy.formats import INSTALL_EXTRA
from keras_routing.deploy.litert import litert_ops
from keras_routing.layers import deployment
from keras_routing.transforms import fold_batch_normalization

# Ops a mobile runtime cannot take: TensorFlow ops (Flex) and per-example loops.
FORBIDDEN_LITERT_OPS = ("WHILE", "FLEX", "CUSTOM")


def convert(model, path, format, quantize=None, calibration=None, batch_size=None):
    """Write ``model`` to ``path`` (a checked request: see ``keras_routing.deploy.export``);
    ``calibration``: the stacked int8 calibration examples."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"Converting needs the tensorflow backend, not {keras.backend.backend()!r}.")
    model = fold_batch_normalization(model)  # converters fold it into static kernels only
    signature = [keras.InputSpec(shape=(batch_size, *model.input_shape[1:]), dtype="float32")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with deployment.exporting_for(format, quantize):
        if format == "saved_model":
            model.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False)
        elif format == "litert":
            _litert(model, path, signature, quantize, calibration)
        else:
            _onnx(model, path, signature)
    return path


def _litert(model, path, signature, quantize, calibration):
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
            f"{first_line(error)}. Ops that need TensorFlow (Flex) do not run on phones; replace "
            "the layer that uses them."
        ) from error
    forbidden = sorted(op for op in litert_ops(path) if op.upper().startswith(FORBIDDEN_LITERT_OPS))
    if forbidden:
        path.unlink()
        raise ValueError(
            f"{model.name} converted to LiteRT with {forbidden}, which mobile delegates reject "
            "(a per-example loop or a TensorFlow op); nothing was written."
        )


def _onnx(model, path, signature):
    try:
        import tf2onnx  # noqa: F401  (Keras converts TensorFlow graphs with it)
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx: {INSTALL_EXTRA}") from error
    model.export(str(path), format="onnx", input_signature=signature, verbose=False)


def first_line(error):
    """The first non-blank line of an exception's message (its type's name if it has none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
