"""The profiler against multiply-adds counted by hand from the layers' definitions."""

import numpy as np
import pytest

import keras

import keras_routing
from keras_routing.layers import CondConv2D, CondDense, Routing
from keras_routing.profiler import Cost, cost_rule, find_cost_rule, measure_rates, rate_rule


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


# Cost rules: a rule per layer type, found along the class's MRO, and the expected cost given
# rates. The toy layers below stand for the later families: a block that runs for some examples
# only (a bypass gate) and k = 1 of n experts of different sizes (routed experts).


class SkippedDense(keras.layers.Layer):
    """A dense layer that runs only for examples whose mean input is positive (zeros otherwise)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        runs = keras.ops.cast(keras.ops.mean(x, axis=-1, keepdims=True) > 0, x.dtype)
        return runs * self.dense(x)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.dense.units,)


@cost_rule(SkippedDense)
def skipped_dense(layer, call):
    static = call.cost(layer.dense, call.input_shapes[0]).madds  # by the Dense rule
    return Cost(static, None if call.rate is None else call.rate * static)


@rate_rule(SkippedDense)
def skipped_dense_rate(layer, args, kwargs):
    return keras.ops.cast(keras.ops.mean(args[0], axis=-1) > 0, "float32")  # (batch,)


class TopOneExperts(keras.layers.Layer):
    """Expert ``argmax(x[:, :n])`` of ``n`` two-layer experts of hidden widths ``hidden``."""

    def __init__(self, hidden, units, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.units = tuple(hidden), units
        self.experts = [
            keras.Sequential([keras.layers.Dense(h), keras.layers.Dense(units)], name=f"expert_{i}")
            for i, h in enumerate(hidden)
        ]

    def build(self, input_shape):
        for expert in self.experts:
            expert.build(input_shape)

    def choice(self, x):
        return keras.ops.one_hot(keras.ops.argmax(x[:, : len(self.experts)], axis=-1), len(self.experts))

    def call(self, x):
        outputs = keras.ops.stack([expert(x) for expert in self.experts], axis=1)
        return keras.ops.sum(self.choice(x)[:, :, None] * outputs, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)


@cost_rule(TopOneExperts)
def top_one_experts(layer, call):
    features = call.input_shapes[0][-1]
    costs = [features * h + h * layer.units for h in layer.hidden]
    static = max(costs)  # any one expert may run
    expected = None if call.rate is None else sum(load * cost for load, cost in zip(call.rate, costs))
    return Cost(static, expected)


@rate_rule(TopOneExperts)
def top_one_load(layer, args, kwargs):
    return layer.choice(args[0])  # (batch, n): the load of each expert


def _conditional_model():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="stem")(inputs)  # 6*6
    inner = keras.Sequential([keras.Input((6,)), SkippedDense(5, name="skipped")], name="inner")
    y = TopOneExperts((2, 4, 8), 3, name="experts")(x)  # 6*h + h*3 for expert h
    return keras.Model(inputs, [inner(x), y])


def test_expected_cost_at_given_rates():
    model = _conditional_model()
    static = keras_routing.profile(model)
    assert static.madds == static.expected_madds == 6 * 6 + 6 * 5 + (6 * 8 + 8 * 3)
    assert static.rates == {}
    report = keras_routing.profile(model, rates={"inner/skipped": 0.25, "experts": [0.5, 0.5, 0.0]})
    assert report.madds == static.madds
    assert report.expected_madds == pytest.approx(
        6 * 6 + 0.25 * 6 * 5 + 0.5 * (6 * 2 + 2 * 3) + 0.5 * (6 * 4 + 4 * 3)
    )
    rows = {row.name: row for row in report.layers}
    assert rows["inner/skipped"].expected_madds == pytest.approx(0.25 * 30)
    assert rows["stem"].expected_madds == rows["stem"].madds == 36
    assert "expected" in str(report)
    with pytest.raises(ValueError, match="does not have: \\['skipped'\\]"):
        keras_routing.profile(model, rates={"skipped": 0.5})


def test_expected_cost_at_rates_measured_on_data():
    model = _conditional_model()
    # An identity stem, so the data decide literally what runs.
    model.get_layer("stem").set_weights([np.eye(6, dtype="float32"), np.zeros(6, "float32")])
    x = np.zeros((10, 6), "float32")
    x[:3] = 1.0  # mean > 0: the skipped block runs for 3 of 10 examples
    x[:3, 2] = 2.0  # ... which choose expert 2
    x[3:, 0] = -1.0  # mean < 0, and expert 1 wins over 0 for these 7
    x[3:, 1] = 0.5
    dataset = [(x[:4], np.zeros(4)), (x[4:], np.zeros(6))]  # (inputs, labels) batches
    rates = measure_rates(model, dataset)
    assert rates["inner/skipped"] == pytest.approx(0.3)
    np.testing.assert_allclose(rates["experts"], [0.0, 0.7, 0.3])
    report = keras_routing.profile(model, data=dataset)
    assert report.expected_madds == pytest.approx(
        6 * 6 + 0.3 * 6 * 5 + 0.7 * (6 * 4 + 4 * 3) + 0.3 * (6 * 8 + 8 * 3)
    )
    given = keras_routing.profile(model, data=x, rates={"inner/skipped": 1.0})  # given wins
    assert given.expected_madds == pytest.approx(report.expected_madds + 0.7 * 6 * 5)


class Base(keras.layers.Layer):
    def call(self, x):
        return x


class Child(Base):
    pass


class Special(Child):
    pass


@cost_rule(Base)
def base_rule(layer, call):
    return 7 * call.input_shapes[0][-1]


@cost_rule(Special)
def special_rule(layer, call):
    return 11 * call.input_shapes[0][-1]


class MyConv(keras.layers.Conv2D):
    pass


def test_rules_are_found_along_the_class_hierarchy():
    inputs = keras.Input((4, 4, 2))
    x = MyConv(3, 3, padding="same")(inputs)  # the Conv2D rule: 4*4*3 outputs * 3*3*2
    x = keras.layers.Flatten()(x)
    x = Child()(Base()(x))  # Base's rule for both: 7 * 48 each
    outputs = Special()(x)  # its own rule: 11 * 48
    report = keras_routing.profile(keras.Model(inputs, outputs))
    assert [row.madds for row in report.layers] == [4 * 4 * 3 * 18, 0, 7 * 48, 7 * 48, 11 * 48]
    assert find_cost_rule(Child()) is base_rule
    with pytest.raises(ValueError, match="Keras layer class"):
        cost_rule("Dense")(base_rule)
