"""The export formats and quantizations, and the checks of an export request.

This module imports neither Keras nor NumPy: the command offers these as its choices before it
chooses the backend.
"""

from keras_routing.validation import integer

FORMATS = ("saved_model", "litert", "onnx")
QUANTIZATIONS = (None, "dynamic", "int8")
# The formats written as one file, and its suffix (a SavedModel is a directory).
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}
INSTALL_EXTRA = "pip install 'keras-routing[export]'"


def check_request(path, format, quantize, representative_dataset, batch_size):
    """Every check of ``export``'s arguments, made before any work (and before a TensorFlow
    process); returns the batch size as an ``int`` (or ``None``)."""
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
    suffix = SUFFIXES.get(format)
    if suffix is not None and path.suffix != suffix:
        kind = "A LiteRT model is a .tflite file" if format == "litert" else "An ONNX model is a .onnx file"
        raise ValueError(f"{kind}, got path {str(path)!r}.")
    return batch_size
