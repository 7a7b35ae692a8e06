"""Batch normalization folded into the CondConv layer before it, for export.

A converter folds a batch normalization into the static convolution before it, but not into a
CondConv layer, whose kernel is computed at run time: exported as it is, every routed layer of a
MobileNet is followed by a MUL and an ADD, and in int8 each layer's output is quantized *before*
normalization, to one range for all channels however different their scales (the demo's
CC-MobileNetV1 lost 8 points of accuracy that way). Normalization is per output channel and
linear, and mixing is linear, so it folds into every expert exactly:

    BN(sum_i r_i (conv(x, W_i) + b_i)) = sum_i r_i (conv(x, s W_i) + s b_i) + (beta - s mean),
    with s = gamma / sqrt(variance + epsilon).

The last term is not weighted by the routing (sigmoid weights do not sum to 1), so it stays as
an offset added after the layer, which the converter fuses with the activation that follows.
"""

import keras
import numpy as np

from keras_routing.layers.cond_conv import CondConv2D, CondDepthwiseConv2D
from keras_routing.transforms import _graph

FOLDABLE = (CondConv2D, CondDepthwiseConv2D)


@keras.saving.register_keras_serializable(package="keras_routing")
class Offset(keras.layers.Layer):
    """What remains of a folded batch normalization: a constant added per channel."""

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = np.asarray(offset, dtype="float32")

    def call(self, inputs, training=None, mask=None):  # the arguments the replaced layer took
        return inputs + keras.ops.convert_to_tensor(self.offset, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "offset": self.offset.tolist()}


def fold_batch_normalization(model):
    """A copy of ``model`` with every batch normalization that normalizes only a CondConv layer's
    (linear) output folded into that layer's experts; ``model`` itself is left as it is.

    Equal to ``model`` in inference up to float rounding. Models that are not functional, or
    that have nothing to fold, are returned unchanged.
    """
    pairs = _foldable_pairs(model)
    if not pairs:
        return model
    # layer name -> (scale, offset) of the normalization folded into it
    factors = {layer.name: _scale_and_offset(bn) for layer, bn in pairs.items()}
    offsets = {bn.name: factors[layer.name][1] for layer, bn in pairs.items()}

    def replace(layer):
        if layer.name in offsets:
            return Offset(offsets[layer.name], name=layer.name, dtype=layer.dtype_policy)
        return layer.__class__.from_config(layer.get_config())

    folded = _graph.clone(model, replace)
    for layer in model.layers:
        if layer.name in offsets or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        target.set_weights(layer.get_weights())
        if layer.name not in factors:
            continue
        scale, _ = factors[layer.name]
        target.kernel.assign(_scaled_kernel(layer, scale))
        if layer.use_bias:
            target.bias.assign(np.asarray(layer.bias) * scale)
    return folded


def _foldable_pairs(model):
    """``{CondConv layer: the BatchNormalization that alone consumes its output}``."""
    if not _graph.is_functional(model):
        return {}
    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or _graph.call_count(bn) != 1:
            continue
        if bn.axis not in (-1, len(bn.input.shape) - 1) or bn.renorm:
            continue
        parents = _graph.producers(bn)
        if len(parents) != 1:
            continue
        layer = parents[0]
        if (
            isinstance(layer, FOLDABLE)
            and _graph.call_count(layer) == 1
            and _graph.consumer_count(layer) == 1
            and layer.activation is keras.activations.linear
        ):
            pairs[layer] = bn
    return pairs


def _scale_and_offset(bn):
    mean = np.asarray(bn.moving_mean, dtype="float64")
    variance = np.asarray(bn.moving_variance, dtype="float64")
    gamma = np.asarray(bn.gamma, dtype="float64") if bn.scale else 1.0
    beta = np.asarray(bn.beta, dtype="float64") if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - scale * mean


def _scaled_kernel(layer, scale):
    """Each expert's kernel times ``scale`` per output channel (depthwise: channel c * m + j)."""
    kernel = np.asarray(layer.kernel, dtype="float64")
    scale = scale.reshape(kernel.shape[-2:]) if isinstance(layer, CondDepthwiseConv2D) else scale
    return (kernel * scale).astype(np.asarray(layer.kernel).dtype)
