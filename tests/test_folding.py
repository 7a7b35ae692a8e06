"""Batch normalization folded into CondConv experts: the folded copy computes what Keras's own
BatchNormalization layers compute in inference, and only foldable pairs are folded."""

import numpy as np

import keras

from keras_routing.layers import CondConv2D, CondDepthwiseConv2D, Routing
from keras_routing.transforms.folding import Offset, fold_batch_normalization
from tests.reference import to_numpy


def _model():
    inputs = keras.Input((8, 8, 6))
    r = Routing(3, name="block_routing")(inputs)
    x = CondDepthwiseConv2D(
        3, 3, depth_multiplier=2, padding="same", routing=None, use_bias=False, name="dw"
    )(inputs, routing_weights=r)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = CondConv2D(5, 1, 3, routing=None, name="pw")(x, routing_weights=r)  # with a bias
    x = keras.layers.BatchNormalization(name="pw_bn", scale=False)(x)
    x = keras.layers.ReLU()(x)
    x = CondConv2D(4, 3, 3, activation="relu", name="activated")(x)  # BN after ReLU: not linear
    x = keras.layers.BatchNormalization(name="activated_bn")(x)
    x = keras.layers.Conv2D(4, 1, name="plain")(x)  # left to the converter
    x = keras.layers.BatchNormalization(name="plain_bn")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics far from the identity, so folding is visible
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, size=w.shape)
                    if "variance" in w.path or "gamma" in w.path
                    else rng.normal(size=w.shape)
                    for w in layer.weights
                ]
            )
    return model


def test_folded_model_computes_the_same():
    model = _model()
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 6)).astype("float32")
    expected = to_numpy(model(x, training=False))
    before = [to_numpy(w) for w in model.weights]
    folded = fold_batch_normalization(model)
    np.testing.assert_allclose(to_numpy(folded(x, training=False)), expected, rtol=1e-4, atol=1e-4)
    for w, value in zip(model.weights, before):  # the user's model is left as it was
        np.testing.assert_array_equal(to_numpy(w), value)


def test_only_a_linear_condconv_output_normalized_alone_is_folded():
    folded = fold_batch_normalization(_model())
    kinds = {layer.name: type(layer) for layer in folded.layers}
    assert kinds["dw_bn"] is Offset and kinds["pw_bn"] is Offset
    assert kinds["activated_bn"] is keras.layers.BatchNormalization
    assert kinds["plain_bn"] is keras.layers.BatchNormalization


def test_nothing_to_fold_returns_the_model():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 1)(inputs)))
    assert fold_batch_normalization(model) is model
