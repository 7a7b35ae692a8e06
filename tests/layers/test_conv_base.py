"""The ConditionalConv base: one mixture op per layer, Keras's output-size check, dilated grouped
convolutions with an unknown batch."""

import numpy as np
import pytest

import keras
from keras import ops

from keras_routing.layers import CondConv2D, CondDepthwiseConv2D, ConditionalConv, cond_conv_ops
from tests.reference import literal_condconv, to_numpy


class ExpertByExpertConv(ConditionalConv):
    """The smallest conditional convolution: only the mixture op, one convolution per expert."""

    def mixture_op(self, inputs, kernel, routing_weights):
        total = 0.0
        for i in range(self.num_experts):
            y = ops.conv(
                inputs,
                kernel[i],
                strides=self.strides,
                padding=self.padding,
                dilation_rate=self.dilation_rate,
            )
            total = total + routing_weights[:, i, None, None, None] * y
        return total


def test_a_subclass_overriding_only_the_mixture_op_is_a_full_layer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 9, 8, 4)).astype("float32")
    layer = ExpertByExpertConv(5, 3, 2, strides=2, padding="same", activation="relu")
    y = to_numpy(layer(x))
    # The base owns routing, geometry, bias and activation: the paper's sigmoid routing,
    # sum_i r_i (conv(x, W_i) + b_i), then the activation.
    w, b = (to_numpy(v) for v in layer.routing.logits.weights)
    r = 1 / (1 + np.exp(-(x.mean(axis=(1, 2)) @ w + b)))
    expected = literal_condconv(x, to_numpy(layer.kernel), to_numpy(layer.bias), r, 2, "same", 1)
    np.testing.assert_allclose(y, np.maximum(to_numpy(expected), 0), rtol=1e-4, atol=1e-4)
    assert tuple(layer.kernel.shape) == (2, 3, 3, 4, 5) and tuple(layer.bias.shape) == (2, 5)
    assert layer.compute_output_shape((None, 9, 8, 4)) == (None, 5, 4, 5) == (None,) + y.shape[1:]
    config = layer.get_config()
    assert ExpertByExpertConv.from_config(config).get_config() == config
    symbolic = ExpertByExpertConv(5, 3, 2)(keras.Input((9, 8, 4)))
    assert tuple(symbolic.shape) == (None, 7, 6, 5)


def test_the_base_has_no_mixture_op_of_its_own():
    with pytest.raises(NotImplementedError, match="mixture_op"):
        ConditionalConv(4, 3, 2)(np.zeros((1, 5, 5, 2), "float32"))


def test_cond_conv_layers_override_the_mixture_op_not_a_kind_switch():
    for cls in (CondConv2D, CondDepthwiseConv2D):
        assert issubclass(cls, ConditionalConv)
        assert "mixture_op" in vars(cls)
        assert not hasattr(cls, "kind")
    assert not hasattr(cond_conv_ops, "STRATEGIES") and not hasattr(cond_conv_ops, "_pair")


# --- an input too small for the kernel: Keras's Conv2D raises, and so must we -----------------

TOO_SMALL = [
    (lambda: CondDepthwiseConv2D(5, 4, strides=2), keras.layers.DepthwiseConv2D(5, strides=2), (2, 4, 4, 3)),
    (lambda: CondConv2D(2, 3, 2, dilation_rate=3), keras.layers.Conv2D(2, 3, dilation_rate=3), (2, 6, 9, 3)),
    (lambda: CondConv2D(2, (1, 4), 2), keras.layers.Conv2D(2, (1, 4)), (2, 5, 3, 3)),
]
MESSAGE = "Computed output size would be zero or negative"


@pytest.mark.parametrize("make,keras_layer,shape", TOO_SMALL)
def test_too_small_input_raises_like_keras_conv(make, keras_layer, shape):
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=MESSAGE):
        keras_layer(x)  # the convention we follow
    with pytest.raises(ValueError, match=MESSAGE):
        make().compute_output_shape((None,) + shape[1:])
    with pytest.raises(ValueError, match=MESSAGE):
        make()(keras.Input(shape[1:]))
    with pytest.raises(ValueError, match=MESSAGE):
        make()(x)
    # Built for unknown sizes, it meets the concrete ones at the call.
    layer = make()
    layer.build((None, None, None, shape[-1]))
    with pytest.raises(ValueError, match=MESSAGE):
        layer(x)


def test_smallest_input_that_fits_and_same_padding_do_not_raise():
    assert tuple(CondDepthwiseConv2D(5, 4, strides=2)(np.zeros((2, 5, 5, 3), "float32")).shape) == (
        2,
        1,
        1,
        3,
    )
    assert tuple(
        CondDepthwiseConv2D(5, 4, strides=2, padding="same")(np.zeros((2, 4, 4, 3), "float32")).shape
    ) == (
        2,
        2,
        2,
        3,
    )


# --- dilated grouped convolutions with an unknown batch ----------------------------------------


@pytest.mark.parametrize("dilation", [(2, 2), (1, 3), (2, 1)])
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_undilated_kernel_convolves_as_the_dilated_one(depthwise, dilation):
    """The form the grouped path takes with an unknown batch, against the literal mixture."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 9, 8, 4)).astype("float32")
    kernel = rng.normal(size=(3, 3, 2, 4, 2 if depthwise else 5)).astype("float32")
    r = rng.uniform(size=(3, 3)).astype("float32")
    mixed = cond_conv_ops.mix_kernels(ops.convert_to_tensor(r), ops.convert_to_tensor(kernel))
    undilated = cond_conv_ops._undilated(mixed, dilation)
    assert tuple(undilated.shape[1:3]) == (2 * dilation[0] + 1, dilation[1] + 1)
    conv = ops.depthwise_conv if depthwise else ops.conv
    xt = ops.convert_to_tensor(x)
    actual = ops.stack([conv(xt[b : b + 1], undilated[b], padding="same")[0] for b in range(3)])
    expected = literal_condconv(x, kernel, None, r, 1, "same", dilation, depthwise)
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=1e-4, atol=1e-4)


DILATED = [
    ("depthwise_auto", lambda: CondDepthwiseConv2D(2, 4, padding="same", dilation_rate=2, routing=None)),
    (
        "depthwise_grouped",
        lambda: CondDepthwiseConv2D(
            3, 4, padding="valid", dilation_rate=(2, 1), strategy="grouped", routing=None
        ),
    ),
    (
        "conv_grouped",
        lambda: CondConv2D(5, 3, 4, padding="same", dilation_rate=2, strategy="grouped", routing=None),
    ),
]


@pytest.mark.parametrize("name", [name for name, _ in DILATED])
def test_dilated_grouped_runs_with_unknown_batch(name):
    """On TensorFlow the grouped path failed in a graph with a ``None`` batch (``None values not
    supported``); on every backend, compiled ``predict`` and a ``tf.function`` / ``fit`` with a
    ``None`` batch agree with the literal mixture."""
    make = dict(DILATED)[name]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    r = rng.uniform(size=(6, 4)).astype("float32")
    layer = make()
    eager = to_numpy(layer(x, routing_weights=r))
    depthwise = isinstance(layer, CondDepthwiseConv2D)
    expected = literal_condconv(
        x, to_numpy(layer.kernel), to_numpy(layer.bias), r, 1, layer.padding, layer.dilation_rate, depthwise
    )
    np.testing.assert_allclose(eager, to_numpy(expected), rtol=1e-4, atol=1e-4)

    images, weights = keras.Input((8, 8, 3)), keras.Input((4,))
    model = keras.Model([images, weights], layer(images, routing_weights=weights))
    np.testing.assert_allclose(model.predict([x, r], batch_size=4, verbose=0), eager, rtol=1e-4, atol=1e-4)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = [tf.TensorSpec((None, 8, 8, 3)), tf.TensorSpec((None, 4))]
        graph = tf.function(lambda a, b: layer(a, routing_weights=b), input_signature=spec)
        np.testing.assert_allclose(graph(x, r).numpy(), eager, rtol=1e-4, atol=1e-4)
        data = tf.data.Dataset.from_tensor_slices(((x, r), np.zeros_like(eager))).batch(4)
        model.compile(optimizer="sgd", loss="mse")
        assert np.isfinite(model.fit(data, epochs=1, shuffle=False, verbose=0).history["loss"][0])
