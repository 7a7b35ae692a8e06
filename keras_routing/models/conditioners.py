"""Conditioners: what a backbone asks, at every convolution, dense layer and block, how to build it.

A backbone (``keras_routing.models.backbones``) lays out a network with ``keras.applications``'
layer names and leaves each conditioned layer to its conditioner, describing where it is with a
``Site``. The order of calls, for each block of the network (the stem, each separable / inverted
residual / bottleneck block, a head convolution, the classifier):

1. ``start_block(x, site=block_site)`` with the block's input; ``block_site.layers`` lists the
   sites of the conditioned layers the block will hold, so a conditioner can prepare what they
   share before any of them is built.
2. ``conv`` / ``depthwise`` / ``dense`` for each of those layers, in order.
3. For a block with a skip connection, the block itself goes through ``block(x, residual,
   shortcut=..., name=..., site=block_site)``: ``residual`` and ``shortcut`` are functions of the
   block input that build the residual branch and the skip path (identity or projection); the
   default sums them (``shortcut(x) + residual(x)``), building the skip path first.
4. DenseNets (``backbones.densenet_cifar``): each dense layer goes through ``concat_block(x,
   layer, name=..., site=...)`` (default ``concat([x, layer(x)])``), and the end of a dense block
   that may hold an early exit through ``exit_point(x, rest, classifier=..., name=...,
   site=...)`` (default ``rest(x)``: no exit).

Implementations:

- ``Plain``: Keras layers (``Conv2D``, ``DepthwiseConv2D``, ``Dense``). A plain backbone is
  layer for layer ``keras.applications``' network.
- ``CondConvConditioner(experts, routing=..., which=...)``: CondConv layers where
  ``which(site)`` holds, routed as ``routing`` says (``keras_routing.models.routing_plan``: one
  routing function per block from the block input by default, computed in ``start_block``).
  The zoo's ``cc_*`` factories express the paper's choices as ``which`` predicates.

How the later families plug in (each a subclass overriding only what it changes):

- ``RoutedExpertsConditioner`` (noisy top-k routing, ``routing_resnet50``): ``conv`` builds a
  ``NoisyTopKRouter`` over the block input and a ``RoutedExperts`` layer where
  ``site.role == "bottleneck_3x3" and not site.downsamples``; Plain elsewhere.
- ``ChannelGateConditioner`` (DeepMoE, ``deepmoe_resnet`` / ``deepmoe_vgg16``): built with the
  shallow embedding of the raw image (a ``ShallowEmbeddingGate`` computed once, before the
  backbone); ``conv`` builds the plain convolution and multiplies its output channels by that
  layer's gates, for the roles its variant gates (A: ``bottleneck_reduce`` and
  ``bottleneck_3x3``; B: ``bottleneck_3x3``). Its task model collects every gate for the losses.
- ``BypassGateConditioner`` (probabilistic gates, ``gated_resnet``): ``block`` computes the gate
  ``z`` from the block input and returns ``shortcut(x) + z * residual(x)`` through a
  ``GatedResidual`` layer (which skips ``residual`` when the gate is closed); layers stay Plain.
  Its ``concat_block`` gates a DenseNet layer as a mask (``GatedResidual(residual=False)``);
  ``EarlyExitConditioner`` (``gated_densenet_cifar``) adds an ``EarlyExit`` at each
  ``exit_point``.

A conditioner is used for one network: it may keep state between calls (CondConv's shared
routing weights), so build a new one for each model.
"""

import dataclasses

import keras

from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D
from keras_routing.models.routing_plan import RoutingPlan
from keras_routing.validation import integer


@dataclasses.dataclass(frozen=True)
class Site:
    """Where a conditioned layer, or a block, sits in a backbone.

    Attributes:
        kind: ``"conv"``, ``"depthwise"``, ``"dense"`` for a layer; ``"block"`` for a block.
        role: what it does. Layers: ``"stem"``, ``"depthwise"``, ``"pointwise"`` (MobileNetV1),
            ``"expand"``, ``"depthwise"``, ``"project"``, ``"head"`` (MobileNetV2's final 1x1),
            ``"shortcut"``, ``"bottleneck_reduce"``, ``"bottleneck_3x3"``, ``"bottleneck_expand"``
            (ResNet), ``"classifier"``. Blocks: ``"stem"``, ``"separable"``,
            ``"inverted_residual"``, ``"bottleneck"``, ``"head"``, ``"classifier"``.
        index: the block's position in the network: 1 is the stem, the classifier is last. For
            MobileNetV1 this is the CondConv paper's layer numbering (2-14 the separable blocks,
            15 the classifier). A layer has the index of its block.
        block: the block's name (``"conv_block_6"``, ``"block_11"``, ``"conv5_block1"``,
            ``"predictions"``); the stem is ``"conv1"`` (``"Conv1"`` in MobileNetV2).
        stage: the block's resolution stage: its output stride is ``2 ** stage``.
        strides: the layer's stride (for a block, the block's: 2 where it downsamples).
        layers: for a block, the sites of the conditioned layers it holds, in build order.
        dilation: the dilation rate of the spatial (kernel > 1) convolutions of this layer or
            block (1 but in a dilated network: DRN's stages 4 and 5); a block's layers inherit it.
    """

    kind: str
    role: str
    index: int
    block: str
    stage: int
    strides: int = 1
    layers: tuple = ()
    dilation: int = 1

    @property
    def downsamples(self):
        """Whether this layer (or block) reduces the resolution."""
        return self.strides > 1

    def layer(self, kind, role, strides=1):
        """The site of a layer of this block."""
        return Site(kind, role, self.index, self.block, self.stage, strides, dilation=self.dilation)

    def holding(self, *layers):
        """This block's site, listing the layers it holds."""
        return dataclasses.replace(self, layers=tuple(layers))


def dilation_rate(site, kernel_size):
    """The dilation of a convolution of ``kernel_size`` at ``site``: the site's for a spatial
    kernel, 1 for a 1x1 (where dilation changes nothing)."""
    size = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
    return 1 if all(k == 1 for k in size) else site.dilation


class Conditioner:
    """Builds each conditioned layer and block of a backbone; this base builds plain Keras layers.

    Subclasses override the calls they change (see the module docstring for the order).
    """

    def start_block(self, x, *, site):
        """Called with the input ``x`` of each block before its layers are built."""

    def conv(self, x, filters, kernel_size, *, name, site, strides=1, padding="same", use_bias=False):
        layer = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            dilation_rate=dilation_rate(site, kernel_size),
            name=name,
        )
        return layer(x)

    def depthwise(self, x, *, name, site, kernel_size=3, strides=1, padding="same"):
        layer = keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding=padding, use_bias=False, name=name
        )
        return layer(x)

    def dense(self, x, units, *, name, site, activation=None):
        return keras.layers.Dense(units, activation=activation, name=name)(x)

    def block(self, x, residual, *, shortcut, name, site):
        """A block with a skip connection: ``shortcut(x) + residual(x)``, summed by an ``Add``
        layer named ``name``."""
        skip = shortcut(x)
        return keras.layers.Add(name=name)([skip, residual(x)])

    def concat_block(self, x, layer, *, name, site):
        """A DenseNet layer: ``concat([x, layer(x)])`` along the channels, by a
        ``Concatenate`` named ``name`` (``layer`` builds the new features from ``x``)."""
        return keras.layers.Concatenate(name=name)([x, layer(x)])

    def exit_point(self, x, rest, *, classifier, name, site):
        """The end of a stage where an early exit may go: ``rest(x)`` builds the rest of the
        network from ``x`` (its prediction); ``classifier(x)`` would build an intermediate
        classifier. The base builds no exit: ``rest(x)``."""
        return rest(x)


class Plain(Conditioner):
    """Every layer a Keras layer and every block a plain sum: the ``keras.applications`` network."""


class CondConvConditioner(Conditioner):
    """CondConv layers at the sites ``which`` selects, plain layers elsewhere.

    Args:
        experts: experts per CondConv layer.
        routing: how routing weights are computed and shared (``"per_block"``, ``"single"``,
            ``"partially_shared"``, ``"hierarchical"``, a dict or a ``Routing`` layer: see
            ``keras_routing.models.routing_plan``).
        which: predicate of a layer ``Site``: whether it is CondConv (default: every layer).
            A block computes routing weights when any of its layers is CondConv.

    Each CondConv layer keeps the name of the plain layer it replaces, so weights move between a
    baseline and its CondConv version by name (``keras_routing.zoo.upcycle``).
    """

    def __init__(self, experts, *, routing="per_block", which=None):
        self.experts = integer(experts, "experts")
        self.plan = RoutingPlan(self.experts, routing)
        self.which = which if which is not None else (lambda site: True)

    def start_block(self, x, *, site):
        if any(self.which(layer) for layer in site.layers):
            self.plan.start_block(x, site.block)

    def _apply(self, layer, x):
        out_channels = layer.compute_output_shape(tuple(x.shape))[-1]
        return layer(x, routing_weights=self.plan.weights(out_channels, layer.name))

    def conv(self, x, filters, kernel_size, *, name, site, strides=1, padding="same", use_bias=False):
        if not self.which(site):
            return super().conv(
                x,
                filters,
                kernel_size,
                name=name,
                site=site,
                strides=strides,
                padding=padding,
                use_bias=use_bias,
            )
        layer = CondConv2D(
            filters,
            kernel_size,
            self.experts,
            routing=None,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            name=name,
        )
        return self._apply(layer, x)

    def depthwise(self, x, *, name, site, kernel_size=3, strides=1, padding="same"):
        if not self.which(site):
            return super().depthwise(
                x, name=name, site=site, kernel_size=kernel_size, strides=strides, padding=padding
            )
        layer = CondDepthwiseConv2D(
            kernel_size,
            self.experts,
            routing=None,
            strides=strides,
            padding=padding,
            use_bias=False,
            name=name,
        )
        return self._apply(layer, x)

    def dense(self, x, units, *, name, site, activation=None):
        if not self.which(site):
            return super().dense(x, units, name=name, site=site, activation=activation)
        layer = CondDense(units, self.experts, activation=activation, routing=None, name=name)
        return self._apply(layer, x)


class ChannelGateConditioner(Conditioner):
    """DeepMoE's gated layers (``keras_routing.layers.channel_gates``) at the sites ``which``
    selects; plain layers elsewhere.

    A gated layer is built as a plain convolution with ``widen`` times its filters (wide-DeepMoE:
    2; narrow-DeepMoE: 1); its output channels (after their batch normalisation and ReLU) are the
    experts of the next convolution of the block, built as a ``ChannelGate`` that scales them by
    that layer's gate (eq. 3). The gates come from one ``ShallowEmbeddingGate`` on the raw image,
    computed in the stem's ``start_block``.

    ``gate_channels=None`` records: the network is built plain (widened), and ``recorded`` lists
    the gated widths, for the ``ShallowEmbeddingGate`` of the second, real build
    (``deepmoe_backbone`` in ``keras_routing.zoo.deepmoe`` does both). ``gate``: keyword arguments
    of the ``ShallowEmbeddingGate`` (``embedding_dim``, ``num_convs``, ``embedding_classes``,
    ``gate_l1_weight``, ``embedding_loss_weight``). After the build, ``gates`` are its outputs and
    ``embedding_predictions`` the embedding classifier's (None without ``embedding_classes``).
    """

    def __init__(self, which, *, widen=2.0, gate_channels=None, gate=None):
        from keras_routing.validation import number

        self.which = which
        self.widen = number(widen, "widen", at_least=1)
        self.gate_channels = None if gate_channels is None else list(gate_channels)
        self.gate_arguments = dict(gate or {})
        self.recorded = []
        self.gate_layer = None
        self.gates = None
        self.embedding_predictions = None
        self._pending = None

    def start_block(self, x, *, site):
        # A pending gate stays pending across blocks: in VGG the next convolution is in the next block.
        if site.role != "stem" or self.gate_channels is None or self.gates is not None:
            return
        from keras_routing.layers.channel_gates import ShallowEmbeddingGate

        self.gate_layer = ShallowEmbeddingGate(
            self.gate_channels, name="shallow_embedding_gate", **self.gate_arguments
        )
        if self.gate_layer.embedding_classes:
            self.gates, self.embedding_predictions = self.gate_layer(x, return_embedding_predictions=True)
        else:
            self.gates = self.gate_layer(x)

    def conv(self, x, filters, kernel_size, *, name, site, strides=1, padding="same", use_bias=False):
        from keras_routing.layers.channel_gates import ChannelGate

        consumer, self._pending = self._pending, None
        gated = self.which(site)
        if gated:
            filters = max(1, round(filters * self.widen))
        if consumer is not None:
            layer = ChannelGate(
                filters,
                kernel_size,
                strides=strides,
                padding=padding,
                use_bias=use_bias,
                dilation_rate=dilation_rate(site, kernel_size),
                name=name,
            )
            x = layer(x, self.gates[consumer])
        else:
            x = super().conv(
                x,
                filters,
                kernel_size,
                name=name,
                site=site,
                strides=strides,
                padding=padding,
                use_bias=use_bias,
            )
        if gated:
            index = len(self.recorded)
            if self.gate_channels is not None:
                if index >= len(self.gate_channels) or self.gate_channels[index] != filters:
                    expected = self.gate_channels[index] if index < len(self.gate_channels) else "no more"
                    raise ValueError(
                        f"`gate_channels` does not match the gated layers: gated layer {index + 1} "
                        f"('{name}') has {filters} channels, `gate_channels` gives {expected}."
                    )
                self._pending = index
            self.recorded.append(filters)
        return x

    def dense(self, x, units, *, name, site, activation=None):
        if self._pending is not None:
            raise ValueError(f"ChannelGateConditioner: a gated layer feeds the dense layer '{name}'.")
        return super().dense(x, units, name=name, site=site, activation=activation)

    def check_complete(self):
        """A ``ValueError`` unless every width of ``gate_channels`` had its gated layer."""
        if self.gate_channels is not None and len(self.recorded) != len(self.gate_channels):
            raise ValueError(
                f"`gate_channels` does not match the gated layers: {len(self.gate_channels)} widths "
                f"for {len(self.recorded)} gated layers."
            )


class BypassGateConditioner(Conditioner):
    """Probabilistic bypass gates on every residual block (``gated_resnet``): ``block`` builds the
    residual branch as a model ``F`` (``<block>_residual``) and returns ``shortcut(x) + z * F(x)``
    through a ``GatedResidual`` named as the plain block's ``Add``; layers stay Plain.

    The arguments are ``GatedResidual``'s (``gate``, ``granularity``, ``temperature``,
    ``threshold``, ``inference``); ``which(site)`` picks the gated blocks (default: all).
    ``gates`` lists each gated block's gates ``(batch, granularity)`` in order, the inputs of a
    ``GateTargetLoss``.
    """

    def __init__(
        self,
        *,
        gate="dependent",
        granularity=1,
        temperature=1.0,
        threshold=0.5,
        inference="threshold",
        which=None,
    ):
        self.options = dict(
            gate=gate,
            granularity=granularity,
            temperature=temperature,
            threshold=threshold,
            inference=inference,
        )
        self.which = which if which is not None else (lambda site: True)
        self.gates = []

    def block(self, x, residual, *, shortcut, name, site):
        if not self.which(site):
            return super().block(x, residual, shortcut=shortcut, name=name, site=site)
        from keras_routing.layers.gated_residual import GatedResidual

        skip = shortcut(x)
        inputs = keras.Input(tuple(x.shape[1:]), name=f"{site.block}_residual_input")
        function = keras.Model(inputs, residual(inputs), name=f"{site.block}_residual")
        layer = GatedResidual(function, name=name, **self.options)
        y, z = layer(x, shortcut=None if skip is x else skip, return_gates=True)
        self.gates.append(z)
        return y

    def concat_block(self, x, layer, *, name, site):
        """A DenseNet layer gated as a mask (section 5): ``concat([x, z * layer(x)])`` through a
        ``GatedResidual(..., residual=False)`` named ``<block>_gated`` (a closed gate's layer
        outputs zeros, concatenated as usual, and does not run at inference)."""
        if not self.which(site):
            return super().concat_block(x, layer, name=name, site=site)
        from keras_routing.layers.gated_residual import GatedResidual

        inputs = keras.Input(tuple(x.shape[1:]), name=f"{site.block}_layer_input")
        function = keras.Model(inputs, layer(inputs), name=f"{site.block}_layer")
        gated = GatedResidual(function, residual=False, name=f"{site.block}_gated", **self.options)
        y, z = gated(x, return_gates=True)
        self.gates.append(z)
        return keras.layers.Concatenate(name=name)([x, y])


class EarlyExitConditioner(BypassGateConditioner):
    """Early exit with probabilistic gates (``gated_densenet_cifar``; section 5, S2.4): at each
    ``exit_point`` an ``EarlyExit`` named ``name`` holding an ``ExitGate`` of ``exit_width``
    channels, the intermediate classifier (a model ``<name>_classifier``) and the rest of the
    network (a model ``<name>_rest``, holding the later exits); DenseNet layers gated as masks
    where ``which`` holds (``BypassGateConditioner``'s arguments; ``which`` default: all).

    ``exits`` lists the exit gates ``(batch, 1)`` in order and ``gates`` the layer gates, both
    as tensors of the outermost graph (the rest's are passed out through its ``EarlyExit``):
    the inputs of an ``ExitTargetLoss`` and a ``GateTargetLoss``.
    """

    def __init__(self, *, exit_width=128, exit_threshold=0.5, exit_temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.exit_options = {"width": exit_width, "temperature": exit_temperature}
        self.exit_threshold = exit_threshold
        self.exits = []

    def exit_point(self, x, rest, *, classifier, name, site):
        from keras_routing.layers.early_exit import EarlyExit, ExitGate

        gates, exits = len(self.gates), len(self.exits)
        inputs = keras.Input(tuple(x.shape[1:]), name=f"{name}_rest_input")
        prediction = rest(inputs)
        inner_exits, inner_gates = self.exits[exits:], self.gates[gates:]
        rest_model = keras.Model(inputs, [prediction, *inner_exits, *inner_gates], name=f"{name}_rest")
        head_input = keras.Input(tuple(x.shape[1:]), name=f"{name}_classifier_input")
        head = keras.Model(head_input, classifier(head_input), name=f"{name}_classifier")
        layer = EarlyExit(
            head,
            rest_model,
            gate=ExitGate(**self.exit_options, name=f"{name}_gate"),
            threshold=self.exit_threshold,
            inference=self.options["inference"],
            name=name,
        )
        outputs = layer(x, return_gates=True)
        self.exits[exits:] = outputs[1 : 2 + len(inner_exits)]
        self.gates[gates:] = outputs[2 + len(inner_exits) :]
        return outputs[0]
