"""DeepMoE for semantic segmentation (section 5.4, Table 5): channel-gated DRN-A-50 and its plain
baseline, as tasks that ``fit`` on ``(image, mask)`` pairs.

    model = keras_routing.zoo.deepmoe_drn_a50(input_shape=(128, 128, 3), classes=81)
    model.compile()          # per-pixel sparse cross-entropy, accuracy and mean IoU
    model.fit(keras_routing.data.coco_segmentation(path, image_size=128, batch_size=8), epochs=...)

The backbone is ``keras_routing.models.backbones.drn`` (output stride 8, dilations 2 and 4,
the 1x1 head upsampled bilinearly by 8). The gated layers are deepmoe_resnet's for ResNet-50:
``variant="A"`` the 1x1 reduction and the 3x3 of every bottleneck, ``"B"`` the 3x3 only;
``wide=True`` doubles them. Table 5 names its two DeepMoE rows "wide-DeepMoE-50-A" (the
efficient one) and "-B" (the accurate one) without saying whether A / B are these bottleneck
variants or two settings of lambda; the argument is the bottleneck variant. The paper gives no
mu for segmentation; the masks carry no image label for the embedding classifier, so there is
none here (mu = 0, as the paper's ImageNet models).
"""

import keras
from keras import ops

from keras_routing.models.backbones.drn import drn_a_backbone
from keras_routing.models.conditioners import ChannelGateConditioner
from keras_routing.models.task import Task
from keras_routing.zoo.deepmoe import (
    DEEPMOE,
    GATED_ROLES,
    DeepMoETask,
    _check_variant,
    _gate_arguments,
    _gated,
    deepmoe_model,
)
from keras_routing.zoo.registry import register

__all__ = [
    "DeepMoESegmentationTask",
    "PixelCrossentropy",
    "SegmentationTask",
    "deepmoe_drn_a50",
    "drn_a50",
]


@keras.saving.register_keras_serializable(package="keras_routing")
class PixelCrossentropy(keras.losses.SparseCategoricalCrossentropy):
    """``SparseCategoricalCrossentropy`` of integer masks ``(batch, height, width)`` against
    per-pixel probabilities ``(batch, height, width, classes)``, computed over the pixels
    flattened to ``(pixels, classes)``: the same values, but on torch Keras's own per-pixel form
    (the class axis moved to dim 1 for ``nll_loss``) fails in the backward pass with "grad_input
    must be contiguous" (Keras 3.15, torch 2.13)."""

    def call(self, y_true, y_pred):
        classes = ops.shape(y_pred)[-1]
        pixels = super().call(ops.reshape(y_true, (-1,)), ops.reshape(y_pred, (-1, classes)))
        return ops.reshape(pixels, ops.shape(y_pred)[:-1])


class _SegmentationDefaults:
    """Per-pixel defaults: sparse cross-entropy over ``(batch, height, width)`` integer masks,
    pixel accuracy and mean IoU (the paper's metric, from the argmax class), and the paper's
    optimizer (SGD, momentum 0.9, learning rate 5e-4: DRN's fine-tuning from ImageNet weights)."""

    def default_loss(self):
        return PixelCrossentropy()

    def default_metrics(self):
        classes = self.outputs[0].shape[-1]
        return [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.MeanIoU(classes, sparse_y_true=True, sparse_y_pred=False, name="mean_iou"),
        ]

    def default_optimizer(self):
        return keras.optimizers.SGD(5e-4, momentum=0.9)


@keras.saving.register_keras_serializable(package="keras_routing")
class SegmentationTask(_SegmentationDefaults, Task):
    """A plain segmentation model: outputs ``(batch, height, width, classes)`` probabilities;
    ``compile()`` takes the per-pixel defaults."""


@keras.saving.register_keras_serializable(package="keras_routing")
class DeepMoESegmentationTask(_SegmentationDefaults, DeepMoETask):
    """A DeepMoE segmentation model: the per-pixel cross-entropy plus lambda * L_g (added by its
    ``ShallowEmbeddingGate``); ``compile()`` takes the per-pixel defaults."""


def _drn_builder(variant, blocks, **kwargs):
    variant = variant.upper() if isinstance(variant, str) else variant  # "a" or "A"
    _check_variant(50, variant)
    return GATED_ROLES[variant], lambda conditioner, **kw: drn_a_backbone(
        depth=50, blocks=blocks, conditioner=conditioner, **kwargs, **kw
    )


@register("deepmoe_drn_a50", preprocessing="unit", family="deepmoe", task="segmentation", paper=DEEPMOE)
def deepmoe_drn_a50(
    wide=True,
    variant="A",
    input_shape=None,
    classes=19,
    gate_l1_weight=0.01,
    embedding_dim=64,
    num_convs=5,
    classifier_activation="softmax",
    bn_momentum=0.9,
    blocks=None,
    name=None,
):
    """Wide- (``wide=True``) or narrow-DeepMoE DRN-A-50 for semantic segmentation: outputs
    ``(batch, height, width, classes)`` per-pixel probabilities; ``fit`` on ``(image, mask)``.

    ``input_shape``: default ``(512, 512, 3)``, height and width divisible by 8 (the paper trained
    on 832x832 crops of CityScapes). ``classes``: default 19 (CityScapes). ``gate_l1_weight``:
    lambda. ``num_convs``: the shallow embedding's stride-2 convolutions (5, ImageNet-sized).
    ``blocks``: blocks of stages 2-5 other than ResNet-50's ``(3, 4, 6, 3)`` (``(1, 1, 2, 2)``: a
    small DRN-A with both dilations, for tests and quick runs).
    """
    roles, build = _drn_builder(
        variant,
        blocks,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        bn_momentum=bn_momentum,
    )
    suffix = "a" if roles == GATED_ROLES["A"] else "b"
    gate = _gate_arguments(classes, embedding_dim, num_convs, gate_l1_weight, 0.0)
    return deepmoe_model(
        build,
        roles,
        widen=2.0 if wide else 1.0,
        gate=gate,
        name=name or f"{'wide' if wide else 'narrow'}_deepmoe_drn_a50_{suffix}",
        task=DeepMoESegmentationTask,
    )


@register("drn_a50", preprocessing="unit", family="plain", task="segmentation", paper=DEEPMOE)
def drn_a50(
    wide=False,
    variant="A",
    input_shape=None,
    classes=19,
    classifier_activation="softmax",
    bn_momentum=0.9,
    blocks=None,
    name=None,
):
    """The plain DRN-A-50 of Table 5 (``wide=True``: "wide-DRN-A-50", the layers ``variant``
    gates doubled), a ``SegmentationTask``; arguments as ``deepmoe_drn_a50``."""
    roles, build = _drn_builder(
        variant,
        blocks,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        bn_momentum=bn_momentum,
    )
    network = build(ChannelGateConditioner(_gated(roles), widen=2.0 if wide else 1.0), name=None)
    return SegmentationTask(
        network.inputs, network.outputs[0], name=name or f"{'wide_' if wide else ''}drn_a50"
    )
