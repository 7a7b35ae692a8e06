"""Export for deployment. Today: TensorFlow SavedModel; LiteRT and ONNX with inference-time
folding are the export issue's work.

A SavedModel is TensorFlow's format, so a model trained on JAX or PyTorch is exported by
TensorFlow: the weights move through a ``.keras`` file to a TensorFlow-backend process.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import keras

FORMATS = ("saved_model",)


def export(model, path, format="saved_model"):
    """Write ``model`` to ``path`` in ``format``; returns the path. The SavedModel's ``serve``
    signature takes the model's inputs (``tf.saved_model.load(path).serve(images)``)."""
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}, got {format!r}.")
    path = pathlib.Path(path)
    if keras.backend.backend() != "tensorflow":
        return _export_with_tensorflow(model, path, format)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def _export_with_tensorflow(model, path, format):
    with tempfile.TemporaryDirectory() as scratch:
        saved = pathlib.Path(scratch) / "model.keras"
        model.save(saved)
        command = [sys.executable, "-m", "keras_routing", "--backend", "tensorflow", "export", str(saved),
                   "--format", format, "--output", str(path)]  # fmt: skip
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Exporting through TensorFlow failed:\n{result.stderr[-2000:]}")
    return path
