"""``recalibrate_batchnorm``: batch-normalization statistics re-estimated on data before
evaluation (the paper trains with learning rate 0 over some batches).

Every ``BatchNormalization`` layer's moving mean and variance become the average of its batch
statistics over ``steps`` batches of the model run in training mode, as a step of training with
learning rate 0 computes them; no other weight changes (the trainable weights are not touched,
and the other non-trainable state a training call writes -- schedule counters, statistics,
seeds -- is restored).
"""

import keras
import numpy as np

from keras_routing.validation import integer


def _batches(dataset):
    if isinstance(dataset, np.ndarray):
        return (dataset[start : start + 32] for start in range(0, len(dataset), 32))
    return iter(dataset)


def recalibrate_batchnorm(model, dataset, steps):
    """Set every batch normalization layer of ``model`` to the mean of its batch statistics
    over ``steps`` batches of ``dataset`` (batches of inputs or of ``(inputs, labels, ...)``, or
    an array of inputs, batched by 32). Returns the number of batches used."""
    steps = integer(steps, "steps")
    norms = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not norms:
        raise ValueError(f"`model` '{model.name}' has no BatchNormalization layer to recalibrate.")
    statistics = {id(v) for layer in norms for v in (layer.moving_mean, layer.moving_variance)}
    other_state = [v for v in model.non_trainable_variables if id(v) not in statistics]
    saved_state = [keras.ops.convert_to_numpy(v) for v in other_state]
    momenta = [layer.momentum for layer in norms]
    used = 0
    try:
        for batch in _batches(dataset):
            if used >= steps:
                break
            x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
            # moving = m * moving + (1 - m) * batch: with m = 1 - 1/(i + 1), the running mean.
            for layer in norms:
                layer.momentum = used / (used + 1.0)
            model(keras.tree.map_structure(np.asarray, x), training=True)
            used += 1
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for variable, value in zip(other_state, saved_state):
            variable.assign(value)
    if not used:
        raise ValueError("`dataset` gave no batches.")
    return used
