"""The CIFAR ResNets of He et al. (2016, section 4.2): depth ``6n + 2`` (ResNet-110: n = 18),
a 3x3 stem of 16 filters, three stages of ``n`` basic blocks (two 3x3 convolutions) of 16, 32
and 64 filters, global average pooling and the classifier.

The first block of stages 2 and 3 downsamples with a stride-2 3x3 convolution and a projection
shortcut (1x1 convolution and batch normalization). Blocks (``Site.index``): 1 is the stem,
then the residual blocks in order (``stage1_block1`` is 2), then the classifier. A block's
layers have the roles ``"shortcut"``, ``"basic_first"`` and ``"basic_second"``; the block is
``resnet_basic.basic_block``, named here ``stage{s}_block{n}``.
"""

import keras

from keras_routing.models.backbones.common import batch_norm, check_conditioner, dense_classifier, image_input
from keras_routing.models.backbones.resnet_basic import CIFAR_FILTERS as FILTERS
from keras_routing.models.backbones.resnet_basic import basic_block, cifar_blocks
from keras_routing.models.conditioners import Site
from keras_routing.validation import is_integer


def resnet_cifar_backbone(
    *,
    depth=110,
    conditioner=None,
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    width=1,
    bn_momentum=0.9,
    name=None,
):
    """A CIFAR ResNet of ``depth`` (``6n + 2``: 20, 32, 44, 56, 110, ...) whose layers and blocks
    ``conditioner`` builds (default ``Plain``). ``width`` multiplies every stage's filters."""
    blocks = cifar_blocks(depth)[0]
    if not is_integer(width) or width < 1:
        raise ValueError(f"`width` must be a whole number >= 1, got {width!r}.")
    conditioner = check_conditioner(conditioner)
    norm = {"momentum": bn_momentum, "epsilon": 1e-5}

    inputs = image_input(input_shape, default_size=32, min_size=8)
    stem = Site("block", "stem", 1, "conv1", stage=0)
    site = stem.layer("conv", "stem")
    conditioner.start_block(inputs, site=stem.holding(site))
    x = conditioner.conv(inputs, FILTERS[0] * width, 3, name="conv1_conv", site=site)
    x = batch_norm(x, "conv1_bn", **norm)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)

    index = 1
    for stage, filters in enumerate(FILTERS, start=1):
        for number in range(1, blocks + 1):
            index += 1
            stride = 2 if number == 1 and stage > 1 else 1
            block = Site("block", "basic", index, f"stage{stage}_block{number}", stage - 1, stride)
            x = basic_block(conditioner, x, filters * width, stride, block, norm)
    x = dense_classifier(
        x, conditioner, classes, classifier_activation, 0.0, index + 1, 2, pool_name="avg_pool"
    )
    return keras.Model(inputs, x, name=name or f"resnet{depth}_cifar")
