"""MobileNetV1 (Howard et al., 2017) and CC-MobileNetV1 (CondConv paper, sections 4.1.1 and 4.3).

``mobilenet_v1`` has the layers and layer names of ``keras.applications.MobileNet``, so its
weights load into it. ``cc_mobilenet_v1`` replaces the depthwise and pointwise convolutions of
the final 8 separable blocks and the classifier with CondConv layers, one routing function per
block computed from the block input; its keyword arguments reproduce the paper's ablations.

Layers are numbered as the paper numbers them: 1 is the first convolution, 2-14 the 13
separable blocks (``keras.applications`` block ids 1-13), 15 the classifier.
"""

import keras

from keras_routing.validation import integer
from keras_routing.zoo.builder import Builder, check_arguments, check_experts, image_input
from keras_routing.zoo.registry import register
from keras_routing.zoo.upcycle import upcycle

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
CLASSIFIER = 15
NO_CONDCONV = 16
CONDCONV_ON = ("depthwise", "pointwise")


def _build(
    width,
    experts,
    condconv_begin,
    condconv_on,
    cond_classifier,
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

    def cond(index):
        return bool(experts) and condconv_begin <= index < NO_CONDCONV

    inputs = image_input(input_shape)
    x = inputs
    if cond(1):
        builder.start_block(x, "conv1")
    x = builder.conv(x, int(32 * width), 3, "conv1", cond=cond(1), strides=2)
    x = builder.batch_norm(x, "conv1_bn")
    x = keras.layers.ReLU(6.0, name="conv1_relu")(x)

    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
        index = block_id + 1
        cond_dw = cond(index) and "depthwise" in condconv_on
        cond_pw = cond(index) and "pointwise" in condconv_on
        if cond_dw or cond_pw:
            builder.start_block(x, f"conv_block_{block_id}")
        if stride == 2:
            x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
        padding = "same" if stride == 1 else "valid"
        x = builder.depthwise(x, f"conv_dw_{block_id}", cond=cond_dw, strides=stride, padding=padding)
        x = builder.batch_norm(x, f"conv_dw_{block_id}_bn")
        x = keras.layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
        x = builder.conv(x, int(filters * width), 1, f"conv_pw_{block_id}", cond=cond_pw)
        x = builder.batch_norm(x, f"conv_pw_{block_id}_bn")
        x = keras.layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        cond_fc = cond(CLASSIFIER) and cond_classifier
        if cond_fc:
            builder.start_block(x, "conv_preds")
        x = builder.conv(x, classes, 1, "conv_preds", cond=cond_fc, use_bias=True)
        x = keras.layers.Reshape((classes,), name="reshape_2")(x)
        x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = builder.pooling(x, pooling)
    return keras.Model(inputs, x, name=name)


@register("mobilenet_v1")
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
    check_arguments(
        width=width,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        bn_momentum=bn_momentum,
        narrowest=NARROWEST,
    )
    return _build(
        width,
        None,
        NO_CONDCONV,
        (),
        False,
        "per_block",
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or f"mobilenet_v1_{width:g}",
    )


@register("cc_mobilenet_v1")
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
            (Table 6, Fig. 3; see ``keras_routing.zoo.routing_plan``).
        init_from: a trained ``mobilenet_v1`` of the same width (or the path of one saved as
            ``.keras``) to start from: see ``keras_routing.zoo.upcycle``.
    """
    check_arguments(
        width=width,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        bn_momentum=bn_momentum,
        narrowest=NARROWEST,
    )
    check_experts(experts)
    integer(condconv_begin, "condconv_begin", 1, NO_CONDCONV)
    condconv_on = (condconv_on,) if isinstance(condconv_on, str) else tuple(condconv_on)
    if not condconv_on or set(condconv_on) - set(CONDCONV_ON):
        raise ValueError(f"`condconv_on` must be a non-empty subset of {CONDCONV_ON}, got {condconv_on!r}.")
    model = _build(
        width,
        experts,
        condconv_begin,
        condconv_on,
        cond_classifier,
        routing,
        include_top,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        dropout,
        bn_momentum,
        name or f"cc_mobilenet_v1_{width:g}_{experts}",
    )
    if init_from is not None:
        upcycle(model, init_from)
    return model
