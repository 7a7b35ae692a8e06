"""A router follows the dtype policy of the layer it drives (the rule in ``layers/router.py``).

Before, a ``Routing`` given as an instance or a config kept float32 inside a mixed-precision
layer: a ``mixed_bfloat16`` CondConv2D returned float32, and a ``mixed_float16`` CondDense failed
on TensorFlow (``cannot compute Mul as input #1 was expected to be a half tensor``).
"""

import numpy as np
import pytest

import keras

from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D, Routing
from tests.reference import literal_conddense, to_numpy


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def _images():
    return np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")


@pytest.mark.parametrize(
    "config",
    [
        lambda: keras.saving.serialize_keras_object(Routing(4)),
        lambda: Routing(4).get_config(),
        lambda: keras.saving.serialize_keras_object(Routing(4, hidden_units=3, dropout=0.1)),
    ],
    ids=["serialized", "plain", "hidden"],
)
def test_routing_config_adopts_the_layers_policy(config):
    layer = CondConv2D(4, 3, 4, routing=config(), dtype="mixed_bfloat16")
    y = layer(_images())
    assert _dtype(y) == "bfloat16"
    assert all(sub.dtype_policy.name == "mixed_bfloat16" for sub in layer.routing._flatten_layers())
    assert _dtype(layer.routing(_images())) == "bfloat16"
    assert all(w.dtype == "float32" for w in layer.weights)


def test_default_routing_instance_adopts_the_layers_policy_in_float16():
    x = np.random.default_rng(1).normal(size=(3, 5)).astype("float32")
    layer = CondDense(4, 3, routing=Routing(3), dtype="mixed_float16")
    y = layer(x)
    assert _dtype(y) == "float16"
    assert layer.routing.dtype_policy.name == "mixed_float16"
    # Same numbers as the float32 literal mixture, to float16's precision.
    r = to_numpy(layer.routing(x)).astype("float32")
    expected = literal_conddense(x, to_numpy(layer.kernel), to_numpy(layer.bias), r)
    np.testing.assert_allclose(to_numpy(y).astype("float32"), to_numpy(expected), rtol=2e-2, atol=2e-2)


def test_built_default_routing_adopts_when_its_weights_fit():
    routing = Routing(4)
    routing(_images())  # built in float32: mixed_bfloat16 keeps float32 variables too
    layer = CondDepthwiseConv2D(3, 4, padding="same", routing=routing, dtype="mixed_bfloat16")
    assert _dtype(layer(_images())) == "bfloat16"
    assert routing.dtype_policy.name == "mixed_bfloat16"


def test_explicit_non_default_policy_is_kept_and_outputs_cast():
    routing = Routing(4, dtype="mixed_float16")
    layer = CondConv2D(4, 3, 4, routing=routing, dtype="mixed_bfloat16")
    assert routing.dtype_policy.name == "mixed_float16"
    assert _dtype(routing(_images())) == "float16"
    assert _dtype(layer(_images())) == "bfloat16"


def test_explicit_default_policy_counts_as_default():
    layer = CondConv2D(4, 3, 4, routing=Routing(4, dtype="float32"), dtype="mixed_bfloat16")
    assert layer.routing.dtype_policy.name == "mixed_bfloat16"


@pytest.mark.parametrize("routing_policy", [None, "mixed_float16"])
def test_policies_survive_a_config_round_trip(routing_policy):
    layer = CondConv2D(4, 3, 4, routing=Routing(4, dtype=routing_policy), dtype="mixed_bfloat16")
    clone = CondConv2D.from_config(layer.get_config())
    assert clone.dtype_policy.name == "mixed_bfloat16"
    assert clone.routing.dtype_policy.name == layer.routing.dtype_policy.name
    assert _dtype(clone(_images())) == "bfloat16"


def test_a_float32_layer_leaves_a_mixed_routing_alone_and_computes_in_float32():
    routing = Routing(4, dtype="mixed_bfloat16")
    layer = CondConv2D(4, 3, 4, routing=routing)
    assert routing.dtype_policy.name == "mixed_bfloat16"
    assert _dtype(layer(_images())) == "float32"


def test_mixed_model_trains_under_global_policy():
    """The harness's way: the global policy set while the layers are made."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    inputs = keras.Input((6, 6, 3))
    y = CondConv2D(4, 3, 4, routing=Routing(4, hidden_units=2))(inputs)
    y = CondDense(2, 4, routing=keras.saving.serialize_keras_object(Routing(4)))(
        keras.layers.GlobalAveragePooling2D()(y)
    )
    model = keras.Model(inputs, y)
    keras.config.set_dtype_policy("float32")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(_images(), np.zeros((2, 2), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert _dtype(model(_images())) == "bfloat16"
