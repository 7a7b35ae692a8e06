"""What the routers learned: routing weights collected over a dataset, and the CondConv paper's plots.

    weights, labels = routing_weights(model, dataset)          # {layer name: (N, experts)}, (N,)
    paths = write_routing_plots(model, dataset, "outputs/run/plots", class_names)

- ``plot_routing_by_class``: mean routing weight per expert at every routed layer for chosen
  classes and across all classes (the paper's Fig. 4: routing grows class-specific with depth).
- ``plot_routing_spread``: mean and standard deviation over the examples of each chosen class
  of every expert's routing weight in the last routed layer (Fig. 5).
- ``plot_top_examples_per_expert``: for a few experts of the last routed layer, the top classes
  by mean routing weight, each shown by its example with the highest weight (Fig. 6);
  ``plot_top_classes_per_expert`` gives the same ranking as bars for every expert.
- ``plot_weight_distribution``: the distribution of routing weights at each layer over a
  dataset (Fig. 7 shows the last).

The paper's figures use the ImageNet validation set and, for Figs. 4-5, the classes goldfish,
pug, plane and cliff (``PAPER_IMAGENET_CLASSES``); ``classes=`` picks them.
"""

import math
import pathlib

import numpy as np

import keras

from keras_routing.layers.router import Router
from keras_routing.transforms import _graph

# The four classes of the paper's Figs. 4-5, chosen by Hu et al. (2018) "for semantic and
# appearance diversity", as ImageNet 2012 (TFDS imagenet2012) label ids. The paper names them,
# not their ids; "plane" is taken as ImageNet's class of that name (726, n03954731), which may be
# the carpenter's tool and not the aircraft ("airliner", 404).
PAPER_IMAGENET_CLASSES = {"goldfish": 1, "pug": 254, "plane": 726, "cliff": 972}


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


def _chosen_classes(labels, classes, count=4):
    """``classes`` as an array, or by default the first ``count`` class ids that occur."""
    if classes is None:
        return np.unique(labels)[:count]
    classes = np.asarray(list(classes), dtype="int64")
    if classes.ndim != 1 or not len(classes):
        raise ValueError(f"`classes` must be a non-empty list of class ids, got {classes!r}.")
    return classes


def _class_name(class_names, c):
    return class_names[c] if class_names is not None and c < len(class_names) else str(c)


def class_statistics(weights, labels, classes):
    """``(means, standard deviations)``, each ``(len(classes), experts)``: the routing weights of
    one layer, ``weights`` ``(examples, experts)``, over the examples of each class (NaN for a
    class with no examples)."""
    weights, labels = np.asarray(weights), np.asarray(labels)
    means = _class_means(weights, labels, classes)
    stds = np.stack(
        [
            weights[labels == c].std(axis=0) if (labels == c).any() else np.full(weights.shape[1], np.nan)
            for c in classes
        ]
    )
    return means, stds


def all_class_mean(weights, labels):
    """The mean over all classes of each class's mean routing weight, ``(experts,)`` (the paper's
    Fig. 4 comparison bar; on a class-balanced set, the mean over all examples)."""
    return np.nanmean(_class_means(np.asarray(weights), np.asarray(labels), np.unique(labels)), axis=0)


def plot_routing_by_class(weights, labels, path, class_names=None, max_classes=20, classes=None):
    """Heatmaps (class x expert) of the mean routing weight at every routed layer: a row per class
    of ``classes`` (default: the first ``max_classes`` ids present) and a last row, the mean
    across all classes."""
    plt = _pyplot()
    classes = _chosen_classes(labels, classes, max_classes)
    names = [_class_name(class_names, c) for c in classes] + ["all classes"]
    figure, axes = _grid(plt, len(weights), 3.2, 0.25 * len(names) + 1.5)
    for axis, (name, values) in zip(axes, weights.items()):
        rows = np.vstack([_class_means(values, labels, classes), all_class_mean(values, labels)])
        image = axis.imshow(rows, aspect="auto", cmap="viridis")
        axis.axhline(len(classes) - 0.5, color="white", linewidth=1.5)
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("expert", fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=6)
        figure.colorbar(image, ax=axis)
    figure.suptitle(
        "Mean routing weight per class and across all classes\n(CondConv paper, Fig. 4)", fontsize=8
    )
    return _save(figure, path, plt)


def plot_routing_spread(weights, labels, path, classes=None, layer=None, class_names=None):
    """For each class of ``classes`` (default: the first four ids present), every expert's mean
    routing weight in ``layer`` (default: the last routed layer) over the class's examples, with
    error bars of one standard deviation (the paper's Fig. 5)."""
    plt = _pyplot()
    layer = layer or list(weights)[-1]
    classes = _chosen_classes(labels, classes)
    means, stds = class_statistics(weights[layer], labels, classes)
    experts = np.arange(means.shape[1])
    figure, axes = _grid(plt, len(classes), max(3.0, 0.18 * len(experts) + 1.0), 2.4)
    for axis, c, mean, std in zip(axes, classes, means, stds):
        axis.bar(experts, mean, yerr=std, capsize=2, color="tab:blue", ecolor="black")
        axis.set_ylim(0.0, 1.05 if np.nanmax(mean + std, initial=0.0) <= 1.05 else None)
        axis.set_title(
            f"{_class_name(class_names, c)} ({int((np.asarray(labels) == c).sum())} examples)", fontsize=8
        )
        axis.set_xlabel("expert", fontsize=7)
    figure.suptitle(
        f"Routing weights of {layer} per class:\nmean and one standard deviation (Fig. 5)", fontsize=8
    )
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


def top_examples_per_expert(weights, labels, experts=None, top=10):
    """``{expert: [(class, mean weight, example index), ...]}``: for each of ``experts`` (default:
    the four whose best class stands out most above the average class), the ``top`` classes by
    mean routing weight in ``weights`` ``(examples, experts)``, each with the index of its example
    with the highest weight for that expert (the paper's Fig. 6 exemplars)."""
    weights, labels = np.asarray(weights), np.asarray(labels)
    classes = np.unique(labels)
    means = _class_means(weights, labels, classes)  # (classes, experts)
    if experts is None:
        standout = np.nanmax(means, axis=0) - np.nanmean(means, axis=0)
        experts = np.argsort(-standout, kind="stable")[: min(4, means.shape[1])]
    ranking = {}
    for expert in experts:
        order = np.argsort(-means[:, expert], kind="stable")[:top]
        rows = []
        for i in order:
            members = np.flatnonzero(labels == classes[i])
            best = members[np.argmax(weights[members, expert])]
            rows.append((int(classes[i]), float(means[i, expert]), int(best)))
        ranking[int(expert)] = rows
    return ranking


def examples_at(dataset, indices, max_batches=None):
    """``{index: image}`` of the examples at ``indices`` (positions in the order ``dataset``
    yields them, as ``routing_weights`` counts them); the dataset must repeat its order
    (an evaluation split, unshuffled)."""
    wanted, found, start = {int(i) for i in indices}, {}, 0
    for index, (images, _) in enumerate(dataset):
        if (max_batches is not None and index >= max_batches) or len(found) == len(wanted):
            break
        images = np.asarray(images)
        for i in wanted & set(range(start, start + len(images))):
            found[i] = images[i - start]
        start += len(images)
    return found


def _displayable(image):
    """An image in any normalisation as [0, 1] for ``imshow`` (its own minimum and maximum)."""
    image = np.asarray(image, dtype="float32")
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image[..., 0] if image.shape[-1] == 1 else image


def plot_top_examples_per_expert(ranking, images, path, layer="", class_names=None):
    """The paper's Fig. 6: a row per expert of ``ranking`` (``top_examples_per_expert``), a column
    per top class, each cell the class's example with the highest routing weight for that expert
    (``images``: ``{example index: image}``, from ``examples_at``), labelled with the class and
    its mean weight. One montage on one axis (forty sub-axes take seconds to lay out)."""
    plt = _pyplot()
    rows, columns = len(ranking), max(len(v) for v in ranking.values())
    first = _displayable(next(iter(images.values())))
    height, width = first.shape[:2]
    gap = max(1, height // 8)
    canvas = np.ones(((height + gap) * rows, (width + gap) * columns, 3), "float32")
    for row, entries in enumerate(ranking.values()):
        for column, (_, _, index) in enumerate(entries):
            image = _displayable(images[index])
            image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
            top, left = row * (height + gap), column * (width + gap)
            canvas[top : top + height, left : left + width] = image
    figure, axis = plt.subplots(figsize=(1.2 * columns + 0.8, 1.4 * rows + 0.6))
    axis.imshow(canvas, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks(
        [(r + 0.5) * (height + gap) for r in range(rows)], [f"expert {e}" for e in ranking], fontsize=7
    )
    for row, entries in enumerate(ranking.values()):
        for column, (c, mean, _) in enumerate(entries):
            axis.text(
                column * (width + gap) + width / 2,
                row * (height + gap) - gap / 2,
                f"{_class_name(class_names, c)} {mean:.2f}",
                ha="center",
                va="bottom",
                fontsize=5,
            )
    axis.set_title(
        f"Top classes by mean routing weight, each by its example with the highest weight: {layer} (Fig. 6)",
        fontsize=8,
        pad=12,
    )
    return _save(figure, path, plt)


def plot_weight_distribution(weights, path, bins=40):
    """Histograms of the routing weights over the dataset at every routed layer, in model order
    (the paper's Fig. 7 is the last: bimodal, near 0 or 1)."""
    plt = _pyplot()
    figure, axes = _grid(plt, len(weights), 3, 2.2)
    last = list(weights)[-1]
    for axis, (name, values) in zip(axes, weights.items()):
        axis.hist(
            values.ravel(), bins=bins, range=(0.0, 1.0), color="tab:red" if name == last else "tab:blue"
        )
        axis.set_title(name + (" (last: Fig. 7)" if name == last else ""), fontsize=8)
    figure.suptitle(
        "Distribution of routing weights per layer over the dataset\n(CondConv paper, Fig. 7)", fontsize=8
    )
    return _save(figure, path, plt)


def _save(figure, path, plt):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_routing_plots(model, dataset, directory, class_names=None, max_batches=None, classes=None):
    """The paper's Figs. 4-7 as PNGs in ``directory``, from ``model``'s routing over ``dataset``
    (an evaluation split, unshuffled: Fig. 6 reads its exemplar images in a second pass);
    ``classes``: the class ids of Figs. 4-5 (default the first four). Returns
    ``{plot name: path}``."""
    weights, labels = routing_weights(model, dataset, max_batches)
    directory = pathlib.Path(directory)
    last = list(weights)[-1]
    ranking = top_examples_per_expert(weights[last], labels)
    images = examples_at(dataset, [i for rows in ranking.values() for _, _, i in rows], max_batches)
    return {
        "routing_by_class": plot_routing_by_class(
            weights, labels, directory / "routing_by_class.png", class_names, classes=classes
        ),
        "routing_spread": plot_routing_spread(
            weights, labels, directory / "routing_spread.png", classes, class_names=class_names
        ),
        "top_examples_per_expert": plot_top_examples_per_expert(
            ranking, images, directory / "top_examples_per_expert.png", last, class_names
        ),
        "top_classes_per_expert": plot_top_classes_per_expert(
            weights, labels, directory / "top_classes_per_expert.png", class_names=class_names
        ),
        "weight_distribution": plot_weight_distribution(weights, directory / "weight_distribution.png"),
    }
