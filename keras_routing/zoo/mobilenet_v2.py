"""MobileNetV2 (Sandler et al., 2018) and CC-MobileNetV2 (CondConv paper, section 4.1.2).

``mobilenet_v2`` has the layers and names of ``keras.applications.MobileNetV2``.
``cc_mobilenet_v2`` makes all three convolutions of the last 6 inverted residual blocks CondConv
(one routing function per block, from the block input, shared by the three), and the final 1x1
convolution and the classifier too, each routed from its own input.
"""

import keras

from keras_routing.zoo.builder import Builder, check_arguments, check_experts, image_input
from keras_routing.zoo.registry import register
from keras_routing.zoo.upcycle import upcycle

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
COND_BLOCKS = 6  # the last 6 blocks are CondConv in CC-MobileNetV2


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


def _build(
    width,
    experts,
    routing,
    include_top,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    dropout,
    bn_momentum,
    name,
):
    builder = Builder(experts, routing, bn_momentum=bn_momentum, bn_epsilon=1e-3)
    inputs = image_input(input_shape)
    x = builder.conv(inputs, make_divisible(32 * width), 3, "Conv1", strides=2)
    x = builder.batch_norm(x, "bn_Conv1")
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)

    first_cond = len(BLOCKS) - COND_BLOCKS if experts else len(BLOCKS)
    for block_id, (expansion, filters, stride) in enumerate(BLOCKS):
        cond = block_id >= first_cond
        block_input = x
        in_channels = x.shape[-1]
        out_channels = make_divisible(int(filters * width))
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        if cond:
            builder.start_block(x, f"block_{block_id}")
        if block_id:
            x = builder.conv(x, expansion * in_channels, 1, f"{prefix}expand", cond=cond)
            x = builder.batch_norm(x, f"{prefix}expand_BN")
            x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
        if stride == 2:
            x = keras.layers.ZeroPadding2D(_correct_pad(*x.shape[1:3]), name=f"{prefix}pad")(x)
        padding = "same" if stride == 1 else "valid"
        x = builder.depthwise(x, f"{prefix}depthwise", cond=cond, strides=stride, padding=padding)
        x = builder.batch_norm(x, f"{prefix}depthwise_BN")
        x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
        x = builder.conv(x, out_channels, 1, f"{prefix}project", cond=cond)
        x = builder.batch_norm(x, f"{prefix}project_BN")
        if in_channels == out_channels and stride == 1:
            x = keras.layers.Add(name=f"{prefix}add")([block_input, x])

    last_filters = make_divisible(1280 * width) if width > 1.0 else 1280
    if experts:
        builder.start_block(x, "Conv_1")
    x = builder.conv(x, last_filters, 1, "Conv_1", cond=bool(experts))
    x = builder.batch_norm(x, "Conv_1_bn")
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    x = builder.dense_head(x, include_top, pooling, classes, classifier_activation, dropout)
    return keras.Model(inputs, x, name=name)


@register("mobilenet_v2")
def mobilenet_v2(
    width=1.0,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    bn_momentum=0.9,
    name=None,
):
    """MobileNetV2 with the layers of ``keras.applications.MobileNetV2(alpha=width)``.

    Inputs are images scaled to [-1, 1] (``keras.applications.mobilenet_v2.preprocess_input``).
    ``dropout`` > 0 adds dropout before the classifier (no weights: the layers still match).
    """
    check_arguments(width=width, pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    return _build(
        width,
        None,
        "per_block",
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or f"mobilenet_v2_{width:g}",
    )


@register("cc_mobilenet_v2")
def cc_mobilenet_v2(
    width=1.0,
    experts=8,
    routing="per_block",
    init_from=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    bn_momentum=0.9,
    name=None,
):
    """CC-MobileNetV2: CondConv in the last 6 inverted residual blocks, final conv and classifier.

    ``routing`` and ``init_from`` as for ``cc_mobilenet_v1``.
    """
    check_arguments(width=width, pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    check_experts(experts)
    model = _build(
        width,
        experts,
        routing,
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or f"cc_mobilenet_v2_{width:g}_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
