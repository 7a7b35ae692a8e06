"""Input data. The embedded digits need no network; TFDS pipelines arrive with issue 4."""

from keras_routing.data.embedded import load_digit_images, load_digits

__all__ = ["load_digit_images", "load_digits"]
