"""The bottleneck ResNet backbones (He et al., 2016), layer for layer ``keras.applications``'
``ResNet50``, ``ResNet101`` and ``ResNet152``.

Blocks (``Site.index``): 1 is the stem (``conv1``), then the residual blocks in order
(``conv2_block1`` is 2; ResNet-50's 16 blocks are 2-17), then the classifier (``predictions``).
A block's layers have the roles ``"shortcut"`` (its projection, first block of a stage only),
``"bottleneck_reduce"`` (1x1), ``"bottleneck_3x3"`` and ``"bottleneck_expand"`` (1x1).
"""

import keras

from keras_routing.models.backbones.common import (
    batch_norm,
    check_arguments,
    check_conditioner,
    dense_classifier,
    image_input,
)
from keras_routing.models.backbones.common import (
    pooling as pool,
)
from keras_routing.models.conditioners import Site
from keras_routing.validation import is_integer

FILTERS = (64, 128, 256, 512)  # the bottleneck filters of stages 2-5; a block outputs 4x as many
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # blocks per stage
STRIDE_ON = ("1x1", "3x3")


def classifier_index(depth=50):
    """``Site.index`` of the classifier of a ResNet of ``depth``: 18 for ResNet-50."""
    return sum(BLOCKS[depth]) + 2


def _bottleneck(conditioner, x, filters, stride, projection, block, stride_on, norm):
    name = block.block
    first, second = (stride, 1) if stride_on == "1x1" else (1, stride)
    shortcut_site = block.layer("conv", "shortcut", stride) if projection else None
    sites = (
        block.layer("conv", "bottleneck_reduce", first),
        block.layer("conv", "bottleneck_3x3", second),
        block.layer("conv", "bottleneck_expand"),
    )
    block = block.holding(*([shortcut_site] if projection else []), *sites)
    conditioner.start_block(x, site=block)
    conv = dict(use_bias=True, padding="same")

    def shortcut(x):
        if not projection:
            return x
        x = conditioner.conv(
            x, 4 * filters, 1, name=f"{name}_0_conv", site=shortcut_site, strides=stride, **conv
        )
        return batch_norm(x, f"{name}_0_bn", **norm)

    def residual(x):
        x = conditioner.conv(x, filters, 1, name=f"{name}_1_conv", site=sites[0], strides=first, **conv)
        x = batch_norm(x, f"{name}_1_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
        x = conditioner.conv(x, filters, 3, name=f"{name}_2_conv", site=sites[1], strides=second, **conv)
        x = batch_norm(x, f"{name}_2_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
        x = conditioner.conv(x, 4 * filters, 1, name=f"{name}_3_conv", site=sites[2], **conv)
        return batch_norm(x, f"{name}_3_bn", **norm)

    x = conditioner.block(x, residual, shortcut=shortcut, name=f"{name}_add", site=block)
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def stem(inputs, conditioner, norm):
    """ResNet's stem, ``keras.applications``' layers and names: 7x7/2 convolution, batch norm,
    ReLU, 3x3/2 max pooling (output stride 4)."""
    site = Site("block", "stem", 1, "conv1", stage=1, strides=2)
    conv_site = site.layer("conv", "stem", strides=2)
    conditioner.start_block(inputs, site=site.holding(conv_site))
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = conditioner.conv(
        x, 64, 7, name="conv1_conv", site=conv_site, strides=2, padding="valid", use_bias=True
    )
    x = batch_norm(x, "conv1_bn", **norm)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def resnet_backbone(
    *,
    depth=50,
    conditioner=None,
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
    """A bottleneck ResNet of ``depth`` 50, 101 or 152 whose conditioned layers ``conditioner``
    builds (default ``Plain``: ``keras.applications.ResNet50`` and its siblings).

    ``stride_on``: where a stage's first block downsamples. ``"1x1"`` (default) is
    ``keras.applications``' ResNet (v1); ``"3x3"`` is "ResNet v1.5". Both have the same weights.
    Other arguments as for ``mobilenet_v1_backbone``.
    """
    if not is_integer(depth) or depth not in BLOCKS:
        raise ValueError(f"`depth` must be one of {tuple(BLOCKS)}, got {depth!r}.")
    check_arguments(pooling=pooling, classes=classes, dropout=dropout, bn_momentum=bn_momentum)
    if stride_on not in STRIDE_ON:
        raise ValueError(f"`stride_on` must be one of {STRIDE_ON}, got {stride_on!r}.")
    conditioner = check_conditioner(conditioner)
    norm = dict(momentum=bn_momentum, epsilon=1.001e-5)

    inputs = image_input(input_shape)
    x = stem(inputs, conditioner, norm)

    index = 1
    for stage, (filters, blocks) in enumerate(zip(FILTERS, BLOCKS[int(depth)]), start=2):
        for block_number in range(1, blocks + 1):
            index += 1
            stride = 2 if block_number == 1 and stage > 2 else 1
            block = Site("block", "bottleneck", index, f"conv{stage}_block{block_number}", stage, stride)
            x = _bottleneck(conditioner, x, filters, stride, block_number == 1, block, stride_on, norm)

    if include_top:
        x = dense_classifier(
            x, conditioner, classes, classifier_activation, dropout, index + 1, 5, pool_name="avg_pool"
        )
    else:
        x = pool(x, pooling, ("avg_pool", "max_pool"))
    return keras.Model(inputs, x, name=name or f"resnet{depth}")


def feature_layers(layer_names):
    """``{output stride: layer name}`` of the last layer at each resolution, if ``layer_names``
    (of a bottleneck ResNet, ours or ``keras.applications``') hold them; else ``None``."""
    names = set(layer_names)
    if "conv1_relu" not in names:
        return None
    layers = {2: "conv1_relu"}
    for stage in range(2, 6):
        last = [n for n in range(1, 64) if f"conv{stage}_block{n}_out" in names]
        if not last:
            return None
        layers[2**stage] = f"conv{stage}_block{last[-1]}_out"
    return layers
