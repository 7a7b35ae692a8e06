"""DeepMoE (Wang et al., "Deep Mixture of Experts via Shallow Embedding"): channel-gated ResNets
and VGG16-BN, wide (the gated layers' channels doubled) or narrow (kept), and their plain baselines.

    model = keras_routing.zoo.deepmoe_resnet(56, wide=True, classes=100, input_shape=(32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))   # loss and accuracy: defaults
    model.fit(x, y, epochs=350, callbacks=[keras_routing.training.Procedure1(n0=270)])

Gated layers (Fig. 2): the first 3x3 of each basic block (ResNet-18/34 and the CIFAR ResNets);
in a bottleneck, variant A the 1x1 reduction and the 3x3, variant B the 3x3 only; every
convolution but the last in VGG16. A gated layer's output channels are scaled, per example, by
its gate before the next convolution (``ChannelGate``). The model is a ``DeepMoETask``: its
outputs are the class probabilities and, when the embedding classifier is on
(``embedding_loss_weight`` > 0), the embedding classifier's; ``fit(x, y)`` adds lambda * L_g
and mu * L_e to the cross-entropy.
"""

import keras
from keras import ops

from keras_routing.layers.channel_gates import ShallowEmbeddingGate
from keras_routing.models.backbones.resnet import resnet_backbone
from keras_routing.models.backbones.resnet_basic import IMAGENET_BLOCKS, basic_resnet_backbone
from keras_routing.models.backbones.vgg import VGG16_FILTERS, WIDEN, vgg16_backbone
from keras_routing.models.conditioners import ChannelGateConditioner
from keras_routing.models.task import Task
from keras_routing.validation import is_integer
from keras_routing.zoo.registry import register

__all__ = ["DeepMoETask", "deepmoe_resnet", "deepmoe_vgg16", "resnet_baseline", "vgg16_baseline"]

DEEPMOE = "deepmoe-shallow-embedding.md"
VARIANTS = ("A", "B")
GATED_ROLES = {
    "basic": ("basic_first",),
    "A": ("bottleneck_reduce", "bottleneck_3x3"),
    "B": ("bottleneck_3x3",),
}


@keras.saving.register_keras_serializable(package="keras_routing")
class DeepMoETask(Task):
    """A DeepMoE classifier: the cross-entropy of its predictions (the compiled loss, sparse
    categorical by default), the gates' lambda * L_g (added by the ``ShallowEmbeddingGate``) and,
    with the embedding classifier, mu * L_e from the same labels. Outputs: the predictions, or
    ``[predictions, embedding predictions]`` with the embedding classifier."""

    @property
    def gate(self):
        """The model's ``ShallowEmbeddingGate``."""
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, ShallowEmbeddingGate):
                return layer
        raise ValueError(f"{self.name} has no ShallowEmbeddingGate.")

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy()

    def default_metrics(self):
        return ["accuracy"]

    def default_optimizer(self):
        return keras.optimizers.SGD(0.1, momentum=0.9)

    def _split(self, y_pred):
        if isinstance(y_pred, (list, tuple)) and len(y_pred) == 2:
            return y_pred[0], y_pred[1]
        return y_pred, None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        predictions, embedding = self._split(y_pred)
        if y is None and embedding is not None:
            self.gate.embedding_loss(None, embedding)  # the ValueError: the labels are missing
        total = super().compute_loss(x, y, predictions, sample_weight, training=training)
        if embedding is not None:
            total = total + self.gate.embedding_loss(y, embedding, sample_weight)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self._split(y_pred)[0], sample_weight)


def _gated(roles):
    return lambda site: site.role in roles


def _check_variant(depth, variant):
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}.")
    if depth != 50 and variant != "A":
        raise ValueError(f"`variant` applies to the bottleneck ResNet-50 only, got variant={variant!r}.")


def _resnet_builder(depth, variant, **kwargs):
    if not is_integer(depth):
        raise ValueError(f"`depth` must be 18, 34, 50 or a CIFAR depth 6n + 2 (56, 110), got {depth!r}.")
    if depth == 50:
        return GATED_ROLES[variant], lambda conditioner, **kw: resnet_backbone(
            depth=50, conditioner=conditioner, stride_on="1x1", **kwargs, **kw
        )
    cifar = depth not in IMAGENET_BLOCKS
    return GATED_ROLES["basic"], lambda conditioner, **kw: basic_resnet_backbone(
        depth=depth, cifar=cifar, conditioner=conditioner, **kwargs, **kw
    )


def deepmoe_model(build, roles, *, widen, gate, name, task=None):
    """Builds ``build(conditioner, name=...)`` twice: once recording the gated widths, then with
    the ``ShallowEmbeddingGate`` they give; returns the ``DeepMoETask`` (or ``task``, a subclass
    of it: the segmentation task of ``deepmoe_drn_a50``)."""
    recording = ChannelGateConditioner(_gated(roles), widen=widen)
    build(recording, name=name)
    conditioner = ChannelGateConditioner(
        _gated(roles), widen=widen, gate_channels=recording.recorded, gate=gate
    )
    network = build(conditioner, name=name)
    conditioner.check_complete()
    outputs = network.outputs[0]
    if conditioner.embedding_predictions is not None:
        outputs = [outputs, conditioner.embedding_predictions]
    return (task or DeepMoETask)(network.inputs, outputs, name=name)


def _gate_arguments(classes, embedding_dim, num_convs, gate_l1_weight, embedding_loss_weight):
    # The embedding classifier exists when mu can be non-zero (the paper: mu = 1 on CIFAR).
    has_classifier = not (isinstance(embedding_loss_weight, (int, float)) and embedding_loss_weight == 0)
    return {
        "embedding_dim": embedding_dim,
        "num_convs": num_convs,
        "embedding_classes": classes if has_classifier else None,
        "gate_l1_weight": gate_l1_weight,
        "embedding_loss_weight": embedding_loss_weight,
    }


@register("deepmoe_resnet", preprocessing="unit", family="deepmoe", paper=DEEPMOE)
def deepmoe_resnet(
    depth=56,
    wide=True,
    variant="A",
    input_shape=None,
    classes=None,
    gate_l1_weight=0.01,
    embedding_loss_weight=None,
    embedding_dim=64,
    num_convs=None,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """Wide- or narrow-DeepMoE ResNet: ``depth`` 18 or 34 (basic blocks, 224x224), 50
    (bottleneck ``variant`` "A" or "B", ResNet v1 as ``keras.applications``), or a CIFAR depth 6n + 2 (56, 110; 32x32).

    ``wide``: double the gated layers' channels (wide-DeepMoE) or keep them (narrow).
    ``gate_l1_weight``: lambda (the paper: 0.001 to 8). ``embedding_loss_weight``: mu (default 1
    for the CIFAR nets, 0 for ImageNet, as in the paper; 0 leaves the embedding classifier out).
    ``num_convs``: embedding convolutions (default 4 for CIFAR nets, 5 otherwise).
    ``classes``: default 10 for the CIFAR nets, 1000 otherwise.
    """
    _check_variant(depth, variant)
    cifar = is_integer(depth) and depth not in (18, 34, 50)
    classes = classes if classes is not None else (10 if cifar else 1000)
    if embedding_loss_weight is None:
        embedding_loss_weight = 1.0 if cifar else 0.0
    roles, build = _resnet_builder(
        depth,
        variant,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        bn_momentum=bn_momentum,
    )
    gate = _gate_arguments(
        classes, embedding_dim, num_convs or (4 if cifar else 5), gate_l1_weight, embedding_loss_weight
    )
    kind = "wide" if wide else "narrow"
    suffix = f"_{variant.lower()}" if depth == 50 else ""
    return deepmoe_model(
        build,
        roles,
        widen=2.0 if wide else 1.0,
        gate=gate,
        name=name or f"{kind}_deepmoe_resnet{depth}{suffix}",
    )


@register("deepmoe_resnet_baseline", preprocessing="unit", family="plain", paper=DEEPMOE)
def resnet_baseline(
    depth=56,
    wide=False,
    variant="A",
    input_shape=None,
    classes=None,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """The plain baseline of ``deepmoe_resnet``: the same network without gates; ``wide=True``
    doubles the same layers (the paper's wide baselines, e.g. "wide-DRN-A-50")."""
    _check_variant(depth, variant)
    cifar = is_integer(depth) and depth not in (18, 34, 50)
    classes = classes if classes is not None else (10 if cifar else 1000)
    roles, build = _resnet_builder(
        depth,
        variant,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        bn_momentum=bn_momentum,
    )
    conditioner = ChannelGateConditioner(_gated(roles), widen=2.0 if wide else 1.0)
    return build(conditioner, name=name or f"{'wide_' if wide else ''}resnet{depth}")


@register("deepmoe_vgg16", preprocessing="unit", family="deepmoe", paper=DEEPMOE)
def deepmoe_vgg16(
    widen="all",
    input_shape=(32, 32, 3),
    classes=100,
    gate_l1_weight=0.01,
    embedding_loss_weight=1.0,
    embedding_dim=64,
    num_convs=4,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """DeepMoE VGG16 with batch normalisation (CIFAR-style: one 512-unit classifier). ``widen``:
    Table 6's channel configuration, ``"all"`` (W13-All), ``"high"`` (W1-High), ``"mid"``
    (W1-Mid), ``"low"`` (W4-Low), or ``None`` (the standard channels: narrow-DeepMoE). Every
    convolution but the last is gated (its output channels gate the next one)."""
    filters = WIDEN.get(widen) if widen is not None else VGG16_FILTERS
    if widen is not None and widen not in WIDEN:
        raise ValueError(f"`widen` must be one of {tuple(WIDEN)} or None, got {widen!r}.")
    gate = _gate_arguments(classes, embedding_dim, num_convs, gate_l1_weight, embedding_loss_weight)

    def build(conditioner, name):
        return vgg16_backbone(
            filters=filters,
            conditioner=conditioner,
            input_shape=input_shape,
            classes=classes,
            classifier_activation=classifier_activation,
            bn_momentum=bn_momentum,
            name=name,
        )

    roles = ("vgg_gated",)
    return deepmoe_model(
        build, roles, widen=1.0, gate=gate, name=name or f"deepmoe_vgg16_{widen or 'narrow'}"
    )


@register("deepmoe_vgg16_baseline", preprocessing="unit", family="plain", paper=DEEPMOE)
def vgg16_baseline(
    widen=None,
    input_shape=(32, 32, 3),
    classes=100,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """VGG16-BN (CIFAR-style) with the standard channels or Table 6's ``widen`` configuration,
    no gates."""
    if widen is not None and widen not in WIDEN:
        raise ValueError(f"`widen` must be one of {tuple(WIDEN)} or None, got {widen!r}.")
    return vgg16_backbone(
        filters=WIDEN[widen] if widen else VGG16_FILTERS,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        bn_momentum=bn_momentum,
        name=name or f"vgg16_{widen or 'bn'}",
    )


def gate_values(model, x, batch_size=64):
    """The gates of ``model`` (a ``DeepMoETask``) on inputs ``x``: a list of numpy arrays
    ``(examples, channels)``, one per gated layer."""
    probe = keras.Model(model.inputs, _gate_outputs(model))
    return [
        ops.convert_to_numpy(v)
        for v in keras.tree.flatten(probe.predict(x, batch_size=batch_size, verbose=0))
    ]


def _gate_outputs(model):
    gate = model.gate
    node = gate._inbound_nodes[0]
    outputs = keras.tree.flatten(node.outputs)
    return outputs[: len(gate.gate_channels)]
