"""What the routers learned: routing weights collected over a dataset, and the CondConv paper's plots.

    weights, labels = routing_weights(model, dataset)          # {layer name: (N, experts)}, (N,)
    paths = write_routing_plots(model, dataset, "outputs/run/plots", class_names)

- ``plot_routing_by_class``: mean routing weight per class and expert at every routed layer
  (the paper's Fig. 4: routing grows class-specific with depth).
- ``plot_top_classes_per_expert``: the classes that most activate each expert of one layer
  (Fig. 6 shows such examples as images; here as the classes' mean weights).
- ``plot_weight_distribution``: the distribution of routing weights at each layer (Fig. 7).
"""

import math
import pathlib

import numpy as np

import keras

from keras_routing.layers.router import Router
from keras_routing.transforms import _graph


def _router_owners(layers):
    """``{id(router): the layer that holds it}`` for routers held by a layer (the own routing of
    an expert layer, a gate inside a gated block); routers of nested models are not held."""
    return {
        id(sub): layer
        for layer in layers
        if not isinstance(layer, keras.Model)
        for sub in _graph.sublayers(layer)
        if isinstance(sub, Router)
    }


def _named_outputs(name, output):
    """A router's symbolic output by name: one tensor, or one per tensor of a router that returns
    several (``name/0``, ...); integer tensors (expert indices) are not routing weights."""
    tensors = [t for t in keras.tree.flatten(output) if "int" not in keras.backend.standardize_dtype(t.dtype)]
    if len(tensors) == 1:
        return {name: tensors[0]}
    return {f"{name}/{index}": tensor for index, tensor in enumerate(tensors)}


def routing_outputs(model):
    """``{name: symbolic routing weights}`` of a functional model: the outputs of every
    ``Router`` it calls, and those of the routers its layers hold (an expert layer that routes
    itself), computed from the holding layer's input and named ``layer/router``."""
    outputs = {}
    layers = _graph.all_layers(model)
    owners = _router_owners(layers)
    for layer in layers:
        if not isinstance(layer, Router):
            continue
        owner = owners.get(id(layer))
        if owner is None and _graph.call_count(layer):
            outputs.update(_named_outputs(layer.name, layer.output))
        elif owner is not None and _graph.call_count(owner):
            outputs.update(_named_outputs(f"{owner.name}/{layer.name}", layer(owner.input)))
    if not outputs:
        raise ValueError(f"Model {model.name!r} has no routing functions to analyse.")
    return outputs


def routing_weights(model, dataset, max_batches=None):
    """Routing weights of every routed layer over ``dataset`` (batches of ``(images, labels)``).

    Returns ``({layer name: array (examples, experts)}, labels (examples,))``; per-channel
    routing is averaged over channels, one-hot (mixup) labels become class indices.
    """
    outputs = routing_outputs(model)
    probe = keras.Model(model.input, outputs)
    collected, labels = {name: [] for name in outputs}, []
    for index, (images, batch_labels) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        for name, value in probe.predict_on_batch(np.asarray(images)).items():
            value = np.asarray(keras.ops.convert_to_numpy(value), dtype="float32")
            collected[name].append(value.mean(axis=2) if value.ndim == 3 else value)
        batch_labels = np.asarray(batch_labels)
        labels.append(batch_labels.argmax(axis=-1) if batch_labels.ndim == 2 else batch_labels)
    return {name: np.concatenate(v) for name, v in collected.items()}, np.concatenate(labels)


def _class_means(weights, labels, classes):
    return np.stack(
        [
            weights[labels == c].mean(axis=0) if (labels == c).any() else np.full(weights.shape[1], np.nan)
            for c in classes
        ]
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, panels, width, height):
    """A figure of ``panels`` axes, four to a row, ``width`` x ``height`` inches each; the
    axes left over in the last row are switched off."""
    columns = min(4, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[panels:]:
        axis.axis("off")
    return figure, axes.flat[:panels]


def plot_routing_by_class(weights, labels, path, class_names=None, max_classes=20):
    """Heatmaps (class x expert) of the mean routing weight at every routed layer."""
    plt = _pyplot()
    classes = np.unique(labels)[:max_classes]
    names = [class_names[c] if class_names else str(c) for c in classes]
    figure, axes = _grid(plt, len(weights), 3.2, 0.25 * len(classes) + 1.5)
    for axis, (name, values) in zip(axes, weights.items()):
        image = axis.imshow(_class_means(values, labels, classes), aspect="auto", cmap="viridis")
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("expert", fontsize=7)
        axis.set_yticks(range(len(classes)), names, fontsize=6)
        figure.colorbar(image, ax=axis)
    figure.suptitle("Mean routing weight per class (CondConv paper, Fig. 4)")
    return _save(figure, path, plt)


def plot_top_classes_per_expert(weights, labels, path, layer=None, top=5, class_names=None):
    """For each expert of ``layer`` (default: the last routed layer), the ``top`` classes with the
    highest mean routing weight."""
    plt = _pyplot()
    layer = layer or list(weights)[-1]
    classes = np.unique(labels)
    means = _class_means(weights[layer], labels, classes)  # (classes, experts)
    figure, axes = _grid(plt, means.shape[1], 3, 2.2)
    for expert, axis in enumerate(axes):
        order = np.argsort(-np.nan_to_num(means[:, expert], nan=-np.inf))[:top]
        names = [class_names[classes[i]] if class_names else str(classes[i]) for i in order]
        axis.barh(range(len(order))[::-1], means[order, expert])
        axis.set_yticks(range(len(order))[::-1], names, fontsize=7)
        axis.set_title(f"expert {expert}", fontsize=8)
    figure.suptitle(f"Classes that most activate each expert of {layer} (cf. Fig. 6)")
    return _save(figure, path, plt)


def plot_weight_distribution(weights, path, bins=40):
    """Histograms of the routing weights at every routed layer, in model order."""
    plt = _pyplot()
    figure, axes = _grid(plt, len(weights), 3, 2.2)
    for axis, (name, values) in zip(axes, weights.items()):
        axis.hist(values.ravel(), bins=bins, range=(0.0, 1.0), color="tab:blue")
        axis.set_title(name, fontsize=8)
    figure.suptitle("Distribution of routing weights (CondConv paper, Fig. 7)")
    return _save(figure, path, plt)


def _save(figure, path, plt):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_routing_plots(model, dataset, directory, class_names=None, max_batches=None):
    """The three plots as PNGs in ``directory``; returns ``{plot name: path}``."""
    weights, labels = routing_weights(model, dataset, max_batches)
    directory = pathlib.Path(directory)
    return {
        "routing_by_class": plot_routing_by_class(
            weights, labels, directory / "routing_by_class.png", class_names
        ),
        "top_classes_per_expert": plot_top_classes_per_expert(
            weights, labels, directory / "top_classes_per_expert.png", class_names=class_names
        ),
        "weight_distribution": plot_weight_distribution(weights, directory / "weight_distribution.png"),
    }
