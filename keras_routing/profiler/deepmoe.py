"""Cost rules of DeepMoE (``keras_routing.layers.channel_gates``).

- ``ChannelGate``: static, the convolution's multiply-adds at full width (as the paper's
  baselines are counted; the per-channel scaling, one multiply per input value, is folded into
  the kernel at inference and not counted). Realised, given the rate (the fraction of its input
  channels whose gate is non-zero, measured per example on data by the rate rule): the
  convolution over the open channels only, ``rate * static``, since eq. 5 sums one term per
  open channel.
- ``ShallowEmbeddingGate``: its embedding convolutions and gate heads (and the embedding
  classifier), always run.

What a zero gate also makes dead, the output channel of the convolution producing it, is not in
the realised count: only ``keras_routing.transforms.prune_gated_channels`` removes it.
"""

from keras import ops

from keras_routing.layers.channel_gates import ChannelGate, ShallowEmbeddingGate
from keras_routing.profiler.keras_layers import conv_madds
from keras_routing.profiler.rules import Cost, cost_rule, rate_rule


@cost_rule(ChannelGate)
def channel_gate(layer, call):
    static = conv_madds(layer, call.input_shapes[0], call.output_shape)
    if call.rate is None:
        return Cost(static)
    return Cost(static, float(call.rate) * static)


@rate_rule(ChannelGate)
def open_channels(layer, args, kwargs):
    gate = kwargs["gate"] if "gate" in kwargs else args[1]
    return ops.mean(ops.cast(ops.not_equal(gate, 0), "float32"), axis=-1)


@cost_rule(ShallowEmbeddingGate)
def shallow_embedding_gate(layer, call):
    shape = tuple(call.input_shapes[0])
    madds = 0
    for conv in layer.convs:
        cost = call.cost(conv, shape)
        madds += cost.madds
        shape = conv.compute_output_shape(shape)
    heads = [*layer.heads, *([layer.classifier] if layer.classifier else [])]
    return madds + sum(layer.embedding_dim * head.units for head in heads)
