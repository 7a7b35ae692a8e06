"""MobileNetV2 (Sandler et al., 2018) and CC-MobileNetV2 (CondConv paper, section 4.1.2).

``mobilenet_v2`` has the layers and names of ``keras.applications.MobileNetV2``.
``cc_mobilenet_v2`` makes all three convolutions of the last 6 inverted residual blocks CondConv
(one routing function per block, from the block input, shared by the three), and the final 1x1
convolution and the classifier too, each routed from its own input. Both are the backbone
``keras_routing.models.backbones.mobilenet_v2_backbone``, with a ``Plain`` or a
``CondConvConditioner``.
"""

from keras_routing.models.backbones.common import check_arguments
from keras_routing.models.backbones.mobilenet_v2 import (
    BLOCKS,
    block_index,
    make_divisible,
    mobilenet_v2_backbone,
)
from keras_routing.models.conditioners import CondConvConditioner, Plain
from keras_routing.transforms.upcycle import upcycle
from keras_routing.validation import integer
from keras_routing.zoo.papers import CONDCONV, MOBILENET_V2
from keras_routing.zoo.registry import register

__all__ = ["BLOCKS", "COND_BLOCKS", "cc_mobilenet_v2", "make_divisible", "mobilenet_v2"]

COND_BLOCKS = 6  # the last 6 blocks are CondConv in CC-MobileNetV2
FIRST_COND = block_index(len(BLOCKS) - COND_BLOCKS)  # from block_11 on, Conv_1 and the classifier


@register("mobilenet_v2", family="plain", paper=MOBILENET_V2)
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
    return mobilenet_v2_backbone(
        width=width,
        conditioner=Plain(),
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        bn_momentum=bn_momentum,
        name=name or f"mobilenet_v2_{width:g}",
    )


@register("cc_mobilenet_v2", family="condconv", paper=CONDCONV)
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
    integer(experts, "experts")
    conditioner = CondConvConditioner(experts, routing=routing, which=lambda site: site.index >= FIRST_COND)
    model = mobilenet_v2_backbone(
        width=width,
        conditioner=conditioner,
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        bn_momentum=bn_momentum,
        name=name or f"cc_mobilenet_v2_{width:g}_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
