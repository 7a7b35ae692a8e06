"""The Router base: what every router shares, and that stacked experts take any router."""

import numpy as np
import pytest

import keras
from keras import ops

from keras_routing.layers import CondConv2D, CondDense, Router, Routing, StackedExperts
from tests.reference import literal_condconv, to_numpy


class FirstChannels(Router):
    """A router that is not CondConv's: softmax over the first ``num_experts`` pooled channels."""

    def call(self, inputs, training=None):
        return ops.softmax(self.global_features(inputs)[:, : self.num_experts], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts)


def test_routing_is_a_router_and_stacked_experts_base_the_layers():
    assert isinstance(Routing(3), Router)
    assert issubclass(CondConv2D, StackedExperts) and issubclass(CondDense, StackedExperts)


@pytest.mark.parametrize("shape", [(2, 6), (2, 5, 6), (2, 4, 5, 6)])
def test_global_features_average_every_axis_but_batch_and_channels(shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    features = to_numpy(FirstChannels(3).global_features(ops.convert_to_tensor(x)))
    expected = x if len(shape) == 2 else x.mean(axis=tuple(range(1, len(shape) - 1)))
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
    assert FirstChannels(3).global_features_shape((None,) + shape[1:]) == (None, 6)


def test_input_rank_and_channels_are_checked():
    with pytest.raises(ValueError, match="rank >= 2"):
        Routing(3)(np.zeros((4,), "float32"))
    with pytest.raises(ValueError, match="channels"):
        FirstChannels(3).check_input_shape((None, 8, 8, None))


@pytest.mark.parametrize("value", [0, -2, 2.5, True, "3"])
def test_num_experts_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match="`num_experts` must be an integer"):
        FirstChannels(value)


def test_config_round_trips_with_num_experts():
    router = FirstChannels(np.int64(3), name="first")
    config = router.get_config()
    assert config["num_experts"] == 3 and type(config["num_experts"]) is int
    assert FirstChannels.from_config(config).get_config() == config


def test_stacked_experts_accept_any_router_with_matching_experts():
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 5)).astype("float32")
    layer = CondConv2D(4, 3, 3, padding="same", routing=FirstChannels(3))
    y = to_numpy(layer(x))
    pooled = x.mean(axis=(1, 2))[:, :3]
    r = np.exp(pooled) / np.exp(pooled).sum(axis=1, keepdims=True)
    expected = literal_condconv(x, to_numpy(layer.kernel), to_numpy(layer.bias), r, 1, "same", 1)
    np.testing.assert_allclose(y, to_numpy(expected), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="3 experts but the layer has num_experts=4"):
        CondConv2D(4, 3, 4, routing=FirstChannels(3))


def test_routing_given_as_serialized_or_plain_config():
    serialized = keras.saving.serialize_keras_object(Routing(3, activation="softmax", hidden_units=2))
    plain = Routing(3, activation="softmax", hidden_units=2).get_config()
    for config in (serialized, plain):
        layer = CondDense(4, 3, routing=config)
        assert isinstance(layer.routing, Routing)
        assert (layer.routing.activation, layer.routing.hidden_units) == ("softmax", 2)


@pytest.mark.parametrize("routing", ["relu", 3, keras.layers.Dense(3)])
def test_anything_but_a_router_is_refused(routing):
    with pytest.raises(ValueError, match="`routing`"):
        CondDense(4, 3, routing=routing)
