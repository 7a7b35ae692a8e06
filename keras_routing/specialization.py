"""Expert specialization under hard (top-k) routing: the routing paper's Fig. 4.

    weights, labels = analysis.routing_weights(model, test_batches)   # {router: (N, experts)}
    choices = expert_choices(weights["routed/router"], labels)   # a router held by layer "routed"
    plot_expert_choices(choices, "fig4.png")

An expert is *chosen* for an example where its gate is non-zero (a ``NoisyTopKRouter`` gives
exactly ``k`` per example in inference). The paper aggregates those choices over the test set:
per class, the proportion of its choices that went to each expert (Fig. 4, left); per expert,
the proportion of the examples that chose it that belong to each class (right).
"""

from dataclasses import dataclass

import numpy as np

from keras_routing.analysis import _pyplot, _save


@dataclass
class ExpertChoices:
    """Aggregated expert choices of one routed layer over a labelled set."""

    classes: np.ndarray  # (C,) class ids, in row order of ``per_class``
    per_class: np.ndarray  # (C, E): share of class c's choices that went to expert e (rows sum to 1)
    per_expert: np.ndarray  # (E, C): share of expert e's choices that came from class c (rows sum to 1)
    k: int  # experts chosen per example (the most frequent count)

    @property
    def concentration(self):
        """Mean over classes of the share of a class's choices taken by its ``k`` most chosen
        experts: 1 when every class always uses the same ``k`` experts, ``k / E`` when choices
        ignore the class (uniform)."""
        top = np.sort(self.per_class, axis=1)[:, ::-1][:, : self.k]
        return float(top.sum(axis=1).mean())

    @property
    def uniform_concentration(self):
        return self.k / self.per_class.shape[1]


def expert_choices(weights, labels):
    """``ExpertChoices`` from gates ``weights`` ``(examples, experts)`` and integer ``labels``."""
    weights, labels = np.asarray(weights), np.asarray(labels).reshape(-1)
    if weights.ndim != 2 or len(weights) != len(labels):
        raise ValueError(
            f"`weights` must be (examples, experts) with one label per example; got weights "
            f"{weights.shape} and {labels.shape[0]} labels."
        )
    chosen = (weights > 0).astype("float64")
    classes = np.unique(labels)
    counts = np.stack([chosen[labels == c].sum(axis=0) for c in classes])  # (C, E)
    per_class = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    per_expert = counts.T / np.maximum(counts.T.sum(axis=1, keepdims=True), 1)
    per_example = chosen.sum(axis=1).astype("int64")
    k = int(np.bincount(per_example).argmax())
    return ExpertChoices(classes, per_class, per_expert, k)


def plot_expert_choices(choices, path, class_names=None):
    """Fig. 4 as a PNG: cumulative horizontal bars of experts per class (left) and of classes per
    expert (right)."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [str(class_names[c]) if class_names else str(c) for c in choices.classes]
    _stacked(left, choices.per_class, names, "expert", plt.get_cmap("tab10"))
    left.set_title("expert proportion per label", fontsize=9)
    left.set_ylabel("label")
    experts = [str(e) for e in range(choices.per_expert.shape[0])]
    _stacked(right, choices.per_expert, experts, "label", plt.get_cmap("tab10"), legend_names=names)
    right.set_title("label proportion per expert", fontsize=9)
    right.set_ylabel("expert")
    figure.suptitle(
        f"Expert choices (k = {choices.k}): concentration {choices.concentration:.3f} "
        f"(uniform {choices.uniform_concentration:.3f})",
        fontsize=9,
    )
    return _save(figure, path, plt)


def _stacked(axis, shares, row_names, part, colormap, legend_names=None):
    left = np.zeros(len(shares))
    for index in range(shares.shape[1]):
        label = legend_names[index] if legend_names else str(index)
        axis.barh(range(len(shares)), shares[:, index], left=left, color=colormap(index % 10), label=label)
        left += shares[:, index]
    axis.set_yticks(range(len(shares)))
    axis.set_yticklabels(row_names)
    axis.set_xlim(0, 1)
    axis.set_xlabel("cumulative proportion")
    axis.legend(title=part, fontsize=6, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
