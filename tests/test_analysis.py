"""Routing statistics against literal computations, and the plots as real PNG files."""

import numpy as np
import pytest

import keras

from keras_routing import analysis
from keras_routing.layers import CondConv2D, CondDense, Routing
from keras_routing.layers.router import Router


def small_model():
    inputs = keras.Input((8, 8, 3))
    r = Routing(4, name="block_routing")(inputs)
    x = CondConv2D(6, 3, 4, routing=None, name="conv")(inputs, routing_weights=r)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = CondDense(3, 4, name="classifier")(x)  # routes itself
    return keras.Model(inputs, outputs)


def test_routing_weights_are_the_routing_functions_outputs():
    model = small_model()
    images = np.random.default_rng(0).normal(size=(10, 8, 8, 3)).astype("float32")
    labels = np.arange(10) % 3
    dataset = [(images[:6], labels[:6]), (images[6:], np.eye(3, dtype="float32")[labels[6:]])]
    weights, got_labels = analysis.routing_weights(model, dataset)
    assert list(weights) == ["block_routing", "classifier/routing"]
    np.testing.assert_array_equal(got_labels, labels)  # one-hot (mixup) labels as indices
    # Literal reference: sigmoid(dense(mean over height and width)).
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer("block_routing").logits.weights)
    expected = 1 / (1 + np.exp(-(images.mean(axis=(1, 2)) @ kernel + bias)))
    np.testing.assert_allclose(weights["block_routing"], expected, rtol=1e-5, atol=1e-6)
    assert weights["classifier/routing"].shape == (10, 4)


def test_class_means_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    # Expert c fires for class c: the per-class mean must find it.
    weights = {"layer": np.where(np.eye(4)[labels] > 0, 0.9, 0.1) + rng.uniform(-0.05, 0.05, (60, 4))}
    means = analysis._class_means(weights["layer"], labels, np.arange(3))
    np.testing.assert_array_equal(means.argmax(axis=1), [0, 1, 2])
    paths = [
        analysis.plot_routing_by_class(weights, labels, tmp_path / "a.png", class_names=["x", "y", "z"]),
        analysis.plot_top_classes_per_expert(weights, labels, tmp_path / "b.png", top=2),
        analysis.plot_weight_distribution(weights, tmp_path / "c.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_model_without_routing_is_rejected():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no routing"):
        analysis.routing_outputs(model)


class TopOneRouter(Router):
    """Any router, not CondConv's: expert ``argmax`` of a dense layer on the pooled input,
    returned as ``(indices, one-hot gates)``."""

    def __init__(self, num_experts, **kwargs):
        super().__init__(num_experts, **kwargs)
        self.logits = keras.layers.Dense(num_experts, name="logits")

    def build(self, input_shape):
        self.logits.build(self.global_features_shape(input_shape))

    def call(self, x):
        index = keras.ops.argmax(self.logits(self.global_features(x)), axis=-1)
        return index, keras.ops.one_hot(index, self.num_experts)


class GatedBlock(keras.layers.Layer):
    """A block that holds its router: the first expert's gate scales the input."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = TopOneRouter(2, name="gate")

    def call(self, x):
        _, gates = self.gate(x)
        return x * gates[:, 0, None, None, None]


def test_any_router_is_analysed_called_or_held():
    inputs = keras.Input((4, 4, 3))
    _, gates = TopOneRouter(3, name="router")(inputs)
    x = GatedBlock(name="block")(inputs)
    model = keras.Model(inputs, [gates, x])
    images = np.random.default_rng(0).normal(size=(12, 4, 4, 3)).astype("float32")
    weights, _ = analysis.routing_weights(model, [(images, np.zeros(12))])
    assert list(weights) == ["router", "block/gate"]  # the integer indices are no weights

    def literal(router):  # one-hot of the argmax of dense(mean over height and width)
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in router.logits.weights)
        return np.eye(router.num_experts)[(images.mean(axis=(1, 2)) @ kernel + bias).argmax(-1)]

    np.testing.assert_array_equal(weights["router"], literal(model.get_layer("router")))
    np.testing.assert_array_equal(weights["block/gate"], literal(model.get_layer("block").gate))


# --- the paper's Figs. 4-7 ---------------------------------------------------------------------


def test_class_statistics_are_per_class_means_and_deviations():
    rng = np.random.default_rng(1)
    weights, labels = rng.uniform(size=(30, 5)), np.array([0] * 10 + [2] * 15 + [3] * 5)
    means, stds = analysis.class_statistics(weights, labels, [2, 0, 7])
    for row, c in enumerate([2, 0]):
        members = [i for i in range(30) if labels[i] == c]
        for e in range(5):
            values = [weights[i, e] for i in members]
            mean = sum(values) / len(values)
            assert means[row, e] == pytest.approx(mean)
            assert stds[row, e] == pytest.approx((sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5)
    assert np.isnan(means[2]).all() and np.isnan(stds[2]).all()  # no example of class 7
    # Across all classes: the mean of the three class means (not of the 30 examples).
    expected = (weights[:10].mean(0) + weights[10:25].mean(0) + weights[25:].mean(0)) / 3
    np.testing.assert_allclose(analysis.all_class_mean(weights, labels), expected)


def test_top_examples_per_expert_ranks_classes_and_picks_exemplars():
    labels = np.repeat(np.arange(4), 3)  # 4 classes x 3 examples
    weights = np.full((12, 3), 0.1)
    weights[labels == 2, 0] = [0.6, 0.9, 0.7]  # expert 0: class 2 (exemplar: example 7), then class 1
    weights[labels == 1, 0] = [0.5, 0.4, 0.45]
    weights[labels == 3, 1] = [0.8, 0.2, 0.3]  # expert 1: class 3 (exemplar 9)
    ranking = analysis.top_examples_per_expert(weights, labels, experts=[0, 1], top=2)
    assert [(c, i) for c, _, i in ranking[0]] == [(2, 7), (1, 3)]
    assert ranking[0][0][1] == pytest.approx(np.mean([0.6, 0.9, 0.7]))
    assert [c for c, _, _ in ranking[1]][0] == 3 and ranking[1][0][2] == 9
    # Default experts: those whose best class stands out most (0 and 1 here; 2 is flat).
    assert set(analysis.top_examples_per_expert(weights, labels, top=1)) >= {0, 1}


def test_examples_at_counts_positions_across_batches():
    images = np.arange(10 * 2 * 2 * 1, dtype="float32").reshape(10, 2, 2, 1)
    dataset = [(images[:4], np.zeros(4)), (images[4:8], np.zeros(4)), (images[8:], np.zeros(2))]
    found = analysis.examples_at(dataset, [9, 0, 5])
    assert sorted(found) == [0, 5, 9]
    for i in found:
        np.testing.assert_array_equal(found[i], images[i])


def test_the_four_figures_from_real_digits(tmp_path):
    from keras_routing.data import load_digit_images

    _, (images, labels) = load_digit_images(size=8)
    images, labels = images[:96], labels[:96]
    dataset = [(images[i : i + 32], labels[i : i + 32]) for i in range(0, 96, 32)]
    paths = analysis.write_routing_plots(
        small_model(), dataset, tmp_path, [f"digit {d}" for d in range(10)], classes=[3, 7]
    )
    assert set(paths) == {
        "routing_by_class",  # Fig. 4: chosen classes and the all-class mean
        "routing_spread",  # Fig. 5
        "top_examples_per_expert",  # Fig. 6, as images
        "top_classes_per_expert",
        "weight_distribution",  # Fig. 7
    }
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
