"""ResNet-50 (He et al., 2016) and CC-ResNet-50 (CondConv paper, section 4.1.3).

``resnet50`` has the layers and names of ``keras.applications.ResNet50``. ``cc_resnet50`` makes
every convolution of the final three residual blocks (``conv5_block1-3``, the projection
shortcut included unless ``condconv_shortcut=False``) CondConv, one routing function per block
from its input, and the classifier too. Both are the backbone
``keras_routing.models.backbones.resnet_backbone``, with a ``Plain`` or a ``CondConvConditioner``.
"""

from keras_routing.models.backbones.common import check_arguments
from keras_routing.models.backbones.resnet import STRIDE_ON, classifier_index, resnet_backbone
from keras_routing.models.conditioners import CondConvConditioner, Plain
from keras_routing.transforms.upcycle import upcycle
from keras_routing.validation import integer
from keras_routing.zoo.papers import CONDCONV, RESNET
from keras_routing.zoo.registry import register

__all__ = ["STRIDE_ON", "cc_resnet50", "resnet50"]

COND_BLOCKS = 3  # conv5_block1-3
FIRST_COND = classifier_index(50) - COND_BLOCKS


@register("resnet50", preprocessing="caffe", family="plain", paper=RESNET)
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
    return resnet_backbone(
        depth=50,
        conditioner=Plain(),
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        stride_on=stride_on,
        bn_momentum=bn_momentum,
        name=name or "resnet50",
    )


@register("cc_resnet50", preprocessing="caffe", family="condconv", paper=CONDCONV)
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
    integer(experts, "experts")

    def which(site):
        return site.index >= FIRST_COND and (site.role != "shortcut" or condconv_shortcut)

    model = resnet_backbone(
        depth=50,
        conditioner=CondConvConditioner(experts, routing=routing, which=which),
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        stride_on=stride_on,
        bn_momentum=bn_momentum,
        name=name or f"cc_resnet50_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
