"""ResNet-50 (He et al., 2016) and CC-ResNet-50 (CondConv paper, section 4.1.3).

``resnet50`` has the layers and names of ``keras.applications.ResNet50``. ``cc_resnet50`` makes
every convolution of the final three residual blocks (``conv5_block1-3``, the projection
shortcut included unless ``condconv_shortcut=False``) CondConv, one routing function per block
from its input, and the classifier too.
"""

import keras

from keras_routing.zoo.builder import Builder, check_arguments, check_experts, image_input
from keras_routing.zoo.registry import register
from keras_routing.zoo.upcycle import upcycle

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, first stride)
STRIDE_ON = ("1x1", "3x3")


def _block(builder, x, filters, stride, shortcut_conv, name, cond, cond_shortcut, stride_on):
    if cond:
        builder.start_block(x, name)
    conv = dict(use_bias=True, padding="same")
    shortcut = x
    if shortcut_conv:
        shortcut = builder.conv(
            x, 4 * filters, 1, f"{name}_0_conv", cond=cond and cond_shortcut, strides=stride, **conv
        )
        shortcut = builder.batch_norm(shortcut, f"{name}_0_bn")
    first, second = (stride, 1) if stride_on == "1x1" else (1, stride)
    x = builder.conv(x, filters, 1, f"{name}_1_conv", cond=cond, strides=first, **conv)
    x = builder.batch_norm(x, f"{name}_1_bn")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = builder.conv(x, filters, 3, f"{name}_2_conv", cond=cond, strides=second, **conv)
    x = builder.batch_norm(x, f"{name}_2_bn")
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = builder.conv(x, 4 * filters, 1, f"{name}_3_conv", cond=cond, **conv)
    x = builder.batch_norm(x, f"{name}_3_bn")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _build(
    experts,
    cond_blocks,
    cond_shortcut,
    stride_on,
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
    if stride_on not in STRIDE_ON:
        raise ValueError(f"`stride_on` must be one of {STRIDE_ON}, got {stride_on!r}.")
    builder = Builder(experts, routing, bn_momentum=bn_momentum, bn_epsilon=1.001e-5)
    inputs = image_input(input_shape)
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = builder.conv(x, 64, 7, "conv1_conv", strides=2, padding="valid", use_bias=True)
    x = builder.batch_norm(x, "conv1_bn")
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    total = sum(blocks for _, blocks, _ in STAGES)
    index = 0
    for stage, (filters, blocks, stride) in enumerate(STAGES, start=2):
        for block in range(1, blocks + 1):
            index += 1
            cond = bool(experts) and index > total - cond_blocks
            x = _block(
                builder,
                x,
                filters,
                stride if block == 1 else 1,
                block == 1,
                f"conv{stage}_block{block}",
                cond,
                cond_shortcut,
                stride_on,
            )

    x = builder.dense_head(
        x, include_top, pooling, classes, classifier_activation, dropout, pool_names=("avg_pool", "max_pool")
    )
    return keras.Model(inputs, x, name=name)


@register("resnet50", preprocessing="caffe")
def resnet50(
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    stride_on="1x1",
    bn_momentum=0.9,
    name=None,
):
    """ResNet-50 with the layers of ``keras.applications.ResNet50``.

    ``stride_on``: where a stage's first block downsamples. ``"1x1"`` (default) is
    ``keras.applications``' ResNet50 (v1); ``"3x3"`` is "ResNet-50 v1.5", the TensorFlow TPU
    model the CondConv paper's 4,093M multiply-adds count. Both have the same weights.
    Inputs are preprocessed as ``keras.applications.resnet50.preprocess_input`` does.
    """
    check_arguments(pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    return _build(
        None,
        0,
        False,
        stride_on,
        "per_block",
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or "resnet50",
    )


@register("cc_resnet50", preprocessing="caffe")
def cc_resnet50(
    experts=8,
    condconv_shortcut=True,
    routing="per_block",
    init_from=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    stride_on="1x1",
    bn_momentum=0.9,
    name=None,
):
    """CC-ResNet-50: CondConv in the final three residual blocks and the classifier.

    ``condconv_shortcut``: whether conv5_block1's projection shortcut is CondConv too (the
    paper's text says every convolution of the blocks; its 8-expert parameter count fits
    leaving it plain, see the README). ``routing`` and ``init_from`` as for ``cc_mobilenet_v1``.
    """
    check_arguments(pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    check_experts(experts)
    model = _build(
        experts,
        3,
        condconv_shortcut,
        stride_on,
        routing,
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or f"cc_resnet50_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
