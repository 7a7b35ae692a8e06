"""``prune_gated_channels``: remove, statically, the channels a DeepMoE model's gates close on a
dataset, so that zero gates save work on dense hardware.

A gated channel (an output channel of a gated convolution, scaled by its gate before the next
convolution, a ``ChannelGate``) whose gate is zero on all but a ``threshold`` fraction of the
dataset's examples is removed everywhere it lives: the producing convolution's filter (kernel
and bias), its batch normalisation's entries, the consuming ``ChannelGate``'s input slice, and
the gate head's unit. With ``threshold=0`` the removed channels are closed on every example of
the data, so the pruned model's outputs on that data equal the gated model's (up to float
rounding): their contribution was exactly zero (eq. 5).

The result keeps the gates for the channels left (they still scale them per example): a smaller
model of the same layers, every layer registered, reloadable with ``safe_mode=True``.
"""

import keras
import numpy as np

from keras_routing.layers import channel_gates  # the module, not its names: imported while layers loads
from keras_routing.transforms import _graph
from keras_routing.validation import number


def _gate_layer(model):
    found = [layer for layer in model.layers if isinstance(layer, channel_gates.ShallowEmbeddingGate)]
    if len(found) != 1:
        raise ValueError(
            f"prune_gated_channels: '{model.name}' must hold one ShallowEmbeddingGate, found {len(found)}."
        )
    return found[0]


def _gate_index(consumer):
    """Which of the gate layer's outputs ``consumer`` (a ``ChannelGate``) is scaled by."""
    arguments = consumer._inbound_nodes[0].arguments
    value = arguments.kwargs.get("gate")
    if value is None:
        value = arguments.args[1]
    return value._keras_history.tensor_index


def _producer_chain(consumer):
    """The convolution producing ``consumer``'s input and the layers between (batch norms,
    activations), walking back through single-input layers."""
    between = []
    layer = _graph.producers(consumer)[0]
    while not isinstance(layer, keras.layers.Conv2D):
        if not isinstance(
            layer, (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU)
        ):
            raise ValueError(  # noqa: TRY004
                f"prune_gated_channels: cannot prune through '{layer.name}' ({type(layer).__name__})."
            )
        between.append(layer)
        layer = _graph.producers(layer)[0]
    return layer, between


def gate_open_rates(model, dataset, max_batches=None):
    """For each gate of ``model`` (a DeepMoE model), the fraction of ``dataset``'s examples on
    which each channel's gate is non-zero: a list of ``(channels,)`` arrays."""
    gate = _gate_layer(model)
    node = gate._inbound_nodes[0]
    outputs = keras.tree.flatten(node.outputs)[: len(gate.gate_channels)]
    probe = keras.Model(model.inputs, outputs)
    totals, count = None, 0
    batches = [dataset] if isinstance(dataset, np.ndarray) else dataset
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        gates = [keras.ops.convert_to_numpy(g) for g in probe(x, training=False)]
        opened = [(g != 0).sum(axis=0) for g in gates]
        totals = opened if totals is None else [t + o for t, o in zip(totals, opened)]
        count += gates[0].shape[0]
    if not count:
        raise ValueError("prune_gated_channels: `dataset` gave no examples.")
    return [t / count for t in totals]


def prune_gated_channels(model, dataset, threshold=0.0, max_batches=None):
    """A copy of ``model`` without the gated channels open on at most a ``threshold`` fraction of
    ``dataset``'s examples (numpy images, or an iterable of batches ``x`` or ``(x, y)``).

    ``threshold=0`` removes only channels closed on every example, so outputs match on that data.
    Every gated layer keeps at least one channel (its most open one). Returns the pruned model;
    ``model`` is unchanged.
    """
    threshold = number(threshold, "threshold", at_least=0, below=1)
    rates = gate_open_rates(model, dataset, max_batches)
    keep = []
    for rate in rates:
        kept = np.flatnonzero(rate > threshold)
        keep.append(kept if kept.size else np.array([int(np.argmax(rate))]))

    gate = _gate_layer(model)
    out_keep, in_keep, channel_keep = {}, {}, {}
    for layer in model.layers:
        if isinstance(layer, channel_gates.ChannelGate):
            index = _gate_index(layer)
            producer, between = _producer_chain(layer)
            in_keep[layer.name] = keep[index]
            out_keep[producer.name] = keep[index]
            for other in between:
                channel_keep[other.name] = keep[index]

    def replace(layer):
        config = layer.get_config()
        if layer.name in out_keep:
            config["filters"] = int(out_keep[layer.name].size)
        if layer is gate:
            config["gate_channels"] = [int(k.size) for k in keep]
        return layer.__class__.from_config(config)

    pruned = _graph.clone(model, replace)
    for old in model.layers:
        if not old.weights:
            continue
        new = pruned.get_layer(old.name)
        if old is gate:
            _copy_gate(old, new, keep)
            continue
        weights = [keras.ops.convert_to_numpy(w) for w in old.weights]
        if old.name in channel_keep:
            weights = [w[channel_keep[old.name]] for w in weights]
        if isinstance(old, keras.layers.Conv2D):
            if old.name in in_keep:
                weights[0] = weights[0][:, :, in_keep[old.name], :]
            if old.name in out_keep:
                weights[0] = weights[0][..., out_keep[old.name]]
                if old.use_bias:
                    weights[1] = weights[1][out_keep[old.name]]
        new.set_weights(weights)
    return pruned


def _copy_gate(old, new, keep):
    by_path = {w.path.split("/", 1)[1]: keras.ops.convert_to_numpy(w) for w in old.weights}
    for weight in new.weights:
        value = by_path[weight.path.split("/", 1)[1]]
        for head, kept in zip(old.heads, keep):
            if weight.path.split("/", 1)[1] == f"{head.name}/kernel":
                value = value[:, kept]
        weight.assign(value)
