"""The MobileNetV2 backbone (Sandler et al., 2018), layer for layer ``keras.applications.MobileNetV2``.

Blocks (``Site.index``): 1 is the first convolution (``Conv1``), 2-18 the 17 inverted residual
blocks (``keras.applications`` block ids 0-16), 19 the final 1x1 convolution (``Conv_1``), 20 the
classifier (``predictions``).
"""

import keras

from keras_routing.models.backbones.common import (
    batch_norm,
    check_arguments,
    check_conditioner,
    check_downsample_padding,
    dense_classifier,
    image_input,
)
from keras_routing.models.backbones.common import (
    pooling as pool,
)
from keras_routing.models.conditioners import Site

# (expansion, output filters at width 1.0, stride) of the 17 inverted residual blocks.
BLOCKS = (
    (1, 16, 1),
    (6, 24, 2),
    (6, 24, 1),
    (6, 32, 2),
    (6, 32, 1),
    (6, 32, 1),
    (6, 64, 2),
    (6, 64, 1),
    (6, 64, 1),
    (6, 64, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 160, 2),
    (6, 160, 1),
    (6, 160, 1),
    (6, 320, 1),
)
HEAD = len(BLOCKS) + 2  # Conv_1's index: 19
CLASSIFIER = HEAD + 1


def block_index(block_id):
    """``Site.index`` of the inverted residual block ``block_id`` (``keras.applications``' 0-16)."""
    return block_id + 2


def make_divisible(value, divisor=8):
    """Round channels as MobileNetV2 does: to a multiple of 8, never below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _correct_pad(height, width):
    """ZeroPadding2D amounts for a stride-2 3x3 convolution, as keras.applications pads."""

    def pad(size):
        adjust = 1 if size is None else 1 - size % 2
        return (1 - adjust, 1)

    return (pad(height), pad(width))


def _inverted_residual(conditioner, x, block_id, expansion, out_channels, block, downsample_padding, norm):
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    stride = block.strides
    expand = block.layer("conv", "expand") if block_id else None
    depthwise = block.layer("depthwise", "depthwise", stride)
    project = block.layer("conv", "project")
    block = block.holding(*[site for site in (expand, depthwise, project) if site is not None])
    conditioner.start_block(x, site=block)

    def residual(x):
        if expand is not None:
            x = conditioner.conv(x, expansion * x.shape[-1], 1, name=f"{prefix}expand", site=expand)
            x = batch_norm(x, f"{prefix}expand_BN", **norm)
            x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
        padding = "same"
        if stride == 2 and downsample_padding == "applications":
            x = keras.layers.ZeroPadding2D(_correct_pad(*x.shape[1:3]), name=f"{prefix}pad")(x)
            padding = "valid"
        x = conditioner.depthwise(
            x, name=f"{prefix}depthwise", site=depthwise, strides=stride, padding=padding
        )
        x = batch_norm(x, f"{prefix}depthwise_BN", **norm)
        x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
        x = conditioner.conv(x, out_channels, 1, name=f"{prefix}project", site=project)
        return batch_norm(x, f"{prefix}project_BN", **norm)

    if x.shape[-1] == out_channels and stride == 1:
        return conditioner.block(x, residual, shortcut=lambda x: x, name=f"{prefix}add", site=block)
    return residual(x)


def mobilenet_v2_backbone(
    *,
    width=1.0,
    conditioner=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    bn_momentum=0.9,
    downsample_padding="applications",
    name=None,
):
    """MobileNetV2 at width multiplier ``width`` whose conditioned layers ``conditioner`` builds.

    Arguments as for ``mobilenet_v1_backbone``; ``dropout`` > 0 adds dropout before the
    classifier. ``keras.applications`` pads a stride-2 depthwise convolution as ``"same"`` does
    when the size is known, so ``downsample_padding`` only matters for inputs of unknown size.
    """
    check_arguments(width=width, pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    check_downsample_padding(downsample_padding)
    conditioner = check_conditioner(conditioner)
    norm = dict(momentum=bn_momentum, epsilon=1e-3)

    inputs = image_input(input_shape)
    stem = Site("block", "stem", 1, "Conv1", stage=1, strides=2)
    site = stem.layer("conv", "stem", strides=2)
    conditioner.start_block(inputs, site=stem.holding(site))
    x = conditioner.conv(inputs, make_divisible(32 * width), 3, name="Conv1", site=site, strides=2)
    x = batch_norm(x, "bn_Conv1", **norm)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)

    stage = 1
    for block_id, (expansion, filters, stride) in enumerate(BLOCKS):
        if stride == 2:
            stage += 1
        block = Site("block", "inverted_residual", block_index(block_id), f"block_{block_id}", stage, stride)
        out_channels = make_divisible(int(filters * width))
        x = _inverted_residual(
            conditioner, x, block_id, expansion, out_channels, block, downsample_padding, norm
        )

    last_filters = make_divisible(1280 * width) if width > 1.0 else 1280
    head = Site("block", "head", HEAD, "Conv_1", stage)
    site = head.layer("conv", "head")
    conditioner.start_block(x, site=head.holding(site))
    x = conditioner.conv(x, last_filters, 1, name="Conv_1", site=site)
    x = batch_norm(x, "Conv_1_bn", **norm)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = dense_classifier(x, conditioner, classes, classifier_activation, dropout, CLASSIFIER, stage)
    else:
        x = pool(x, pooling)
    return keras.Model(inputs, x, name=name or f"mobilenet_v2_{width:g}")


def feature_layers(layer_names):
    """``{output stride: layer name}`` of the last layer at each resolution, if ``layer_names``
    (of a MobileNetV2, ours or ``keras.applications``') hold them; else ``None``."""
    layers = {
        2: "expanded_conv_project_BN",
        4: "block_2_add",
        8: "block_5_add",
        16: "block_12_add",
        32: "out_relu",
    }
    return (
        layers if set(layers.values()) <= set(layer_names) and "block_16_project_BN" in layer_names else None
    )
