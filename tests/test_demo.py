"""The README's main job builds networks that learn from the embedded real digits."""

import numpy as np
import pytest

import keras

from keras_routing.data import load_digits
from keras_routing.demo import digit_classifier
from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D


def test_cc_network_uses_condconv_with_one_routing_per_block():
    model = digit_classifier(experts=4)
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(CondDepthwiseConv2D) == kinds.count(CondConv2D) == 2
    assert kinds.count(CondDense) == 1
    # Block layers take their routing weights from the block's routing function.
    assert all(layer.routing is None for layer in model.layers if isinstance(layer, (CondConv2D, CondDepthwiseConv2D)))


@pytest.mark.parametrize("experts", [None, 4])
def test_trains_on_real_digits(experts):
    (x, y), (x_test, y_test) = load_digits()
    model = digit_classifier(experts)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(x[:1024], y[:1024], batch_size=32, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0], losses
    # Learned, not memorised: well above chance (10%) on held-out digits.
    _, accuracy = model.evaluate(x_test[:500], y_test[:500], verbose=0)
    assert accuracy > 0.3, accuracy
