"""Real images for zoo tests, and weights that make a misplaced weight show."""

import numpy as np

import keras
from keras_routing.data import load_digit_images
from tests.reference import to_numpy


def digits_rgb(count, size=32, split="test"):
    """``count`` real digits resized to ``size``x``size``, as 3 channels scaled to [-1, 1]."""
    train, test = load_digit_images(size)
    x, y = train if split == "train" else test
    return x[:count], y[:count]


def perturb_weights(model, seed=0):
    """Give every weight (batch-norm statistics included) distinct values, so a weight that
    lands in the wrong place changes the outputs."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = to_numpy(weight)
        if "variance" in weight.path:
            new = rng.uniform(0.5, 1.5, value.shape)
        else:
            scale = value.std() if value.std() > 0 else 0.1
            new = value + rng.normal(0, 0.1 * scale, value.shape)
        weight.assign(new.astype("float32"))


def with_data_statistics(model, images):
    """Batch-norm statistics taken from real images. A freshly initialised network passes almost
    nothing through 50 layers in inference mode, and a briefly trained one still carries moving
    statistics far from the data's (its held-out predictions are near chance)."""
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    return model
