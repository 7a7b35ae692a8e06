"""MobileNetV1 (Howard et al., 2017) and CC-MobileNetV1 (CondConv paper, sections 4.1.1 and 4.3).

``mobilenet_v1`` has the layers and layer names of ``keras.applications.MobileNet``, so its
weights load into it. ``cc_mobilenet_v1`` replaces the depthwise and pointwise convolutions of
the final 8 separable blocks and the classifier with CondConv layers, one routing function per
block computed from the block input; its keyword arguments reproduce the paper's ablations.

Layers are numbered as the paper numbers them: 1 is the first convolution, 2-14 the 13
separable blocks (``keras.applications`` block ids 1-13), 15 the classifier. Both are the
backbone ``keras_routing.models.backbones.mobilenet_v1_backbone``, with a ``Plain`` or a
``CondConvConditioner``.
"""

from keras_routing.models.backbones.common import check_arguments
from keras_routing.models.backbones.mobilenet_v1 import BLOCKS, CLASSIFIER, NARROWEST, mobilenet_v1_backbone
from keras_routing.models.conditioners import CondConvConditioner, Plain
from keras_routing.transforms.upcycle import upcycle
from keras_routing.validation import integer
from keras_routing.zoo.papers import CONDCONV, MOBILENET_V1
from keras_routing.zoo.registry import register

__all__ = ["BLOCKS", "CONDCONV_ON", "NARROWEST", "NO_CONDCONV", "cc_mobilenet_v1", "mobilenet_v1"]

NO_CONDCONV = CLASSIFIER + 1  # condconv_begin=16: no CondConv layer
CONDCONV_ON = ("depthwise", "pointwise")


def condconv_sites(condconv_begin, condconv_on, cond_classifier):
    """The paper's choice of CondConv layers (Tables 5, 7, 8) as a predicate of a ``Site``."""

    def which(site):
        if not condconv_begin <= site.index < NO_CONDCONV:
            return False
        if site.role in CONDCONV_ON:
            return site.role in condconv_on
        return site.role != "classifier" or cond_classifier

    return which


@register("mobilenet_v1", family="plain", paper=MOBILENET_V1)
def mobilenet_v1(
    width=1.0,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=1e-3,
    bn_momentum=0.9,
    name=None,
):
    """MobileNetV1 with the layers of ``keras.applications.MobileNet(alpha=width)``.

    Inputs are images scaled to [-1, 1] (``keras.applications.mobilenet.preprocess_input``).
    ``bn_momentum`` defaults to the CondConv paper's 0.9 (it changes training, not weights).
    """
    return mobilenet_v1_backbone(
        width=width,
        conditioner=Plain(),
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        bn_momentum=bn_momentum,
        name=name or f"mobilenet_v1_{width:g}",
    )


@register("cc_mobilenet_v1", family="condconv", paper=CONDCONV)
def cc_mobilenet_v1(
    width=1.0,
    experts=8,
    condconv_begin=7,
    condconv_on=CONDCONV_ON,
    cond_classifier=True,
    routing="per_block",
    init_from=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=1e-3,
    bn_momentum=0.9,
    name=None,
):
    """CC-MobileNetV1: CondConv in the final 8 separable blocks and the classifier.

    Args:
        width: the width multiplier (0.25, 0.5, 0.75, 1.0 in the paper).
        experts: experts per CondConv layer.
        condconv_begin: first CondConv layer in the paper's numbering (Table 7): 1 is the first
            convolution, 2-14 the separable blocks, 15 the classifier only, 16 none.
        condconv_on: which convolutions of a separable block are CondConv (Table 5):
            ``("depthwise", "pointwise")``, or either alone.
        cond_classifier: CondConv classifier (Table 8).
        routing: ``"per_block"``, ``"single"``, ``"partially_shared"``, ``"hierarchical"``, or
            a ``Routing`` layer or dict for hidden-layer / softmax / per-channel routing
            (Table 6, Fig. 3; see ``keras_routing.models.routing_plan``).
        init_from: a trained ``mobilenet_v1`` of the same width (or the path of one saved as
            ``.keras``) to start from: see ``keras_routing.transforms.upcycle``.
    """
    check_arguments(
        width=width,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        bn_momentum=bn_momentum,
        narrowest=NARROWEST,
    )
    integer(experts, "experts")
    integer(condconv_begin, "condconv_begin", 1, NO_CONDCONV)
    condconv_on = (condconv_on,) if isinstance(condconv_on, str) else tuple(condconv_on)
    if not condconv_on or set(condconv_on) - set(CONDCONV_ON):
        raise ValueError(f"`condconv_on` must be a non-empty subset of {CONDCONV_ON}, got {condconv_on!r}.")
    conditioner = CondConvConditioner(
        experts, routing=routing, which=condconv_sites(condconv_begin, condconv_on, cond_classifier)
    )
    model = mobilenet_v1_backbone(
        width=width,
        conditioner=conditioner,
        include_top=include_top,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        bn_momentum=bn_momentum,
        name=name or f"cc_mobilenet_v1_{width:g}_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
