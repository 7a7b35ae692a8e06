"""The zoo's factories: keras.applications weights load, the paper's architectures, the knobs."""

import numpy as np
import pytest

import keras

from keras_routing import zoo
from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D, Routing
from tests.reference import to_numpy
from tests.zoo.helpers import digits_rgb, perturb_weights

SMALL = dict(input_shape=(32, 32, 3), classes=10)
COND = (CondConv2D, CondDepthwiseConv2D, CondDense)


def _cond_layers(model):
    return [layer.name for layer in model.layers if isinstance(layer, COND)]


def _routings(model):
    return [layer for layer in model.layers if isinstance(layer, Routing)]


@pytest.mark.parametrize(
    "name,application,kwargs",
    [
        ("mobilenet_v1", "MobileNet", dict(alpha=0.5)),
        ("mobilenet_v2", "MobileNetV2", dict(alpha=0.5)),
        ("resnet50", "ResNet50", {}),
    ],
)
def test_baseline_takes_keras_applications_weights(name, application, kwargs):
    """Same layers, names and weight order as keras.applications: its weights give the same outputs."""
    reference = getattr(keras.applications, application)(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None, **kwargs
    )
    perturb_weights(reference)
    width = {"width": kwargs["alpha"]} if kwargs else {}
    ours = zoo.get(name, input_shape=(64, 64, 3), classes=10, classifier_activation=None, **width)

    def layers_with_weights(model):
        return [(layer.name, type(layer).__name__) for layer in model.layers if layer.weights]

    assert layers_with_weights(ours) == layers_with_weights(reference)
    ours.set_weights(reference.get_weights())
    x, _ = digits_rgb(4, size=64)
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-5, atol=1e-5)


def test_cc_mobilenet_v1_is_the_papers_architecture():
    model = zoo.cc_mobilenet_v1(width=0.25, experts=4, **SMALL)
    blocks = range(6, 14)  # the final 8 separable blocks (paper's CondConv 7-14)
    expected = [name for b in blocks for name in (f"conv_dw_{b}", f"conv_pw_{b}")] + ["conv_preds"]
    assert _cond_layers(model) == expected
    assert len(_routings(model)) == 9  # one per block, plus the classifier's
    assert all(model.get_layer(name).num_experts == 4 for name in expected)
    assert all(model.get_layer(name).routing is None for name in expected)  # shared, from the block input
    routing = model.get_layer("conv_block_6_routing")
    assert routing.logits.kernel.shape == (model.get_layer("conv_pw_5_relu").output.shape[-1], 4)


def test_cc_mobilenet_v2_and_cc_resnet50_are_the_papers_architectures():
    model = zoo.cc_mobilenet_v2(width=0.5, experts=2, **SMALL)
    convs = [f"block_{b}_{part}" for b in range(11, 17) for part in ("expand", "depthwise", "project")]
    assert _cond_layers(model) == convs + ["Conv_1", "predictions"]
    assert len(_routings(model)) == 8
    model = zoo.cc_resnet50(experts=2, **SMALL)
    convs = [f"conv5_block{b}_{i}_conv" for b in (1, 2, 3) for i in ((0, 1, 2, 3) if b == 1 else (1, 2, 3))]
    assert sorted(_cond_layers(model)) == sorted(convs + ["predictions"])
    assert len(_routings(model)) == 4
    plain_shortcut = zoo.cc_resnet50(experts=2, condconv_shortcut=False, **SMALL)
    assert "conv5_block1_0_conv" not in _cond_layers(plain_shortcut)


@pytest.mark.parametrize(
    "kwargs,cond_count,routing_count",
    [
        (dict(condconv_on="pointwise"), 9, 9),
        (dict(condconv_on=("depthwise",)), 9, 9),
        (dict(cond_classifier=False), 16, 8),
        (dict(condconv_begin=1), 28, 15),
        (dict(condconv_begin=13), 5, 3),
        (dict(condconv_begin=15), 1, 1),
        (dict(condconv_begin=16), 0, 0),
        (dict(routing="single"), 17, 1),
        (dict(routing="partially_shared"), 17, 5),
        (dict(routing={"per_channel": True}), 17, 17),
    ],
)
def test_cc_mobilenet_v1_ablation_knobs(kwargs, cond_count, routing_count):
    model = zoo.cc_mobilenet_v1(width=0.25, experts=2, **SMALL, **kwargs)
    assert len(_cond_layers(model)) == cond_count
    assert len(_routings(model)) == routing_count


def test_routing_variants_build_the_papers_routing_functions():
    hierarchical = _routings(zoo.cc_mobilenet_v1(width=0.25, experts=4, routing="hierarchical", **SMALL))
    first, *rest = hierarchical
    assert first.logits.kernel.shape[0] == 64  # block input only
    # Later blocks see their input (128 channels, then 256) and the previous block's 4 weights.
    assert [r.logits.kernel.shape[0] for r in rest] == [128 + 4] * 6 + [256 + 4] * 2
    hidden = _routings(zoo.cc_mobilenet_v1(width=0.25, experts=4, routing={"hidden_ratio": 8}, **SMALL))
    assert hidden[0].hidden_units == 8 * 64
    softmax = _routings(
        zoo.cc_mobilenet_v1(width=0.25, experts=4, routing=Routing(4, activation="softmax"), **SMALL)
    )
    assert {r.activation for r in softmax} == {"softmax"}
    per_channel = _routings(
        zoo.cc_mobilenet_v1(width=0.25, experts=4, routing={"per_channel": True}, **SMALL)
    )
    assert per_channel[0].per_channel_units == 64 and per_channel[0].hidden_units == 32  # input / 2


@pytest.mark.parametrize(
    "routing", ["hierarchical", {"per_channel": True}], ids=["hierarchical", "per_channel"]
)
def test_cc_model_trains_saves_and_reloads(routing, tmp_path):
    model = zoo.cc_mobilenet_v1(width=0.25, experts=2, routing=routing, **SMALL)
    x, y = digits_rgb(16)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(loaded(x[:4])), to_numpy(model(x[:4])), rtol=1e-5, atol=1e-6)


def test_registry():
    assert set(zoo.list_models()) >= {
        "mobilenet_v1",
        "cc_mobilenet_v1",
        "mobilenet_v2",
        "cc_mobilenet_v2",
        "resnet50",
        "cc_resnet50",
    }
    model = zoo.get("cc_mobilenet_v1", width=0.25, experts=2, **SMALL)
    assert model.output.shape == (None, 10)
    for name in ("cc_mobilenet_v1", "cc_mobilenet_v2", "cc_resnet50"):
        features = zoo.get(name, experts=2, include_top=False, pooling="avg", input_shape=(32, 32, 3))
        assert len(features.output.shape) == 2
        assert len(zoo.get(name, experts=2, include_top=False, input_shape=(32, 32, 3)).output.shape) == 4
    with pytest.raises(ValueError, match="Unknown zoo model 'mobilenet_v9'.*cc_mobilenet_v1"):
        zoo.get("mobilenet_v9")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(experts=0), "experts"),
        (dict(condconv_begin=0), "condconv_begin"),
        (dict(condconv_begin=17), "condconv_begin"),
        (dict(condconv_on=("conv",)), "condconv_on"),
        (dict(routing="everywhere"), "routing"),
        (dict(routing={"per_channel": True, "sharing": "single"}), "per_block"),
        (dict(routing={"hiden_units": 4}), "unknown keys"),
        (dict(width=0), "width"),
        (dict(input_shape=(16, 16, 3)), "input_shape"),
        (dict(pooling="sum", include_top=False), "pooling"),
        # Each names the argument at fault, not the Keras layer argument it would break.
        (dict(classes=0), "`classes` must be an integer >= 1"),
        (dict(width=0.01), "`width` must leave every layer at least one channel"),
        (dict(dropout=2), "`dropout` must be a number in \\[0, 1\\)"),
        (dict(input_shape=(32, 32, 0)), "`input_shape` must have a known number of channels"),
        (dict(input_shape=(32, 32, None)), "`input_shape`"),
        (dict(bn_momentum=2), "`bn_momentum` must be a number in \\[0, 1\\]"),
        (dict(experts=True), "`experts` must be an integer"),
        (dict(condconv_begin=True), "`condconv_begin`"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.cc_mobilenet_v1(**{"width": 0.25, "input_shape": (32, 32, 3), **kwargs})


SHARED_MISTAKES = [
    (dict(classes=0), "`classes`"),
    (dict(dropout=1), "`dropout`"),
    (dict(bn_momentum=-0.1), "`bn_momentum`"),
    (dict(input_shape=(32, 32, 0)), "`input_shape`"),
]


@pytest.mark.parametrize(
    "name", ["mobilenet_v1", "cc_mobilenet_v1", "mobilenet_v2", "cc_mobilenet_v2", "resnet50"]
)
@pytest.mark.parametrize("kwargs,match", SHARED_MISTAKES)
def test_every_factory_checks_the_shared_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.get(name, **{"input_shape": (32, 32, 3), **kwargs})


def test_numpy_integers_are_accepted():
    n = np.int64
    model = zoo.cc_mobilenet_v1(
        width=0.25, experts=n(2), condconv_begin=n(13), input_shape=(n(32), n(32), n(3)), classes=n(10)
    )
    assert model.output.shape == (None, 10)
    assert model.get_layer("conv_preds").num_experts == 2


def test_the_classifiers_routing_reads_the_features_the_classifier_reads():
    # Decided (issue 20): the classifier's routing function, like every CondConv layer's, takes
    # the layer's own input, here the pooled features after dropout. At inference dropout is the
    # identity, so this only matters in training; the paper does not say.
    model = zoo.cc_mobilenet_v1(0.25, 2, input_shape=(32, 32, 3), classes=10, dropout=0.5)
    routing, classifier = model.get_layer("conv_preds_routing"), model.get_layer("conv_preds")
    assert routing.input._keras_history.operation.name == "dropout"
    assert [t._keras_history.operation.name for t in classifier.input] == ["dropout", "conv_preds_routing"]
