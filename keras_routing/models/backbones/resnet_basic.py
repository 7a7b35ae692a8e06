"""Basic-block ResNets (He et al., 2016): ResNet-18 and -34 for ImageNet-sized input, and the
CIFAR ResNets of depth 6n + 2 (ResNet-20, -56, -110: three stages of 16, 32, 64 channels).

Names follow ``keras.applications``' ResNet: ``conv1_conv``, ``conv{stage}_block{n}_{1,2}_conv``
(the two 3x3 convolutions of a block, roles ``"basic_first"`` and ``"basic_second"``),
``conv{stage}_block{n}_0_conv`` (the 1x1 projection shortcut where a block changes shape, role
``"shortcut"``: option B of the paper, also used for the CIFAR nets), ``predictions``.
``Site.index``: 1 the stem, then the blocks, the classifier last.
"""

import keras

from keras_routing.models.backbones.common import (
    batch_norm,
    check_arguments,
    check_conditioner,
    dense_classifier,
    image_input,
)
from keras_routing.models.backbones.common import pooling as pool
from keras_routing.models.conditioners import Site
from keras_routing.validation import is_integer

IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
IMAGENET_FILTERS = (64, 128, 256, 512)
CIFAR_FILTERS = (16, 32, 64)


def cifar_blocks(depth):
    """Blocks per stage of the CIFAR ResNet of ``depth`` (6n + 2): ``(n, n, n)``."""
    if not is_integer(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"`depth` of a CIFAR ResNet must be 6n + 2 (20, 56, 110, ...), got {depth!r}.")
    n = (int(depth) - 2) // 6
    return (n, n, n)


def basic_block(conditioner, x, filters, stride, block, norm):
    """One basic block (two 3x3 convolutions, roles ``basic_first`` / ``basic_second``; a 1x1
    projection shortcut where the block changes shape), built through ``conditioner``."""
    name = block.block
    projection = stride != 1 or x.shape[-1] != filters
    shortcut_site = block.layer("conv", "shortcut", stride) if projection else None
    sites = (block.layer("conv", "basic_first", stride), block.layer("conv", "basic_second"))
    block = block.holding(*([shortcut_site] if projection else []), *sites)
    conditioner.start_block(x, site=block)

    def shortcut(x):
        if not projection:
            return x
        x = conditioner.conv(x, filters, 1, name=f"{name}_0_conv", site=shortcut_site, strides=stride)
        return batch_norm(x, f"{name}_0_bn", **norm)

    def residual(x):
        x = conditioner.conv(x, filters, 3, name=f"{name}_1_conv", site=sites[0], strides=stride)
        x = batch_norm(x, f"{name}_1_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
        x = conditioner.conv(x, filters, 3, name=f"{name}_2_conv", site=sites[1])
        return batch_norm(x, f"{name}_2_bn", **norm)

    x = conditioner.block(x, residual, shortcut=shortcut, name=f"{name}_add", site=block)
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def basic_resnet_backbone(
    *,
    depth=18,
    cifar=False,
    conditioner=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """A basic-block ResNet whose conditioned layers ``conditioner`` builds (default ``Plain``).

    ``cifar=False``: ResNet-18 / -34 (``depth`` 18 or 34), a 7x7 stride-2 stem and max pooling,
    default input 224x224. ``cifar=True``: the CIFAR ResNet of ``depth`` 6n + 2, a 3x3 stem of 16
    channels, no pooling, default input 32x32.
    """
    check_arguments(pooling=pooling, classes=classes, dropout=0.0, bn_momentum=bn_momentum)
    conditioner = check_conditioner(conditioner)
    norm = {"momentum": bn_momentum, "epsilon": 1e-5}
    if cifar:
        blocks, filters_per_stage = cifar_blocks(depth), CIFAR_FILTERS
        inputs = image_input(input_shape, default_size=32, min_size=8)
    else:
        if not is_integer(depth) or depth not in IMAGENET_BLOCKS:
            raise ValueError(f"`depth` must be one of {tuple(IMAGENET_BLOCKS)}, got {depth!r}.")
        blocks, filters_per_stage = IMAGENET_BLOCKS[int(depth)], IMAGENET_FILTERS
        inputs = image_input(input_shape)

    stem = Site("block", "stem", 1, "conv1", stage=0 if cifar else 1, strides=1 if cifar else 2)
    site = stem.layer("conv", "stem", strides=stem.strides)
    conditioner.start_block(inputs, site=stem.holding(site))
    if cifar:
        x = conditioner.conv(inputs, 16, 3, name="conv1_conv", site=site)
    else:
        x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
        x = conditioner.conv(x, 64, 7, name="conv1_conv", site=site, strides=2, padding="valid")
    x = batch_norm(x, "conv1_bn", **norm)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if not cifar:
        x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    index = 1
    first_stage = 1 if cifar else 2
    for stage, (filters, count) in enumerate(zip(filters_per_stage, blocks), start=first_stage):
        for number in range(1, count + 1):
            index += 1
            stride = 2 if number == 1 and stage > first_stage else 1
            resolution = stage if not cifar else stage - 1
            block = Site("block", "basic", index, f"conv{stage}_block{number}", resolution, stride)
            x = basic_block(conditioner, x, filters, stride, block, norm)

    if include_top:
        x = dense_classifier(x, conditioner, classes, classifier_activation, 0.0, index + 1, 5, "avg_pool")
    else:
        x = pool(x, pooling, ("avg_pool", "max_pool"))
    return keras.Model(inputs, x, name=name or (f"resnet{depth}_cifar" if cifar else f"resnet{depth}"))
