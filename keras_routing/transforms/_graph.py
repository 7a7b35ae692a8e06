"""Reading and rewriting Keras functional graphs: the only module that touches private Keras API.

Keras 3 has no public API to walk a functional model's nodes, to ask which layer produced a
tensor, or to list a layer's own sublayers; the transforms, the profiler and the analysis need
all three. Keeping every such use here means a Keras release that moves them breaks one file.
"""

import keras
from keras.src.models.functional import Functional  # no public name; clone_model tests it too


def is_functional(model):
    """Whether ``model`` is a functional model itself (not Sequential, not subclassed)."""
    return isinstance(model, Functional)


def functional_graph(model):
    """The ``Functional`` graph behind ``model`` (a built Sequential model keeps one inside), or
    None for a model whose graph cannot be read (subclassed, or a Sequential never built)."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    return graph if isinstance(graph, Functional) else None


def _nodes_in_order(graph):
    by_depth = graph._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def run(graph, inputs, visit):
    """Runs ``graph`` node by node on ``inputs`` (one tensor per graph input, in order): each
    layer call becomes ``visit(layer, args, kwargs)``, which returns that call's outputs.

    Returns the graph's outputs (a list when there are several). Nodes whose inputs are not
    reached from ``inputs`` are skipped, as Keras's own functional call does.
    """
    tensors = {id(ref): value for ref, value in zip(graph.inputs, keras.tree.flatten(inputs))}
    for node in _nodes_in_order(graph):
        if node.operation is None or node.is_input or any(id(t) not in tensors for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = visit(node.operation, args, kwargs)
        for ref, value in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(ref)] = value
    outputs = [tensors[id(t)] for t in graph.outputs]
    return outputs if len(outputs) > 1 else outputs[0]


def calls(graph):
    """``[(layer, args, kwargs)]``: every layer call of ``graph`` in execution order, with the
    graph's own symbolic tensors as arguments."""
    return [
        (node.operation, node.arguments.args, node.arguments.kwargs)
        for node in _nodes_in_order(graph)
        if node.operation is not None and not node.is_input
    ]


def all_layers(model):
    """Every layer inside ``model``, nested models' and layers' own sublayers included."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def sublayers(layer):
    """The layers ``layer`` holds directly (a routing function inside an expert layer, ...)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def call_count(layer):
    """How many times ``layer`` has been called on symbolic tensors (nodes in some graph)."""
    return len(layer._inbound_nodes)


def consumer_count(layer):
    """How many layer calls take an output of ``layer`` as input."""
    return len(layer._outbound_nodes)


def producers(layer):
    """The layers whose outputs the first call of ``layer`` takes as input."""
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def argument_producer(layer, name, position):
    """The layer that produced argument ``name`` (or the ``position``-th positional argument) of
    the first call of ``layer``; None if that argument is not given or not a layer's output."""
    arguments = layer._inbound_nodes[0].arguments
    value = arguments.kwargs.get(name)
    if value is None and len(arguments.args) > position:
        value = arguments.args[position]
    history = getattr(value, "_keras_history", None)
    return None if history is None else history.operation


def clone(model, replace):
    """A copy of the functional ``model`` with new layers: ``replace(layer)`` gives each one's
    replacement (a fresh layer; weights are not copied)."""
    return keras.models.clone_model(model, clone_function=replace)
