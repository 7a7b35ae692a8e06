"""Layers of a zoo model, plain or CondConv, named as ``keras.applications`` names them.

A CondConv layer keeps the name of the plain layer it replaces (``conv_pw_13``), so weights
move between a baseline and its CC version by name (see ``upcycle``), and its routing weights
come from the model's ``RoutingPlan``.
"""

import keras

from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D
from keras_routing.validation import fraction, integer, is_integer, number
from keras_routing.zoo.routing_plan import RoutingPlan


def image_input(input_shape, default_size=224, min_size=32):
    """``keras.Input`` for ``input_shape`` (default ``(224, 224, 3)``), checked."""
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    input_shape = tuple(input_shape)
    if any(size is not None and (not is_integer(size) or size < min_size) for size in input_shape[:2]):
        raise ValueError(f"`input_shape` must be at least {min_size}x{min_size}, got {input_shape}.")
    if not is_integer(input_shape[2]) or input_shape[2] < 1:
        raise ValueError(f"`input_shape` must have a known number of channels >= 1, got {input_shape}.")
    return keras.Input(tuple(None if size is None else int(size) for size in input_shape))


def check_arguments(*, pooling, classes, dropout, bn_momentum, width=1.0, narrowest=None):
    """The arguments every factory checks the same way. ``narrowest``: the channels of the
    narrowest layer at width 1.0 when ``width`` scales channels by truncation (MobileNetV1)."""
    number(width, "width", above=0)
    if narrowest is not None and int(narrowest * width) < 1:
        raise ValueError(
            f"`width` must leave every layer at least one channel (width >= 1/{narrowest} = "
            f"{1 / narrowest:g}: the narrowest layer has {narrowest} channels at width 1), got {width!r}."
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max', got {pooling!r}.")
    integer(classes, "classes")
    fraction(dropout, "dropout")
    number(bn_momentum, "bn_momentum", at_least=0, at_most=1)


def check_experts(experts):
    integer(experts, "experts")


class Builder:
    """Makes the layers of one model. ``experts=None`` makes every layer plain."""

    def __init__(self, experts=None, routing="per_block", bn_momentum=0.99, bn_epsilon=1e-3):
        self.experts = experts
        self.plan = RoutingPlan(experts, routing) if experts else None
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

    def start_block(self, x, name):
        """Compute (or reuse) the routing weights of a CondConv block from its input ``x``."""
        self.plan.start_block(x, name)

    def _apply(self, layer, x, cond):
        if not cond:
            return layer(x)
        out_channels = layer.compute_output_shape(tuple(x.shape))[-1]
        return layer(x, routing_weights=self.plan.weights(out_channels, layer.name))

    def conv(self, x, filters, kernel_size, name, cond=False, strides=1, padding="same", use_bias=False):
        args = dict(strides=strides, padding=padding, use_bias=use_bias, name=name)
        if cond:
            layer = CondConv2D(filters, kernel_size, self.experts, routing=None, **args)
        else:
            layer = keras.layers.Conv2D(filters, kernel_size, **args)
        return self._apply(layer, x, cond)

    def depthwise(self, x, name, cond=False, strides=1, padding="same", kernel_size=3):
        args = dict(strides=strides, padding=padding, use_bias=False, name=name)
        if cond:
            layer = CondDepthwiseConv2D(kernel_size, self.experts, routing=None, **args)
        else:
            layer = keras.layers.DepthwiseConv2D(kernel_size, **args)
        return self._apply(layer, x, cond)

    def dense(self, x, units, name, cond=False, activation=None):
        if cond:
            layer = CondDense(units, self.experts, activation=activation, routing=None, name=name)
        else:
            layer = keras.layers.Dense(units, activation=activation, name=name)
        return self._apply(layer, x, cond)

    def batch_norm(self, x, name):
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)(
            x
        )

    def dense_head(self, x, include_top, pooling, classes, activation, dropout, pool_names=(None, None)):
        """Global average pooling, dropout and the (CondConv) classifier ``predictions``; or,
        without the top, the optional pooling of ``keras.applications``."""
        if include_top:
            x = keras.layers.GlobalAveragePooling2D(name=pool_names[0])(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name="dropout")(x)
            cond = bool(self.experts)
            if cond:
                self.start_block(x, "predictions")
            return self.dense(x, classes, "predictions", cond=cond, activation=activation)
        return self.pooling(x, pooling, pool_names)

    @staticmethod
    def pooling(x, pooling, pool_names=(None, None)):
        """``keras.applications``' pooling of the features when the top is left out."""
        average, maximum = pool_names
        if pooling == "avg":
            return keras.layers.GlobalAveragePooling2D(name=average)(x)
        if pooling == "max":
            return keras.layers.GlobalMaxPooling2D(name=maximum)(x)
        return x
