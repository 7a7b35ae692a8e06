"""CondConv layers against the paper's literal mixture of expert convolutions, on every backend."""

import json
import subprocess
import sys

import numpy as np
import pytest

import keras
from keras import ops

from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D, Routing
from keras_routing.layers import cond_conv_ops
from tests.harness import run_layer_test
from tests.reference import gradients, literal_conddense, literal_condconv, to_numpy

STRATEGIES = ["auto", "mixture", "grouped", "patches"]
GEOMETRIES = [  # strides, padding, dilation
    (1, "same", 1),
    (2, "same", 1),
    (2, "valid", 1),
    (1, "valid", 2),
    ((1, 2), "same", 1),
]


def _data(batch, depthwise, per_channel=False, experts=3, channels=4, filters=5, multiplier=2):
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 9, 8, channels)).astype("float32")
    out = channels * multiplier if depthwise else filters
    kernel = rng.normal(size=(experts, 3, 3, channels, multiplier if depthwise else filters)).astype(
        "float32"
    )
    bias = rng.normal(size=(experts, out)).astype("float32")
    r = rng.uniform(size=(batch, experts, out) if per_channel else (batch, experts)).astype("float32")
    return x, kernel, bias, r


def _layer(depthwise, strategy, strides, padding, dilation, experts=3):
    common = dict(strides=strides, padding=padding, dilation_rate=dilation, strategy=strategy, routing=None)
    if depthwise:
        return CondDepthwiseConv2D(3, experts, depth_multiplier=2, **common)
    return CondConv2D(5, 3, experts, **common)


def _set_weights(layer, x, kernel, bias, r):
    layer(x, routing_weights=r)  # builds
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize("strides,padding,dilation", GEOMETRIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("batch", [1, 4])
def test_forward_equals_literal_mixture(depthwise, strides, padding, dilation, strategy, batch):
    unequal = isinstance(strides, tuple) and strides[0] != strides[1]
    if depthwise and unequal and keras.backend.backend() == "tensorflow":
        if strategy == "auto":
            assert cond_conv_ops.choose_strategy("depthwise", (3, 3), batch, strides=strides) == "patches"
        pytest.skip("TensorFlow's depthwise conv, the reference's too, supports equal strides only")
    x, kernel, bias, r = _data(batch, depthwise)
    layer = _layer(depthwise, strategy, strides, padding, dilation)
    _set_weights(layer, x, kernel, bias, r)
    expected = literal_condconv(x, kernel, bias, r, strides, padding, dilation, depthwise)
    np.testing.assert_allclose(
        to_numpy(layer(x, routing_weights=r)), to_numpy(expected), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_per_channel_routing_equals_literal_mixture(depthwise, strategy):
    x, kernel, bias, r = _data(3, depthwise, per_channel=True)
    layer = _layer(depthwise, strategy, 1, "same", 1)
    _set_weights(layer, x, kernel, bias, r)
    expected = literal_condconv(x, kernel, bias, r, 1, "same", 1, depthwise)
    np.testing.assert_allclose(
        to_numpy(layer(x, routing_weights=r)), to_numpy(expected), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize("strides,padding,dilation", GEOMETRIES)
def test_int8_export_forms_equal_literal_mixture(depthwise, strides, padding, dilation, per_channel):
    """The forms int8 exports take (static kernels only): experts stacked along the input
    channels for full convolutions, each expert's depthwise convolution on its own."""
    if depthwise and isinstance(strides, tuple) and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's depthwise conv, the reference's too, supports equal strides only")
    x, kernel, _, r = _data(3, depthwise, per_channel=per_channel)
    compute = cond_conv_ops.DEPTHWISE["separate"] if depthwise else cond_conv_ops.FULL["stacked"]
    expected = literal_condconv(x, kernel, None, r, strides, padding, dilation, depthwise)
    actual = compute(
        *(ops.convert_to_tensor(a) for a in (x, kernel, r)), _pair(strides), padding, _pair(dilation)
    )
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize("strides,padding,dilation", [(1, "same", 1), (2, "valid", 1), (1, "same", 2)])
@pytest.mark.parametrize("strategy", ["mixture", "grouped", "patches", "single"])
def test_gradients_equal_literal_mixture(depthwise, strides, padding, dilation, strategy):
    """d/dx, d/dkernel and d/drouting of every formulation match the literal mixture's."""
    batch = 1 if strategy == "single" else 3
    x, kernel, _, r = _data(batch, depthwise)
    compute = (cond_conv_ops.DEPTHWISE if depthwise else cond_conv_ops.FULL)[strategy]
    expected_out = literal_condconv(x, kernel, None, r, strides, padding, dilation, depthwise)
    cotangent = np.random.default_rng(7).normal(size=expected_out.shape).astype("float32")

    def loss_of(fn):
        return lambda x, kernel, r: ops.sum(fn(x, kernel, r) * ops.convert_to_tensor(cotangent))

    expected = gradients(
        loss_of(lambda x, k, r: literal_condconv(x, k, None, r, strides, padding, dilation, depthwise)),
        x,
        kernel,
        r,
    )
    actual = gradients(
        loss_of(lambda x, k, r: compute(x, k, r, _pair(strides), padding, _pair(dilation))), x, kernel, r
    )
    for name, got, want in zip(("x", "kernel", "routing"), actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"gradient w.r.t. {name}")


def _pair(value):
    return (value, value) if isinstance(value, int) else value


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
def test_cond_dense_equals_literal_mixture(per_channel, batch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, 6)).astype("float32")
    kernel = rng.normal(size=(3, 6, 7)).astype("float32")
    bias = rng.normal(size=(3, 7)).astype("float32")
    r = rng.uniform(size=(batch, 3, 7) if per_channel else (batch, 3)).astype("float32")
    layer = CondDense(7, 3, routing=None)
    _set_weights(layer, x, kernel, bias, r)
    expected = to_numpy(literal_conddense(x, kernel, bias, r))
    np.testing.assert_allclose(to_numpy(layer(x, routing_weights=r)), expected, rtol=1e-4, atol=1e-4)
    # Rank > 2 inputs: the same mixed kernel at every position, like keras.layers.Dense.
    x3 = np.stack([x, 2 * x], axis=1)
    y3 = to_numpy(layer(x3, routing_weights=r))
    np.testing.assert_allclose(y3[:, 0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        y3[:, 1], to_numpy(literal_conddense(2 * x, kernel, bias, r)), rtol=1e-4, atol=1e-4
    )


def test_own_routing_is_the_papers_sigmoid_of_pooled_input():
    x, *_ = _data(2, False)
    layer = CondConv2D(5, 3, 3, padding="same")
    y = layer(x)
    pooled = x.mean(axis=(1, 2))
    w, b = (to_numpy(v) for v in layer.routing.logits.weights)
    r = 1.0 / (1.0 + np.exp(-(pooled @ w + b)))
    expected = literal_condconv(x, to_numpy(layer.kernel), to_numpy(layer.bias), r, 1, "same", 1)
    np.testing.assert_allclose(to_numpy(y), to_numpy(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend_name", ["tensorflow", "jax", "torch"])
def test_batch_one_runs_one_convolution_with_the_mixed_kernel(backend_name):
    """The paper's inference path; on JAX depthwise the shifted multiply-adds beat XLA's conv."""
    assert cond_conv_ops.choose_strategy("full", (3, 3), 1, backend_name) == "single"
    expected_depthwise = "patches" if backend_name == "jax" else "single"
    assert cond_conv_ops.choose_strategy("depthwise", (3, 3), 1, backend_name) == expected_depthwise
    # An unknown batch size never takes the batch-1 path.
    assert cond_conv_ops.choose_strategy("full", (3, 3), None, backend_name) != "single"


def test_batch_one_mixing_equals_the_weighted_sum_of_experts():
    """``mix_one``, and on PyTorch its ``torch.mm`` fast path on eager tensors, against numpy."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(4, 3, 3, 6, 5)).astype("float32")
    r = rng.uniform(size=(1, 4)).astype("float32")
    expected = sum(r[0, i] * kernel[i] for i in range(4))
    k, rt = ops.convert_to_tensor(kernel), ops.convert_to_tensor(r)
    mixed = cond_conv_ops.mix_one(rt, k, cond_conv_ops.mix_kernels)
    np.testing.assert_allclose(to_numpy(mixed), expected, rtol=1e-5, atol=1e-5)
    if keras.backend.backend() == "torch":
        fast = cond_conv_ops._mix_one_torch(rt, k)
        assert fast is not None, "eager PyTorch tensors take the torch.mm path"
        np.testing.assert_allclose(to_numpy(fast), expected, rtol=1e-5, atol=1e-5)


def test_each_expert_initialised_as_a_standalone_conv():
    layer = CondConv2D(64, 3, 8, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    layer.build((None, 8, 8, 32))
    kernel = to_numpy(layer.kernel)
    limit = np.sqrt(6.0 / (3 * 3 * 32 + 3 * 3 * 64))  # fans of one 3x3x32->64 conv
    assert np.abs(kernel).max() <= limit
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3.0), rtol=0.05)
    assert not np.allclose(kernel[0], kernel[1]), "experts must differ"
    again = CondConv2D(64, 3, 8, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    again.build((None, 8, 8, 32))
    np.testing.assert_array_equal(to_numpy(again.kernel), kernel)


def _routed_block(inputs):
    """One routing function driving two layers, as CondConv shares it within a block."""
    r = Routing(4, name="block_routing")(inputs)
    y = CondDepthwiseConv2D(3, 4, padding="same", routing=None)(inputs, routing_weights=r)
    y = CondConv2D(6, 1, 4, routing=None, activation="relu")(y, routing_weights=r)
    return CondDense(3, 4, routing="softmax")(keras.layers.GlobalAveragePooling2D()(y))


def test_shared_routing_model_trains_saves_and_reloads(tmp_path):
    inputs = keras.Input((8, 8, 5))
    model = keras.Model(inputs, _routed_block(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 5)).astype("float32")
    model.fit(x, rng.integers(0, 3, 16), epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "block.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for batch in (1, 16):
        np.testing.assert_allclose(
            to_numpy(loaded(x[:batch])), to_numpy(model(x[:batch])), rtol=1e-6, atol=1e-6
        )


def test_saved_models_load_after_import_keras_routing(tmp_path):
    """In a fresh interpreter, `import keras_routing` is all that loading a saved model needs,
    whichever of Keras and keras_routing is imported first; and importing keras_routing alone
    imports no Keras (the command picks the backend after it)."""
    from keras_routing import zoo

    inputs = keras.Input((8, 8, 5))
    keras.Model(inputs, _routed_block(inputs)).save(tmp_path / "block.keras")
    zoo.cc_mobilenet_v1(width=0.25, experts=2, input_shape=(32, 32, 3), classes=10).save(
        tmp_path / "zoo.keras"
    )
    load = f"""
for name in ("block", "zoo"):
    model = keras.saving.load_model({str(tmp_path)!r} + "/" + name + ".keras")
    assert keras.backend.backend() == {keras.backend.backend()!r}, keras.backend.backend()
    print(name, type(model.layers[-1]).__name__)
"""
    scripts = {
        "keras first": "import keras, keras_routing" + load,
        "keras_routing first": "import keras_routing, sys\nassert 'keras' not in sys.modules\nimport keras"
        + load,
    }
    for order, script in scripts.items():
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{order}: {result.stderr[-2000:]}"
        assert result.stdout.split() == ["block", "CondDense", "zoo", "Activation"], (order, result.stdout)


# The layer harness on every layer and its variants (tests/layers/test_keras_harness.py runs
# Keras's on the same). They share input, kernel and hidden-layer shapes: JAX compiles each
# eager op once per shape (a random initialiser takes seconds), and compiling is most of what
# the harness costs.
IMAGE = (3, 8, 8, 5)


def _variant(layer_cls, output, weights, input_shape=IMAGE, **kwargs):
    init = kwargs.pop("init")
    return dict(
        layer_cls=layer_cls,
        init_kwargs=init,
        input_shape=input_shape,
        expected_output_shape=output,
        expected_num_trainable_weights=weights,
        expected_num_non_trainable_weights=0,
        **kwargs,
    )


CONV = dict(filters=6, kernel_size=3, num_experts=4)
VARIANTS = {
    # CondConv2D: routing by name, as an instance, as a config, and passed in.
    "conv": _variant(CondConv2D, (3, 8, 8, 6), 4, init=dict(CONV, padding="same", activation="relu")),
    "conv_strided_per_channel_routing_instance": _variant(
        CondConv2D,
        (3, 4, 4, 6),
        6,
        init=dict(
            CONV,
            strides=2,
            padding="same",
            routing=Routing(4, hidden_units=3, per_channel_units=6),
            strategy="grouped",
        ),
    ),
    # The first defect: a routing config ignored the layer's dtype policy.
    "conv_routing_config_bfloat16": _variant(
        CondConv2D,
        (3, 6, 6, 6),
        4,
        init=dict(CONV, routing=keras.saving.serialize_keras_object(Routing(4)), strategy="mixture"),
        mixed_precision_policy="mixed_bfloat16",
    ),
    # The second: grouped with dilation and "same" padding, trained with a None batch (TensorFlow).
    "conv_dilated_grouped_softmax": _variant(
        CondConv2D,
        (3, 8, 8, 6),
        4,
        init=dict(CONV, padding="same", dilation_rate=2, strategy="grouped", routing="softmax"),
    ),
    "conv_per_channel_routing_weights_call_kwarg": _variant(
        CondConv2D,
        (3, 6, 3, 6),
        2,
        init=dict(CONV, strides=(1, 2), routing=None, strategy="patches"),
        call_kwargs={"routing_weights": np.random.default_rng(5).uniform(size=(3, 4, 6)).astype("float32")},
    ),
    # CondDepthwiseConv2D.
    "depthwise": _variant(
        CondDepthwiseConv2D,
        (3, 8, 8, 10),
        4,
        init=dict(kernel_size=3, num_experts=4, depth_multiplier=2, padding="same"),
    ),
    "depthwise_dilated": _variant(  # the second defect, depthwise, as the issue gives it
        CondDepthwiseConv2D,
        (3, 8, 8, 5),
        4,
        init=dict(kernel_size=2, num_experts=4, padding="same", dilation_rate=2),
    ),
    "depthwise_strided_softmax_routing_instance_float16": _variant(
        CondDepthwiseConv2D,
        (3, 3, 3, 10),
        6,
        init=dict(
            kernel_size=3,
            num_experts=4,
            depth_multiplier=2,
            strides=2,
            routing=Routing(4, activation="softmax", hidden_units=3),
            strategy="mixture",
        ),
        mixed_precision_policy="mixed_float16",
    ),
    # CondDense. The first defect on TensorFlow: a routing instance under mixed_float16 failed.
    "dense_routing_instance_float16": _variant(
        CondDense,
        (3, 7),
        6,
        input_shape=(3, 5),
        init=dict(units=7, num_experts=4, routing=Routing(4, hidden_units=3)),
        mixed_precision_policy="mixed_float16",
    ),
    "dense_rank3_routing_weights_input": _variant(
        CondDense,
        (3, 2, 7),
        2,
        input_shape={"inputs": (3, 2, 5), "routing_weights": (3, 4)},
        init=dict(units=7, num_experts=4, routing=None),
    ),
    # Routing: per channel with a hidden layer and dropout; hierarchical (context) with softmax.
    "routing_per_channel_dropout": _variant(
        Routing,
        (3, 4, 6),
        4,
        init=dict(num_experts=4, per_channel_units=6, hidden_units=3, dropout=0.1),
        expected_num_seed_generators=1,
    ),
    "routing_hierarchical_softmax": _variant(
        Routing,
        (3, 4),
        2,
        input_shape={"inputs": IMAGE, "context": (3, 4)},
        init=dict(num_experts=4, activation="softmax"),
    ),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_layer_harness(name, tmp_path):
    run_layer_test(**VARIANTS[name], tmp_path=tmp_path)


def test_input_too_small_for_the_kernel_raises_value_error():
    """As Keras's Conv2D does ("Computed output size would be zero or negative"): a 5x5 kernel
    at stride 2 on a 4x4 input leaves no output position, symbolically and eagerly."""
    for make in (lambda: CondDepthwiseConv2D(5, 4, strides=2), lambda: CondConv2D(6, 5, 4, strides=2)):
        with pytest.raises(ValueError, match="output size"):
            make()(keras.Input((4, 4, 3)))
        with pytest.raises(ValueError, match="output size"):
            make()(np.zeros((2, 4, 4, 3), "float32"))
    # The smallest input that fits still works: one output position.
    output = CondDepthwiseConv2D(5, 4, strides=2)(np.zeros((2, 5, 5, 3), "float32"))
    assert tuple(output.shape) == (2, 1, 1, 3)


def test_routing_variants_follow_their_formulas():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 5, 6)).astype("float32")
    softmax = Routing(4, activation="softmax")
    r = to_numpy(softmax(x))
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-5)
    w, b = (to_numpy(v) for v in softmax.logits.weights)
    logits = x.mean(axis=(1, 2)) @ w + b
    np.testing.assert_allclose(r, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-5)

    hidden = Routing(4, hidden_units=3)
    r = to_numpy(hidden(x))
    (w1, b1), (w2, b2) = [(to_numpy(d.kernel), to_numpy(d.bias)) for d in (hidden.hidden, hidden.logits)]
    h = np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0)
    np.testing.assert_allclose(r, 1 / (1 + np.exp(-(h @ w2 + b2))), rtol=1e-5)

    hierarchical = Routing(4)
    previous = rng.uniform(size=(2, 3)).astype("float32")
    r = to_numpy(hierarchical(x, context=previous))
    w, b = (to_numpy(v) for v in hierarchical.logits.weights)
    features = np.concatenate([x.mean(axis=(1, 2)), previous], axis=1)
    np.testing.assert_allclose(r, 1 / (1 + np.exp(-(features @ w + b))), rtol=1e-5)

    assert tuple(Routing(4, per_channel_units=7)(x).shape) == (2, 4, 7)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: CondConv2D(4, 3, 0), "num_experts"),
        (lambda: CondDepthwiseConv2D(3, -1), "num_experts"),
        (lambda: CondDense(4, 2.5), "num_experts"),
        (lambda: CondConv2D(4, 3, 2, strategy="fast"), "strategy"),
        (lambda: CondConv2D(4, 3, 2, padding="full"), "padding"),
        (lambda: CondConv2D(4, 3, 2, routing=Routing(3)), "experts"),
        (lambda: Routing(2, activation="relu"), "activation"),
        # A bool is not an integer: True is not one expert.
        (lambda: Routing(True), "`num_experts` must be an integer"),
        (lambda: CondConv2D(4, 3, True), "`num_experts` must be an integer"),
        (lambda: CondConv2D(True, 3, 2), "`filters`"),
        (lambda: CondDense(False, 2), "`units`"),
        (lambda: CondConv2D(4, (3, True), 2), "`kernel_size`"),
        (lambda: Routing(2, hidden_units=True), "`hidden_units`"),
        (lambda: Routing(2, dropout=2), "`dropout` must be a number in \\[0, 1\\)"),
        (lambda: Routing(2, dropout="0.1"), "`dropout`"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integers_are_integers():
    """What NumPy arithmetic gives (``np.int64``) is accepted where Keras accepts it, and stored as
    Python ints, so configs stay JSON."""
    n = np.int64
    layers = [
        CondConv2D(n(4), n(3), n(2), strides=n(1), dilation_rate=(n(1), 1)),
        CondDepthwiseConv2D((n(3), n(3)), n(2), depth_multiplier=n(2)),
        CondDense(n(3), n(2)),
        Routing(n(4), hidden_units=n(3), per_channel_units=n(2)),
    ]
    for layer in layers:
        config = layer.get_config()
        json.dumps(config)
        assert layer.__class__.from_config(config).get_config() == config
    assert layers[0].kernel_size == (3, 3) and type(layers[0].num_experts) is int


def test_bad_inputs_raise_value_error():
    x = np.zeros((2, 6, 6, 3), "float32")
    layer = CondConv2D(4, 3, 2, routing=None)
    with pytest.raises(ValueError, match="routing_weights"):
        layer(x)
    with pytest.raises(ValueError, match="routing_weights"):
        layer(x, routing_weights=np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="batch size"):
        layer(x, routing_weights=np.zeros((3, 2), "float32"))
    layer(x, routing_weights=np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="ndim|rank"):
        layer(np.zeros((2, 6, 3), "float32"), routing_weights=np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="axis -1|channels|incompatible"):
        layer(np.zeros((2, 6, 6, 5), "float32"), routing_weights=np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="rank 4"):
        CondDepthwiseConv2D(3, 2)(np.zeros((2, 6, 3), "float32"))
