"""Cost rules of probabilistic bypass gates: a ``GatedResidual`` costs its gate plus, at the
rate its residual function runs, that function.

The rate is the fraction of examples for which ``F`` runs: where any of a block's gates (filter
groups) is open, as the layer runs ``F`` whole at inference then. The static count is the gate
plus ``F``, as if always on; the shortcut's projection, if any, is a layer of its own.
"""

import keras
from keras import ops

from keras_routing.layers.early_exit import EarlyExit, ExitGate, ExitTargetLoss
from keras_routing.layers.gated_residual import BypassGate, GatedResidual, GateTargetLoss
from keras_routing.profiler.rules import Cost, cost_rule, layer_cost, rate_rule


@cost_rule(BypassGate)
def bypass_gate(layer, call):
    """AIG's gate: two dense layers on the pooled input (1x1 convolutions on a 1x1 map); an
    independent gate computes nothing per example."""
    if layer.gate == "independent":
        return 0
    channels = call.input_shapes[0][-1]
    return channels * layer.hidden_units + layer.hidden_units * 2 * layer.num_experts


def residual_function_madds(layer, input_shape):
    """Multiply-adds of one example through ``layer.residual_function`` (None if not countable)."""
    function = layer.residual_function
    if isinstance(function, keras.Model):
        from keras_routing.profiler.report import profile

        report = profile(function, input_shape=tuple(input_shape[1:]))
        return None if report.uncounted else report.madds
    cost = layer_cost(function, [tuple(input_shape)])
    return None if cost is None else cost.madds


@cost_rule(GatedResidual)
def gated_residual(layer, call):
    gate = bypass_gate(layer.gate, call)
    function = residual_function_madds(layer, call.input_shapes[0])
    if function is None:
        return None
    rate = 1.0 if call.rate is None else float(call.rate)
    return Cost(gate + function, gate + rate * function)


@rate_rule(GatedResidual)
def gated_residual_runs(layer, args, kwargs):
    """1 for an example whose block runs ``F`` (any gate open), in the layer's inference mode;
    sampled gates count by their expectation, the probability that any is open."""
    if layer.inference == "stochastic":
        closed = 1.0 - layer.gate.open_probability(layer.gate(args[0], training=False))
        return 1.0 - ops.prod(closed, axis=-1)
    return ops.max(layer.gates(args[0], training=False), axis=-1)


@cost_rule(GateTargetLoss)
def gate_target_loss(layer, call):
    """A training loss: nothing at inference."""
    return 0


# Early exit (``gated_densenet_cifar``). The rate of an ``EarlyExit`` is the fraction of examples
# that exit there: they run the gate and the classifier; the others the gate and the rest. The
# rest's expected cost is counted as static (its own gates' rates are not propagated into it).


@cost_rule(ExitGate)
def exit_gate(layer, call):
    """S2.4's gate: two 3x3 convolutions at the map's resolution and the linear layer on the
    pooled map."""
    _, height, width, channels = call.input_shapes[0]
    ph, pw = layer._pool(call.input_shapes[0])
    convs = height * width * 9 * layer.width * (channels + layer.width)
    return convs + (height // ph) * (width // pw) * layer.width * 2


def _function_madds(function, input_shape):
    from keras_routing.profiler.report import profile

    if isinstance(function, keras.Model):
        report = profile(function, input_shape=tuple(input_shape[1:]))
        return None if report.uncounted else report.madds
    cost = layer_cost(function, [tuple(input_shape)])
    return None if cost is None else cost.madds


@cost_rule(EarlyExit)
def early_exit(layer, call):
    shape = call.input_shapes[0]
    gate = exit_gate(layer.gate, call)
    here, rest = _function_madds(layer.classifier, shape), _function_madds(layer.rest, shape)
    if here is None or rest is None:
        return None
    rate = 0.0 if call.rate is None else float(call.rate)
    ran = 0 if layer.inference == "always_on" else gate  # always on, the gate does not run
    return Cost(gate + here + rest, ran + rate * here + (1.0 - rate) * rest)


@rate_rule(EarlyExit)
def early_exit_rate(layer, args, kwargs):
    """1 for an example that exits here, in the layer's inference mode (sampled exits count by
    their probability)."""
    if layer.inference == "stochastic":
        return layer.gate.open_probability(layer.gate(args[0], training=False))[:, 0]
    return layer.exits(args[0], training=False)[:, 0]


@cost_rule(ExitTargetLoss)
def exit_target_loss(layer, call):
    """A training loss and a statistic: nothing at inference."""
    return 0
