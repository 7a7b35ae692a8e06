"""Cost rules of the CondConv family, as the CondConv paper counts them.

A CondConv layer costs one convolution (or dense layer) with the mixed kernel, plus one
multiply-add per expert per parameter to mix the kernel (and bias), plus its own routing
function if it has one. A routing function costs its dense layers; the global pooling is free.
Every expert is mixed for every example, so nothing here is conditional: expected cost equals
static cost.
"""

from keras_routing.layers.cond_conv import CondConv2D, CondDense, CondDepthwiseConv2D
from keras_routing.layers.routing import Routing
from keras_routing.profiler.keras_layers import conv_madds, dense_madds
from keras_routing.profiler.rules import cost_rule, prod


@cost_rule(Routing)
def routing(layer, call):
    """Dense layers on the pooled input (and, for hierarchical routing, the context)."""
    features = sum(shape[-1] for shape in call.input_shapes[:2])
    madds = 0
    if layer.hidden is not None:
        madds += features * layer.hidden_units
        features = layer.hidden_units
    return madds + features * layer.num_experts * (layer.per_channel_units or 1)


def _mixing_madds(layer):
    """One multiply-add per expert per parameter, to mix kernel and bias."""
    return prod(layer.kernel.shape) + (prod(layer.bias.shape) if layer.use_bias else 0)


def _with_own_routing(layer, call, madds):
    """``madds`` plus the layer's own router, by that router's rule (None: it has none)."""
    if layer.routing is None:
        return madds
    routing = call.cost(layer.routing, call.input_shapes[0])
    return None if routing is None else madds + routing.madds


@cost_rule(CondConv2D, CondDepthwiseConv2D)
def cond_conv(layer, call):
    depthwise = isinstance(layer, CondDepthwiseConv2D)
    conv = conv_madds(layer, call.input_shapes[0], call.output_shape, depthwise=depthwise)
    return _with_own_routing(layer, call, conv + _mixing_madds(layer))


@cost_rule(CondDense)
def cond_dense(layer, call):
    dense = dense_madds(call.input_shapes[0], layer.units)
    return _with_own_routing(layer, call, dense + _mixing_madds(layer))
