"""DeepMoE (Wang et al., "Deep Mixture of Experts via Shallow Embedding"): per-example channel
gates computed once from the raw image, and convolutions whose input channels they scale.

- ``ShallowEmbeddingGate`` (a ``Router``): ``num_convs`` stride-2 3x3 convolutions on the image,
  global pooling and a softmax to the latent mixture weights ``e`` (section 3.3), and one head per
  gated layer, ``g_l = ReLU(W_g^l e)`` (eq. 6). Called on an image it returns the list of gates.
  It adds ``gate_l1_weight * gate_l1(gates)`` (lambda * L_g, eq. 8: the elementwise L1 of every
  gate, averaged over the batch). With ``embedding_classes`` it also holds the embedding
  classifier; called with ``return_embedding_predictions=True`` it returns ``(gates,
  probabilities)`` and the task adds ``embedding_loss_weight * cross-entropy`` (mu * L_e), since
  only the task sees the labels.
- ``ChannelGate``: a ``Conv2D`` whose input channels are scaled by a gate before the convolution,
  ``z = sum_i g_i K_i * x_i`` (eqs. 3-5): a zero gate removes that channel's contribution
  exactly. It records the fraction of its gates that are zero and the multiply-adds the batch
  needed given them (``keras_routing.metrics``).

Procedure 1's second stage (frozen embedding and heads, both loss weights 0) is a switch the
gate holds, ``frozen`` (a non-trainable variable), set by
``keras_routing.training.deepmoe.Procedure1``: read inside the compiled step, so it takes effect
at once on every backend without retracing.
"""

import numbers

import keras
from keras import ops

from keras_routing import losses
from keras_routing import metrics as routing_metrics
from keras_routing.layers.router import Router
from keras_routing.validation import integer


def _check_gate_channels(gate_channels):
    if isinstance(gate_channels, (str, bytes)) or not isinstance(gate_channels, (list, tuple)):
        raise ValueError(  # noqa: TRY004 (DESIGN.md: a ValueError naming the argument)
            f"`gate_channels` must be a non-empty list of channel counts, one per gated layer, "
            f"got {gate_channels!r}."
        )
    if not gate_channels:
        raise ValueError("`gate_channels` must list at least one gated layer, got an empty list.")
    return [integer(c, "gate_channels", owner="ShallowEmbeddingGate") for c in gate_channels]


def _check_weight(value, name):
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"ShallowEmbeddingGate: `{name}` must be >= 0, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_routing")
class ShallowEmbeddingGate(Router):
    """The shallow embedding network and the multi-headed sparse gating network of DeepMoE.

    Args:
        gate_channels: one width per gated layer (the input channels of each ``ChannelGate``).
        embedding_dim: filters of each embedding convolution, and the size of ``e``.
        num_convs: stride-2 3x3 convolutions (the paper: 4 for CIFAR-sized, 5 for ImageNet-sized).
        embedding_classes: classes of the embedding classifier (None: no classifier, mu unused).
        gate_l1_weight: lambda (>= 0, a number or a schedule); the paper used [0.001, 8].
        embedding_loss_weight: mu (>= 0, a number or a schedule); the paper: 1 on CIFAR, 0 on
            ImageNet. Read by the task, which has the labels.
    Called on images ``(batch, height, width, channels)``, returns ``[g_1, ..., g_L]``, ``g_l`` of
    shape ``(batch, gate_channels[l])``, non-negative.
    """

    def __init__(
        self,
        gate_channels,
        embedding_dim=64,
        num_convs=4,
        embedding_classes=None,
        gate_l1_weight=0.01,
        embedding_loss_weight=1.0,
        **kwargs,
    ):
        self.gate_channels = _check_gate_channels(gate_channels)
        super().__init__(num_experts=sum(self.gate_channels), **kwargs)
        self.embedding_dim = integer(embedding_dim, "embedding_dim", owner="ShallowEmbeddingGate")
        self.num_convs = integer(num_convs, "num_convs", owner="ShallowEmbeddingGate")
        if embedding_classes is not None:
            embedding_classes = integer(embedding_classes, "embedding_classes", owner="ShallowEmbeddingGate")
        self.embedding_classes = embedding_classes
        self._gate_l1_weight = _check_weight(gate_l1_weight, "gate_l1_weight")
        self._embedding_loss_weight = _check_weight(embedding_loss_weight, "embedding_loss_weight")
        losses.add_loss_weight(self, "gate_l1_weight", gate_l1_weight)
        losses.add_loss_weight(self, "embedding_loss_weight", embedding_loss_weight)
        # Procedure 1's stage: 0 joint training, 1 embedding and heads frozen, losses off.
        self.frozen = self.add_weight(
            name="frozen", shape=(), dtype="float32", initializer="zeros", trainable=False, autocast=False
        )
        self.convs = [
            keras.layers.Conv2D(
                self.embedding_dim,
                3,
                strides=2,
                padding="same",
                activation="relu",
                name=f"embedding_conv{i + 1}",
                dtype=self.dtype_policy,
            )
            for i in range(self.num_convs)
        ]
        self.heads = [
            keras.layers.Dense(c, use_bias=False, name=f"gate_head{i + 1}", dtype=self.dtype_policy)
            for i, c in enumerate(self.gate_channels)
        ]
        self.classifier = (
            keras.layers.Dense(self.embedding_classes, name="embedding_classifier", dtype=self.dtype_policy)
            if self.embedding_classes
            else None
        )

    @property
    def embedding_layers(self):
        """The layers Procedure 1 freezes: the embedding convolutions, the gate heads and the
        embedding classifier."""
        return [*self.convs, *self.heads, *([self.classifier] if self.classifier else [])]

    def build(self, input_shape):
        self.check_input_shape(input_shape, min_rank=4)
        shape = tuple(input_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        for head in self.heads:
            head.build((shape[0], self.embedding_dim))
        if self.classifier:
            self.classifier.build((shape[0], self.embedding_dim))

    def embedding(self, images):
        """The latent mixture weights ``e``: ``(batch, embedding_dim)``, a softmax (section 3.3)."""
        x = images
        for conv in self.convs:
            x = conv(x)
        return ops.softmax(self.global_features(x), axis=-1)

    def _frozen(self, x):
        # Frozen: the same values, no gradient to the embedding or the heads.
        frozen = ops.cast(self.frozen, x.dtype)
        return frozen * ops.stop_gradient(x) + (1 - frozen) * x

    def call(self, images, training=None, return_embedding_predictions=False):
        e = self.embedding(images)
        gates = [self._frozen(ops.relu(head(e))) for head in self.heads]
        # lambda * L_g; off once frozen (Procedure 1, line 10).
        active = 1.0 - ops.convert_to_tensor(self.frozen)
        losses.add_weighted_loss(self, "gate_l1_weight", active * losses.gate_l1(gates), training)
        if not return_embedding_predictions:
            return gates
        if self.classifier is None:
            raise ValueError(
                "ShallowEmbeddingGate: `return_embedding_predictions=True` needs `embedding_classes`."
            )
        return gates, self._frozen(ops.softmax(self.classifier(e), axis=-1))

    def compute_output_spec(self, images, training=None, return_embedding_predictions=False):
        batch = images.shape[0]
        gates = [keras.KerasTensor((batch, c), dtype=self.compute_dtype) for c in self.gate_channels]
        if not return_embedding_predictions:
            return gates
        return gates, keras.KerasTensor((batch, self.embedding_classes or 0), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], c) for c in self.gate_channels]

    def embedding_loss(self, y_true, probabilities, sample_weight=None):
        """``mu * L_e``: the embedding classifier's cross-entropy (integer or one-hot labels),
        weighted by ``embedding_loss_weight`` at this step and 0 once frozen."""
        if y_true is None:
            raise ValueError(
                f"{self.name}: the embedding loss (embedding_loss_weight, mu) needs the labels: "
                "call fit with targets y, or set `embedding_loss_weight=0`."
            )
        probabilities = ops.cast(probabilities, "float32")
        if len(y_true.shape) == len(probabilities.shape):
            ce = keras.losses.categorical_crossentropy(ops.cast(y_true, "float32"), probabilities)
        else:
            ce = keras.losses.sparse_categorical_crossentropy(y_true, probabilities)
        if sample_weight is not None:
            ce = ce * ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(ce))
        weight = ops.convert_to_tensor(self.embedding_loss_weight) * (
            1.0 - ops.convert_to_tensor(self.frozen)
        )
        return weight * ops.mean(ce)

    def get_config(self):
        config = super().get_config()
        config.pop("num_experts")
        return {
            **config,
            "gate_channels": list(self.gate_channels),
            "embedding_dim": self.embedding_dim,
            "num_convs": self.num_convs,
            "embedding_classes": self.embedding_classes,
            "gate_l1_weight": _serialise(self._gate_l1_weight),
            "embedding_loss_weight": _serialise(self._embedding_loss_weight),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("gate_l1_weight", "embedding_loss_weight"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _serialise(weight):
    if isinstance(weight, numbers.Real):
        return float(weight)
    return keras.saving.serialize_keras_object(weight)


@keras.saving.register_keras_serializable(package="keras_routing")
class ChannelGate(keras.layers.Conv2D):
    """A ``Conv2D`` whose input channels are scaled by a per-example gate (DeepMoE, eqs. 3-5).

    ``layer(x, gate)``: ``x`` ``(batch, height, width, channels)``, ``gate`` ``(batch,
    channels)``; the output is ``Conv2D(x * gate[:, None, None, :])``. Arguments as ``Conv2D``
    (``groups`` must be 1). Statistics: ``zero_fraction`` (the fraction of this batch's gates
    that are exactly zero) and ``realised_madds`` (the multiply-adds per example the batch
    needed: the convolution's, times the fraction of its input channels whose gate is non-zero).
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.groups != 1:
            raise ValueError(f"ChannelGate: `groups` must be 1, got {self.groups!r}.")
        if self.data_format != "channels_last":
            raise ValueError(f"ChannelGate: `data_format` must be 'channels_last', got {self.data_format!r}.")
        routing_metrics.add_statistic(self, "zero_fraction")
        routing_metrics.add_statistic(self, "realised_madds")

    def build(self, inputs_shape, gate_shape=None):
        super().build(inputs_shape)

    # Conv2D saves its kernel and bias only; the statistics are weights too (as Layer saves them).
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def _check_gate(self, x_shape, gate_shape):
        if len(gate_shape) != 2 or gate_shape[-1] != x_shape[-1]:
            raise ValueError(
                f"{self.name}: the gate must have shape (batch, {x_shape[-1]}), one value per input "
                f"channel, got {tuple(gate_shape)}: gate widths must match the gated layers' channels."
            )

    def call(self, inputs, gate):
        self._check_gate(inputs.shape, gate.shape)
        gate = ops.cast(gate, inputs.dtype)
        outputs = super().call(inputs * gate[:, None, None, :])
        open_channels = ops.mean(ops.cast(ops.not_equal(gate, 0), "float32"), axis=-1)
        routing_metrics.record_statistic(self, "zero_fraction", routing_metrics.zero_fraction(gate))
        static = float(self.kernel_size[0] * self.kernel_size[1] * inputs.shape[-1] * self.filters)
        positions = ops.cast(ops.shape(outputs)[1] * ops.shape(outputs)[2], "float32")
        routing_metrics.record_statistic(self, "realised_madds", static * positions * ops.mean(open_channels))
        return outputs

    def compute_output_shape(self, input_shape, gate_shape=None):
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, gate):
        self._check_gate(inputs.shape, gate.shape)
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
