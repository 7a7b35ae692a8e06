"""The README's main job builds networks that learn from the embedded real digits."""

import numpy as np
import pytest

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
    (x, y), _ = load_digits()
    x, y = x[:512], y[:512]
    model = digit_classifier(experts)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert np.isfinite(losses).all()
