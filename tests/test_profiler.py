"""The profiler against multiply-adds counted by hand from the layers' definitions."""

import pytest

import keras

import keras_routing
from keras_routing.layers import CondConv2D, CondDense, Routing


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 outputs * 4 filters * 3*3*3
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4 * 4 channels * 3*3
    r = Routing(3, hidden_units=2)(x)  # 4 -> 2 -> 3
    x = CondConv2D(5, 1, 3, routing=None)(x, routing_weights=r)  # 4*4*5*4 + mix 3*(4*5) + 3*5
    x = keras.layers.SeparableConv2D(6, 3, padding="same")(x)  # 4*4*5*9 + 4*4*5*6
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2)(x)  # 6*2
    outputs = CondDense(3, 2)(x)  # 2*3 + mix 2*(2*3) + 2*3, own routing 2*2
    return keras.Model(inputs, outputs)


HAND_COUNT = [
    8 * 8 * 4 * 27,
    4 * 4 * 4 * 9,
    4 * 2 + 2 * 3,
    4 * 4 * 5 * 4 + 3 * 4 * 5 + 3 * 5,
    4 * 4 * 5 * 9 + 4 * 4 * 5 * 6,
    6 * 2,
    2 * 3 + 2 * 2 * 3 + 2 * 3 + 2 * 2,
]


def test_counts_every_layer_as_the_paper_does():
    model = _model()
    report = keras_routing.profile(model)
    assert report.madds == sum(HAND_COUNT)
    assert report.params == model.count_params()
    assert [row.madds for row in report.layers if row.madds] == HAND_COUNT
    assert report.uncounted == []
    assert "multiply-adds" in str(report)


def test_input_shape_changes_the_spatial_cost():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    with pytest.raises(ValueError, match="input_shape"):
        keras_routing.profile(model)
    assert keras_routing.profile(model, (16, 16, 3)).madds == 16 * 16 * 4 * 27
    assert keras_routing.profile(model, (32, 32, 3)).madds == 32 * 32 * 4 * 27


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2 * x


def test_names_the_layers_it_cannot_count_and_reads_nested_and_sequential_models():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), Doubler(name="doubler")])
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    report = keras_routing.profile(model)
    assert report.madds == 4 * 3 + 3 * 2
    assert report.uncounted == [f"{inner.name}/doubler (Doubler)"]
    assert "not counted" in str(report)


def test_refuses_subclassed_models():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        keras_routing.profile(Net())


def test_profiles_a_zoo_model_by_name():
    from keras_routing import zoo

    report = keras_routing.profile("cc_mobilenet_v1", (64, 64, 3), width=0.25, experts=2, classes=10)
    model = zoo.cc_mobilenet_v1(width=0.25, experts=2, input_shape=(64, 64, 3), classes=10)
    expected = keras_routing.profile(model)
    assert (report.params, report.madds) == (expected.params, expected.madds)
    with pytest.raises(ValueError, match="zoo model's name only"):
        keras_routing.profile(model, width=0.5)
    with pytest.raises(ValueError, match="a keras.Model or a zoo model's name"):
        keras_routing.profile(42)
    with pytest.raises(ValueError, match="Unknown zoo model 'cc_mobilenet_v9'"):
        keras_routing.profile("cc_mobilenet_v9")
