"""Inference helpers for models with stochastic layers: ``ensemble_predict``."""

import keras
import numpy as np

from keras_routing.layers.inference import InferenceModes, set_inference
from keras_routing.validation import integer


def ensemble_predict(model, x, runs=5, *, batch_size=None, mode="stochastic"):
    """The mean of ``runs`` predictions of ``model`` on ``x`` with its layers in inference mode
    ``mode`` (the paper's ensemble of stochastic runs of one gated network). The layers' modes
    are restored afterwards. Returns a numpy array (or the model's output structure of them)."""
    runs = integer(runs, "runs")
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, got {model!r}.")  # noqa: TRY004 (the project's convention)
    layers = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, InferenceModes)
    ]
    previous = [(layer, layer.inference) for layer in layers]
    set_inference(model, mode)
    try:
        outputs = [model.predict(x, batch_size=batch_size, verbose=0) for _ in range(runs)]
    finally:
        for layer, inference in previous:
            layer.inference = inference
        for name in ("predict_function", "test_function", "train_function"):
            if getattr(model, name, None) is not None:
                getattr(model, f"make_{name}")(force=True)
    return keras.tree.map_structure(lambda *values: np.mean(np.stack(values), axis=0), *outputs)
