"""The MobileNetV1 backbone (Howard et al., 2017), layer for layer ``keras.applications.MobileNet``.

Blocks are numbered as the CondConv paper numbers layers (``Site.index``): 1 is the first
convolution, 2-14 the 13 separable blocks (``keras.applications`` block ids 1-13), 15 the
classifier (``conv_preds``, a 1x1 convolution).
"""

import keras

from keras_routing.models.backbones.common import (
    batch_norm,
    check_arguments,
    check_conditioner,
    check_downsample_padding,
    image_input,
)
from keras_routing.models.backbones.common import (
    pooling as pool,
)
from keras_routing.models.conditioners import Site

# (pointwise filters at width 1.0, stride) of the 13 separable blocks.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
NARROWEST = 32  # the first convolution's filters at width 1.0
CLASSIFIER = len(BLOCKS) + 2  # the classifier's index: 15


def mobilenet_v1_backbone(
    *,
    width=1.0,
    conditioner=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=1e-3,
    bn_momentum=0.9,
    downsample_padding="applications",
    name=None,
):
    """MobileNetV1 at width multiplier ``width`` whose conditioned layers ``conditioner`` builds.

    Args:
        conditioner: a ``keras_routing.models.conditioners.Conditioner`` (default ``Plain``:
            ``keras.applications.MobileNet(alpha=width)``).
        include_top: the classifier (global pooling, dropout, ``conv_preds``); without it the
            output is the last feature map, or its ``pooling`` (``"avg"``, ``"max"``).
        downsample_padding: ``"applications"`` pads each stride-2 depthwise convolution on the
            bottom and right as ``keras.applications`` does (18x18 and 9x9 maps at 300x300);
            ``"same"`` pads as TensorFlow's ``"same"`` (and the SSD feature extractors) do, giving
            19x19 and 10x10 at 300x300. Same weights, same maps at even sizes (224x224).
    """
    check_arguments(
        width=width,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        bn_momentum=bn_momentum,
        narrowest=NARROWEST,
    )
    check_downsample_padding(downsample_padding)
    conditioner = check_conditioner(conditioner)
    norm = dict(momentum=bn_momentum, epsilon=1e-3)

    inputs = image_input(input_shape)
    stem = Site("block", "stem", 1, "conv1", stage=1, strides=2)
    site = stem.layer("conv", "stem", strides=2)
    conditioner.start_block(inputs, site=stem.holding(site))
    x = conditioner.conv(inputs, int(32 * width), 3, name="conv1", site=site, strides=2)
    x = batch_norm(x, "conv1_bn", **norm)
    x = keras.layers.ReLU(6.0, name="conv1_relu")(x)

    stage = 1
    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
        if stride == 2:
            stage += 1
        block = Site("block", "separable", block_id + 1, f"conv_block_{block_id}", stage, stride)
        depthwise = block.layer("depthwise", "depthwise", stride)
        pointwise = block.layer("conv", "pointwise")
        conditioner.start_block(x, site=block.holding(depthwise, pointwise))
        padding = "same"
        if stride == 2 and downsample_padding == "applications":
            x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
            padding = "valid"
        x = conditioner.depthwise(
            x, name=f"conv_dw_{block_id}", site=depthwise, strides=stride, padding=padding
        )
        x = batch_norm(x, f"conv_dw_{block_id}_bn", **norm)
        x = keras.layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
        x = conditioner.conv(x, int(filters * width), 1, name=f"conv_pw_{block_id}", site=pointwise)
        x = batch_norm(x, f"conv_pw_{block_id}_bn", **norm)
        x = keras.layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        head = Site("block", "classifier", CLASSIFIER, "conv_preds", stage)
        site = head.layer("conv", "classifier")
        conditioner.start_block(x, site=head.holding(site))
        x = conditioner.conv(x, classes, 1, name="conv_preds", site=site, use_bias=True)
        x = keras.layers.Reshape((classes,), name="reshape_2")(x)
        x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = pool(x, pooling)
    return keras.Model(inputs, x, name=name or f"mobilenet_v1_{width:g}")


def feature_layers(layer_names):
    """``{output stride: layer name}`` of the last layer at each resolution, if ``layer_names``
    (of a MobileNetV1, ours or ``keras.applications``') hold them; else ``None``."""
    layers = {2: 1, 4: 3, 8: 5, 16: 11, 32: 13}
    layers = {stride: f"conv_pw_{block_id}_relu" for stride, block_id in layers.items()}
    return layers if set(layers.values()) <= set(layer_names) else None
