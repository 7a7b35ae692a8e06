"""VGG16 with batch normalisation, CIFAR-style (Simonyan and Zisserman, 2014; the DeepMoE and
network-slimming CIFAR form): 13 3x3 convolutions, each followed by batch normalisation and a
ReLU, max pooling after convolutions 2, 4, 7, 10 and 13, global pooling and one classifier.

Names as ``keras.applications.VGG16``: ``block{b}_conv{c}``, ``block{b}_pool``, ``predictions``.
Convolution sites have the role ``"vgg_gated"`` (convolutions 1-12) and ``"vgg_last"`` (13),
index 1-13 in order, the classifier 14.
"""

import keras

from keras_routing.models.backbones.common import batch_norm, check_arguments, check_conditioner, image_input
from keras_routing.models.conditioners import Site

VGG16_FILTERS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
BLOCK_ENDS = (2, 4, 7, 10, 13)  # convolutions followed by max pooling

# DeepMoE's Table 6: the widening strategies of section 5.3.3.
WIDEN = {
    "high": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 1536, 512, 512),
    "mid": (64, 64, 128, 128, 2990, 256, 256, 512, 512, 512, 512, 512, 512),
    "low": (512, 512, 615, 615, 256, 256, 256, 512, 512, 512, 512, 512, 512),
    "all": (128, 128, 256, 256, 405, 405, 405, 615, 615, 615, 615, 615, 615),
}


def vgg16_backbone(
    *,
    filters=VGG16_FILTERS,
    conditioner=None,
    input_shape=(32, 32, 3),
    classes=100,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """VGG16-BN with ``filters`` (13 channel counts) whose convolutions ``conditioner`` builds."""
    if not isinstance(filters, (list, tuple)) or len(filters) != 13:
        raise ValueError(f"`filters` must give the 13 convolutions' channels, got {filters!r}.")
    check_arguments(pooling=None, classes=classes, dropout=0.0, bn_momentum=bn_momentum)
    conditioner = check_conditioner(conditioner)
    norm = {"momentum": bn_momentum, "epsilon": 1e-5}
    inputs = image_input(input_shape, default_size=32, min_size=32)
    x = inputs
    block, number, stage = 1, 1, 0
    for index, channels in enumerate(filters, start=1):
        role = "vgg_last" if index == 13 else "vgg_gated"
        name_ = f"block{block}_conv{number}"
        site = Site("block", "conv", index, name_, stage).layer("conv", role)
        conditioner.start_block(
            x, site=Site("block", "stem" if index == 1 else "conv", index, name_, stage).holding(site)
        )
        x = conditioner.conv(x, int(channels), 3, name=name_, site=site)
        x = batch_norm(x, f"{name_}_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name_}_relu")(x)
        number += 1
        if index in BLOCK_ENDS:
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, number, stage = block + 1, 1, stage + 1
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    head = Site("block", "classifier", 14, "predictions", stage)
    site = head.layer("dense", "classifier")
    conditioner.start_block(x, site=head.holding(site))
    x = conditioner.dense(x, classes, name="predictions", site=site, activation=classifier_activation)
    return keras.Model(inputs, x, name=name or "vgg16_bn")
