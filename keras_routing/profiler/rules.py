"""The registry of cost rules: how many multiply-adds one call of a layer type costs.

A cost rule is registered per layer class and found along the class's MRO, so a rule for a
base class covers its subclasses unless one of them has its own:

    @cost_rule(keras.layers.Dense)
    def dense(layer, call):
        return call.input_shapes[0][-1] * layer.units        # static multiply-adds, one example

A rule returns the multiply-adds of one example (an ``int``), or a ``Cost`` when part of the
layer runs conditionally: ``Cost(madds, expected_madds)``, where ``madds`` is the static count
(as the papers count it) and ``expected_madds`` what runs on average given ``call.rate``, the
rate measured for that call (fraction of experts, channels or blocks that run; None when none
was measured or given). A rule returns None for a configuration it cannot count.

A rate rule says how a layer measures its rate on data: given the layer and the symbolic
arguments of its call, it returns a tensor of per-example rates (batch first); the profiler
averages it over the examples of a dataset and passes the mean to the cost rule as
``call.rate``:

    @rate_rule(GatedResidual)
    def gate_open(layer, args, kwargs):
        return layer.gate(args[0])                             # (batch,): 1 where F runs
"""

import dataclasses
import math

import keras

_COST_RULES = {}
_RATE_RULES = {}


@dataclasses.dataclass(frozen=True)
class Cost:
    """Multiply-adds of one example: ``madds`` static, ``expected_madds`` given the measured rate
    (None: the same as ``madds``, nothing in the layer is conditional)."""

    madds: int
    expected_madds: float | None = None

    @property
    def expected(self):
        return self.madds if self.expected_madds is None else self.expected_madds


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer as a cost rule sees it: shapes of one example (batch size 1)."""

    input_shapes: list  # the shapes of the call's tensor arguments, in order
    output_shape: tuple  # the shape of its (first) output
    rate: object = None  # measured or given rate of this call; None: not known

    def cost(self, layer, *input_shapes, rate=None):
        """The ``Cost`` of calling ``layer`` (a sublayer, say) on ``input_shapes``, by its rule;
        None if it has none."""
        return layer_cost(layer, list(input_shapes), rate=rate)


def _register(registry, layer_class, function):
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise ValueError(f"A cost or rate rule is registered for a Keras layer class, got {layer_class!r}.")
    registry[layer_class] = function
    return function


def cost_rule(*layer_classes):
    """Decorator: registers ``function(layer, call) -> int | Cost | None`` for ``layer_classes``
    and their subclasses. Registering a class again replaces its rule."""

    def register(function):
        for layer_class in layer_classes:
            _register(_COST_RULES, layer_class, function)
        return function

    return register


def rate_rule(*layer_classes):
    """Decorator: registers ``function(layer, args, kwargs) -> per-example rates`` (a symbolic
    tensor, batch first) for ``layer_classes`` and their subclasses."""

    def register(function):
        for layer_class in layer_classes:
            _register(_RATE_RULES, layer_class, function)
        return function

    return register


def _lookup(registry, layer):
    for cls in type(layer).__mro__:
        if cls in registry:
            return registry[cls]
    return None


def find_cost_rule(layer):
    """The cost rule of ``layer``'s class or of its nearest registered base; None if none."""
    return _lookup(_COST_RULES, layer)


def find_rate_rule(layer):
    """The rate rule of ``layer``'s class or of its nearest registered base; None if none."""
    return _lookup(_RATE_RULES, layer)


def layer_cost(layer, input_shapes, output_shape=None, rate=None):
    """The ``Cost`` of one call of ``layer`` on tensors of ``input_shapes`` (batch first), by its
    rule; None if no rule covers it or the rule cannot count it."""
    rule = find_cost_rule(layer)
    if rule is None:
        return None
    if output_shape is None:
        specs = [keras.KerasTensor(shape) for shape in input_shapes]
        output_shape = tuple(keras.tree.flatten(layer.compute_output_spec(*specs))[0].shape)
    cost = rule(layer, LayerCall(list(input_shapes), tuple(output_shape), rate))
    if cost is None or isinstance(cost, Cost):
        return cost
    return Cost(int(cost))


def prod(values):
    """The product of ``values`` as a Python int (shapes hold ints or numpy ints)."""
    return math.prod(int(v) for v in values)
