"""The embedded digits as a TFDS dataset, so ``tfds.load("embedded_digits")`` works offline.

Importing ``keras_routing.data`` registers the builder. Its examples come from the package's
``mnist_digits.npz`` (no download); the ``train`` (8,000) and ``test`` (2,000) splits are the
ones ``load_digits`` returns, so arrays and TFDS pipelines see the same held-out digits.
"""

import tensorflow_datasets as tfds

from keras_routing.data.embedded import load_digits

NAME = "embedded_digits"


class EmbeddedDigits(tfds.core.GeneratorBasedBuilder):
    """10,000 real MNIST digits (the official test split) shipped inside keras-routing."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The MNIST test split, 8,000 train / 2,000 test with a fixed shuffle."}

    def _info(self):
        return self.dataset_info_from_configs(
            description=(
                "The 10,000 images of the official MNIST test split, shipped in the keras-routing "
                "package (MIT-licensed packaging by rasbt/mnist-pngs; see LICENSE.mnist), split "
                "with a fixed shuffle into 8,000 training and 2,000 test images."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/rasbt/mnist-pngs",
            license="MIT (packaging); MNIST is commonly cited as CC BY-SA 3.0",
        )

    def _split_generators(self, dl_manager):
        train, test = load_digits()
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, arrays):
        images, labels = arrays
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}
