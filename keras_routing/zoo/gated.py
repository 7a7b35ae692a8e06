"""Gated ResNets ("Deep networks with probabilistic gates", built on ConvNet-AIG): a
probabilistic bypass gate on every residual block, trained with a target-rate loss over every
gate of the model.

``gated_resnet(depth=50 | 101)`` is the ImageNet bottleneck ResNet (16 gates for ResNet-50, 33
for ResNet-101); ``gated_resnet_cifar(depth=110)`` the CIFAR ResNet (54 gates). Each is a
``keras_routing.Task`` whose output passes through a ``GateTargetLoss``: choosing ``loss`` and
``target_rate`` here is all ``fit`` needs (compile with the classification loss, e.g.
``model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])``). Gate open
rates are logged in ``fit`` as ``<block>_add_open_rate``, the model's mean as
``target_loss_open_rate``.
"""

from keras_routing.layers.gated_residual import GateTargetLoss
from keras_routing.models.backbones.resnet import resnet_backbone
from keras_routing.models.backbones.resnet_cifar import resnet_cifar_backbone
from keras_routing.models.conditioners import BypassGateConditioner
from keras_routing.models.task import Task
from keras_routing.zoo.papers import PROBABILISTIC_GATES
from keras_routing.zoo.registry import register

__all__ = ["gated_resnet", "gated_resnet_cifar"]


def _gated_task(backbone, conditioner, *, target_rate, loss, loss_weight, target_momentum, name):
    outputs = GateTargetLoss(
        target_rate, loss, weight=loss_weight, target_momentum=target_momentum, name="target_loss"
    )([backbone.output, *conditioner.gates])
    return Task(backbone.input, outputs, name=name)


def _conditioner(gate, granularity, temperature, threshold, inference):
    return BypassGateConditioner(
        gate=gate, granularity=granularity, temperature=temperature, threshold=threshold, inference=inference
    )


@register("gated_resnet", preprocessing="caffe", family="gates", paper=PROBABILISTIC_GATES)
def gated_resnet(
    depth=50,
    gate="dependent",
    target_rate=0.5,
    loss="per_batch",
    loss_weight=1.0,
    target_momentum=None,
    granularity=1,
    temperature=1.0,
    threshold=0.5,
    inference="threshold",
    input_shape=None,
    classes=1000,
    classifier_activation="softmax",
    stride_on="1x1",
    bn_momentum=0.9,
    name=None,
):
    """A bottleneck ResNet of ``depth`` 50 or 101 with a bypass gate on every residual block.

    ``gate``: ``"dependent"`` (AIG's gate) or ``"independent"``; ``target_rate``: a number in
    [0, 1] or a schedule (annealing: ``keras_routing.training.target_rate.annealing_schedule``);
    ``loss``: ``"per_batch"`` (the paper's), ``"per_gate"`` (AIG's) or their ``_const_quad``
    forms; ``loss_weight``: its weight; ``target_momentum``: S2.2's variable target rate (see
    ``GateTargetLoss``); ``granularity``, ``temperature``, ``threshold``, ``inference`` as for
    ``GatedResidual``. Other arguments as for ``resnet50``.
    """
    if depth not in (50, 101):
        raise ValueError(f"`depth` must be 50 or 101, got {depth!r}.")
    conditioner = _conditioner(gate, granularity, temperature, threshold, inference)
    backbone = resnet_backbone(
        depth=depth,
        conditioner=conditioner,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        stride_on=stride_on,
        bn_momentum=bn_momentum,
    )
    return _gated_task(
        backbone,
        conditioner,
        target_rate=target_rate,
        loss=loss,
        loss_weight=loss_weight,
        target_momentum=target_momentum,
        name=name or f"gated_resnet{depth}",
    )


@register("gated_resnet_cifar", preprocessing="mobilenet", family="gates", paper=PROBABILISTIC_GATES)
def gated_resnet_cifar(
    depth=110,
    gate="dependent",
    target_rate=0.5,
    loss="per_batch",
    loss_weight=1.0,
    target_momentum=None,
    granularity=1,
    temperature=1.0,
    threshold=0.5,
    inference="threshold",
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    width=1,
    bn_momentum=0.9,
    name=None,
):
    """The CIFAR ResNet of ``depth`` (``6n + 2``; 110 by default) with a bypass gate on every
    residual block; arguments as for ``gated_resnet`` (``width`` multiplies the filters)."""
    conditioner = _conditioner(gate, granularity, temperature, threshold, inference)
    backbone = resnet_cifar_backbone(
        depth=depth,
        conditioner=conditioner,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        width=width,
        bn_momentum=bn_momentum,
    )
    return _gated_task(
        backbone,
        conditioner,
        target_rate=target_rate,
        loss=loss,
        loss_weight=loss_weight,
        target_momentum=target_momentum,
        name=name or f"gated_resnet{depth}_cifar",
    )
