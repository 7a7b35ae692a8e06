"""The CondConv routing function: example-dependent expert weights from an input's global context."""

import keras
from keras import ops

from keras_routing.layers.router import Router
from keras_routing.validation import fraction, integer

ACTIVATIONS = ("sigmoid", "softmax")


@keras.saving.register_keras_serializable(package="keras_routing")
class Routing(Router):
    """Global average pooling, an optional ReLU hidden layer, a dense layer, sigmoid or softmax.

    The variants of the CondConv paper's routing ablations (Table 6, Fig. 3):

    - ``Routing(n)``: the paper's default, ``sigmoid(dense(mean_hw(x)))``, shape ``(batch, n)``.
    - ``activation="softmax"``: experts compete (normalised over the expert axis).
    - ``hidden_units=h``: the "Hidden" variants (``h = in_channels / 8, * 1, * 8``).
    - ``per_channel_units=f``: a weight per expert per output channel, shape ``(batch, n, f)``
      (the paper pairs it with a hidden layer of ``in_channels / 2``).
    - ``call(x, context=previous_weights)``: "Hierarchical" routing, which also sees the routing
      weights of the previous layer.

    Inputs of rank 4 (images) are averaged over height and width; inputs of rank 2 are
    already global features and are used as they are (``Router.global_features``).
    """

    def __init__(
        self,
        num_experts,
        activation="sigmoid",
        hidden_units=None,
        per_channel_units=None,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(num_experts, **kwargs)
        num_experts = self.num_experts
        if activation not in ACTIVATIONS:
            raise ValueError(f"Routing: `activation` must be one of {ACTIVATIONS}, got {activation!r}.")
        hidden_units = integer(hidden_units, "hidden_units", optional=True, owner="Routing")
        per_channel_units = integer(per_channel_units, "per_channel_units", optional=True, owner="Routing")
        dropout = fraction(dropout, "dropout", owner="Routing")
        self.activation = activation
        self.hidden_units = hidden_units
        self.per_channel_units = per_channel_units
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        dense_args = dict(
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        self.hidden = (
            keras.layers.Dense(hidden_units, activation="relu", name="hidden", **dense_args)
            if hidden_units
            else None
        )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy) if dropout else None
        self.logits = keras.layers.Dense(num_experts * (per_channel_units or 1), name="logits", **dense_args)

    def _features_shape(self, inputs_shape, context_shape=None):
        batch, features = self.global_features_shape(inputs_shape)
        if context_shape is not None:
            features += context_shape[-1]
        return (batch, features)

    def build(self, inputs_shape, context_shape=None):
        self.check_input_shape(inputs_shape)
        shape = self._features_shape(inputs_shape, context_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = (shape[0], self.hidden_units)
        self.logits.build(shape)

    def call(self, inputs, context=None, training=None):
        features = self.global_features(inputs)
        if context is not None:
            features = ops.concatenate([features, ops.cast(context, features.dtype)], axis=-1)
        # The dense sublayers' own `call`: they are built in `build`, and this layer's `__call__`
        # has already cast the input and opened the autocast scope. Their `__call__` would add
        # eager PyTorch's per-call overhead to every routing function (docs/performance.md).
        if self.hidden is not None:
            features = self.hidden.call(features)
        if self.dropout_layer is not None:
            features = self.dropout_layer(features, training=training)
        logits = self.logits.call(features)
        if self.per_channel_units:
            logits = ops.reshape(logits, (-1, self.num_experts, self.per_channel_units))
        if self.activation == "softmax":
            return ops.softmax(logits, axis=1)
        return ops.sigmoid(logits)

    def compute_output_shape(self, inputs_shape, context_shape=None):
        if self.per_channel_units:
            return (inputs_shape[0], self.num_experts, self.per_channel_units)
        return (inputs_shape[0], self.num_experts)

    def get_config(self):
        config = super().get_config()
        config.update(
            activation=self.activation,
            hidden_units=self.hidden_units,
            per_channel_units=self.per_channel_units,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
