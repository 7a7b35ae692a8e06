"""Input data: TFDS pipelines for ``model.fit``, and a small real dataset shipped in the package.

``image_classification`` builds a ``tf.data`` pipeline from any TFDS image-classification
dataset; ``embedded_digits`` (registered on import) is the package's own 10,000 real MNIST
digits as a TFDS dataset, and ``load_digits`` / ``load_digit_images`` give the same split as
NumPy arrays.
"""

from keras_routing.data.coco_json import CocoJson, coco_segmentation
from keras_routing.data.digits_builder import EmbeddedDigits
from keras_routing.data.embedded import load_digit_images, load_digits
from keras_routing.data.pipelines import (
    PREPROCESSING,
    image_classification,
    normalize,
    num_examples,
    object_detection,
)

__all__ = [
    "CocoJson",
    "coco_segmentation",
    "EmbeddedDigits",
    "PREPROCESSING",
    "image_classification",
    "load_digit_images",
    "load_digits",
    "normalize",
    "num_examples",
    "object_detection",
]
