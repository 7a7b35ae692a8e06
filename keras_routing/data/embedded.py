"""A small real image set shipped inside the package, so the demo and tests need no download.

``mnist_digits.npz``: the 10,000 images of the official MNIST test split, 28x28 grayscale,
uint8, from the public repository rasbt/mnist-pngs (MIT licence, ``LICENSE.mnist`` beside it;
MNIST itself is commonly cited as CC BY-SA 3.0). Stored sorted by class; ``load_digits`` splits
it with a fixed shuffle into 8,000 training and 2,000 held-out images.
"""

import importlib.resources

import numpy as np

TRAIN_SIZE = 8000


def load_digits():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (n, 28, 28, 1), int64 labels."""
    with importlib.resources.files(__package__).joinpath("mnist_digits.npz").open("rb") as f:
        data = np.load(f)
        images, labels = data["images"], data["labels"].astype("int64")
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order, :, :, None], labels[order]
    return (images[:TRAIN_SIZE], labels[:TRAIN_SIZE]), (images[TRAIN_SIZE:], labels[TRAIN_SIZE:])


def load_digit_images(size=32, channels=3):
    """The embedded digits as the zoo's ImageNet models take them, preprocessed exactly as the
    TFDS pipeline (``image_classification("embedded_digits", ...)``) preprocesses them, so a model
    scores the same on both: resized (bilinear) to ``size`` x ``size``, ``channels`` copies of the
    gray channel, float32 scaled to [-1, 1] (MobileNet's ``preprocess_input``). Same split as
    ``load_digits``."""
    import tensorflow as tf

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"`size` must be a positive int, got {size!r}.")

    def convert(images):
        resized = tf.image.resize(images, (int(size), int(size))).numpy()  # float32, [0, 255]
        return np.repeat(resized / 127.5 - 1.0, channels, axis=-1).astype("float32")

    (x_train, y_train), (x_test, y_test) = load_digits()
    return (convert(x_train), y_train), (convert(x_test), y_test)
