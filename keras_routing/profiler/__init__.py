"""Parameters and inference multiply-adds of a model, counted as the CondConv paper counts them.

    report = keras_routing.profile(model)                 # at the model's input shape
    report = keras_routing.profile(model, (224, 224, 3))  # at another input shape
    report = keras_routing.profile("cc_mobilenet_v1", width=0.5)  # a zoo model, built to count
    report.params, report.madds, report.layers, report.uncounted
    report.print()                                        # a per-layer table

    report = keras_routing.profile(model, data=dataset)   # rates measured on data
    report = keras_routing.profile(model, rates={"block_3": 0.4})  # or given
    report.expected_madds, report.rates                   # what runs on average at those rates

Multiply-adds are those of convolutions and fully-connected layers for one example, as in the
MobileNet and CondConv papers: batch normalization (folded into the convolution at inference),
activations, additions and pooling count nothing. A CondConv layer costs one convolution with
the mixed kernel plus one multiply-add per expert per parameter to mix the kernel (and bias),
plus its routing function (its dense layers; the global pooling is free).

Each layer type has a cost rule (``rules``: ``@cost_rule(LayerClass)``, found along the MRO);
layers that run conditionally (k of n experts, gated channels, skipped blocks) also have a
rate rule that measures, on data, how much of them runs, and their cost rule turns that rate
into the expected cost. A family adds its layers' rules in a module here.

A layer no rule covers is listed in ``uncounted`` (and printed as such) rather than silently
counted as zero; its parameters are still counted.
"""

# The rule modules register their rules on import.
from keras_routing.profiler import cond_conv, deepmoe, gates, keras_layers, routing  # noqa: F401
from keras_routing.profiler.report import LayerCost, Profile, measure_rates, profile
from keras_routing.profiler.rules import Cost, LayerCall, cost_rule, find_cost_rule, layer_cost, rate_rule

__all__ = [
    "Cost",
    "LayerCall",
    "LayerCost",
    "Profile",
    "cost_rule",
    "find_cost_rule",
    "layer_cost",
    "measure_rates",
    "profile",
    "rate_rule",
]
