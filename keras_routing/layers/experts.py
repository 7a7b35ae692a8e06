"""Stacked experts: weights with a leading expert axis, initialised expert by expert, mixed by a router.

A layer of this kind holds its kernel and bias stacked along a leading expert axis and combines
them with routing weights of shape ``(batch, num_experts)`` (or ``(batch, num_experts,
channels)`` for per-channel routing). Either the layer computes them from its input with its
own router, or the caller passes ``routing_weights=`` so that one router can drive several
layers (CondConv shares one per block). CondConv's layers are stacked experts; so is anything
else that mixes stacked kernels.
"""

import keras

from keras_routing.layers.router import Router
from keras_routing.layers.routing import Routing
from keras_routing.validation import integer

# The names ``routing=`` accepts: CondConv's routing function with that activation.
ROUTER_SHORTCUTS = ("sigmoid", "softmax")


def per_expert_initializer(initializer, num_experts):
    """Initialise each expert as a standalone layer: fans of one expert, not of the stack.

    Keras initializers derive fan-in/fan-out from the whole shape, which for a stacked
    ``(num_experts, kh, kw, in, out)`` kernel would count the expert axis as receptive field
    and shrink every expert's scale by ``sqrt(num_experts)``.
    """

    def initialize(shape, dtype=None):
        experts = []
        for index in range(num_experts):
            expert_initializer = initializer
            seed = getattr(initializer, "seed", None)
            # An integer seed repeats the same values on every call: give each expert its own.
            if isinstance(seed, int) and "seed" in initializer.get_config():
                expert_initializer = initializer.__class__.from_config(
                    {**initializer.get_config(), "seed": seed + index}
                )
            experts.append(expert_initializer(tuple(shape[1:]), dtype=dtype))
        return keras.ops.stack(experts, axis=0)

    return initialize


class StackedExperts(keras.layers.Layer):
    """Base of layers whose kernel and bias are mixtures of ``num_experts`` experts.

    ``routing``: a ``Router`` over ``num_experts`` (any router whose outputs are routing
    weights), its config (a serialized router, or a plain ``Routing`` config), ``"sigmoid"`` or
    ``"softmax"`` (a ``Routing`` with that activation), or ``None`` when the routing weights
    always come from outside (``call(x, routing_weights=...)``). The router follows this layer's
    dtype policy as ``keras_routing.layers.router`` describes.
    """

    def __init__(
        self,
        num_experts,
        routing="sigmoid",
        use_bias=True,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = self.__class__.__name__
        self.num_experts = integer(num_experts, "num_experts", owner=name)
        self.use_bias = use_bias
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.routing = self._make_routing(routing)

    def _make_routing(self, routing):
        name = self.__class__.__name__
        if routing is None:
            return None
        if isinstance(routing, str):
            if routing not in ROUTER_SHORTCUTS:
                raise ValueError(
                    f"{name}: `routing` must be one of {ROUTER_SHORTCUTS}, a Router, its config, "
                    f"or None, got {routing!r}."
                )
            return Routing(self.num_experts, activation=routing, name="routing", dtype=self.dtype_policy)
        if isinstance(routing, dict):
            if "class_name" in routing:
                routing = keras.saving.deserialize_keras_object(routing)
            else:
                routing = Routing.from_config(routing)
        if not isinstance(routing, Router):
            raise ValueError(
                f"{name}: `routing` must be 'sigmoid', 'softmax', a Router layer, its config, "
                f"or None (routing weights always passed in), got {routing!r}."
            )
        if routing.num_experts != self.num_experts:
            raise ValueError(
                f"{name}: the routing function has {routing.num_experts} experts but the layer "
                f"has num_experts={self.num_experts}."
            )
        routing.adopt_dtype_policy(self.dtype_policy)
        return routing

    def add_expert_weights(self, kernel_shape, out_channels):
        """Create ``kernel`` (num_experts, *kernel_shape) and ``bias`` (num_experts, out)."""
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_experts,) + tuple(kernel_shape),
            initializer=per_expert_initializer(self.kernel_initializer, self.num_experts),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.num_experts, out_channels),
                initializer=per_expert_initializer(self.bias_initializer, self.num_experts),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def build_routing(self, input_shape):
        if self.routing is not None and not self.routing.built:
            self.routing.build(input_shape)

    def _to_compute_dtype(self, weights):
        """Routing weights in this layer's compute dtype; a router that keeps its own policy
        returns its own. Skips the op when they already match: per-op overhead counts at batch 1."""
        dtype = keras.backend.standardize_dtype(weights.dtype)
        if dtype == self.compute_dtype or not keras.backend.is_float_dtype(dtype):
            return weights
        return keras.ops.cast(weights, self.compute_dtype)

    def resolve_routing_weights(self, inputs, routing_weights, out_channels, training=None):
        """The given routing weights, checked, or the layer's own routing of ``inputs``."""
        name = f"{self.__class__.__name__} '{self.name}'"
        if routing_weights is None:
            if self.routing is None:
                raise ValueError(
                    f"{name} was built with routing=None, so it needs `routing_weights` of shape "
                    f"(batch, {self.num_experts})."
                )
            return self._to_compute_dtype(self.routing(inputs, training=training))
        shape = tuple(routing_weights.shape)
        expected = f"(batch, {self.num_experts}) or (batch, {self.num_experts}, {out_channels})"
        if len(shape) not in (2, 3) or shape[1] != self.num_experts:
            raise ValueError(f"{name}: `routing_weights` must have shape {expected}, got {shape}.")
        if len(shape) == 3 and shape[2] != out_channels:
            raise ValueError(f"{name}: `routing_weights` must have shape {expected}, got {shape}.")
        batch = inputs.shape[0]
        if batch is not None and shape[0] is not None and batch != shape[0]:
            raise ValueError(
                f"{name}: `routing_weights` has batch size {shape[0]} but the input has {batch}."
            )
        if keras.backend.standardize_dtype(routing_weights.dtype) == self.compute_dtype:
            return routing_weights  # skips an eager op: per-op overhead counts at batch 1
        return keras.ops.cast(routing_weights, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            routing=None if self.routing is None else keras.saving.serialize_keras_object(self.routing),
            use_bias=self.use_bias,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            kernel_constraint=keras.constraints.serialize(self.kernel_constraint),
            bias_constraint=keras.constraints.serialize(self.bias_constraint),
        )
        return config
