"""``prune_gated_layers``: the paper's mode collapse used as pruning (section 3.1.1, 4.2.1).

A ``GatedResidual`` whose residual function runs for (nearly) none of a dataset's examples
under the model's inference mode is replaced by its shortcut; one that runs for (nearly) all
becomes a plain ``shortcut + F(x)`` sum; the others stay gated. The target-rate loss layer,
which only trains, is dropped. On that data the result predicts what the gated model predicts
(exactly, when ``threshold`` is 0), with fewer layers and no gates where they collapsed.
"""

import keras

from keras_routing.layers.gated_residual import GatedResidual, GateTargetLoss
from keras_routing.profiler.report import measure_rates
from keras_routing.transforms import _graph
from keras_routing.validation import number


def prune_gated_layers(model, dataset, threshold=0.0, *, max_batches=None, name=None):
    """A copy of the functional ``model`` without the gated residual layers that ran on a
    fraction at most ``threshold`` of ``dataset``'s examples (in [0, 0.5); 0: never), and with
    the layers that ran on at least ``1 - threshold`` made static.

    ``dataset``: inputs as ``keras_routing.profile(data=...)`` takes them (an array, batches of
    inputs or of ``(inputs, labels)``). The new model shares the kept layers (and their weights)
    with ``model``. Returns ``(pruned_model, rates)``, ``rates`` the measured ``{layer: rate}``.
    """
    threshold = number(threshold, "threshold", at_least=0, below=0.5)
    graph = _graph.functional_graph(model)
    if graph is None:
        raise ValueError(f"`model` must be a functional or sequential model, got {model!r}.")
    rates = measure_rates(model, dataset, max_batches=max_batches)
    if not any(isinstance(layer, GatedResidual) for layer in _graph.all_layers(model)):
        raise ValueError(f"`model` '{model.name}' has no GatedResidual layer to prune.")

    def visit(layer, args, kwargs):
        if isinstance(layer, GateTargetLoss):
            return args[0][0]
        if not isinstance(layer, GatedResidual):
            return layer(*args, **kwargs)
        x = args[0]
        shortcut = kwargs.get("shortcut")
        skip = x if shortcut is None else shortcut
        rate = rates.get(layer.name)
        if rate is None:
            return layer(*args, **kwargs)
        if rate <= threshold and layer.residual:
            y = skip  # never runs: the block is its shortcut
        elif rate >= 1.0 - threshold:
            out = layer.residual_function(x)
            y = keras.layers.Add(name=layer.name)([skip, out]) if layer.residual else out
        else:
            return layer(*args, **kwargs)
        # The gates output only fed the target-rate loss, which is dropped.
        return (y, y) if kwargs.get("return_gates") else y

    inputs = [keras.Input(tuple(t.shape[1:]), dtype=t.dtype, name=t.name) for t in graph.inputs]
    outputs = _graph.run(graph, inputs if len(inputs) > 1 else inputs[0], visit)
    pruned = keras.Model(
        inputs if len(inputs) > 1 else inputs[0], outputs, name=name or f"{model.name}_pruned"
    )
    return pruned, rates
