"""Cost rules of hard per-example routing (``RoutedExperts``): ``k`` of ``n`` experts run.

A routed layer costs its router (one dense layer on the pooled input and task embedding: the
clean logits; the noise branch runs in training only) plus the experts that run. Statically,
with the load spread evenly, that is ``k`` times the mean expert's multiply-adds (``k / n`` of
the sum); given a measured rate (each expert's load, the fraction of examples routed to it,
from the rate rule below), it is ``sum_i load_i * madds_i``. ``ConvExpert`` and
``SqueezeExcite`` cost their own convolutions and dense layers.
"""

import numpy as np
from keras import ops

from keras_routing.layers.expert_types import ConvExpert, SqueezeExcite
from keras_routing.layers.routed_experts import NoisyTopKRouter, RoutedExperts
from keras_routing.profiler.rules import Cost, cost_rule, rate_rule


@cost_rule(NoisyTopKRouter)
def noisy_top_k_router(layer, call):
    features = call.input_shapes[0][-1] + (layer.task_embedding_dim or 0)
    return features * layer.num_experts


@cost_rule(ConvExpert)
def conv_expert(layer, call):
    shape, total = tuple(call.input_shapes[0]), 0
    for conv in layer.convs:
        cost = call.cost(conv, shape)
        if cost is None:
            return None
        total += cost.madds
        shape = tuple(conv.compute_output_shape(shape))
    return total


@cost_rule(SqueezeExcite)
def squeeze_excite(layer, call):
    channels = call.input_shapes[0][-1]
    return 2 * channels * layer.reduce.units


@rate_rule(RoutedExperts)
def expert_load(layer, args, kwargs):
    """Per example, which experts run: ``(batch, n)`` 0/1 (its mean is each expert's load)."""
    gates = layer.router(args[0], task_embedding=kwargs.get("task_embedding"))
    return ops.cast(ops.not_equal(gates, 0), "float32")


@cost_rule(RoutedExperts)
def routed_experts(layer, call):
    shape = tuple(call.input_shapes[0])
    experts = []
    for expert in layer.experts:
        cost = call.cost(expert, shape)
        experts.append(0 if cost is None else cost.madds)
    router = call.cost(layer.router, *call.input_shapes).madds
    experts = np.asarray(experts, "float64")
    static = router + round(layer.k * float(experts.mean()))
    if call.rate is None:
        return Cost(static, None)
    load = np.broadcast_to(np.asarray(call.rate, "float64").reshape(-1), experts.shape)
    return Cost(static, router + float((load * experts).sum()))
