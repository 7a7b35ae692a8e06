"""The routing zoo: registered factories, their structure (k annealed over depth, task readouts),
a training step with logged routing statistics, and the cost rule (k of n experts)."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing.layers import RoutedExperts
from keras_routing.zoo import routing_convnet, routing_mlp_mnist
from keras_routing.zoo.routing import k_annealed
from tests.reference import to_numpy


def test_the_routing_factories_are_registered_in_their_family():
    names = keras_routing.zoo.list_models(family="routing")
    assert {"routing_mlp_mnist", "routing_convnet"} <= set(names)
    assert keras_routing.zoo.info("routing_convnet").task == "multitask"


def test_k_anneals_from_7_to_2_over_the_8_routed_layers():
    assert k_annealed(7, 2, 8) == [7, 6, 6, 5, 4, 3, 3, 2]
    assert k_annealed(3, 1, 3) == [3, 2, 1]
    with pytest.raises(ValueError, match="k_schedule"):
        routing_convnet(tasks=2, routed_layers=2, k_schedule=[2])
    with pytest.raises(ValueError, match="classes_per_task"):
        routing_convnet(tasks=2, classes_per_task=[3])


@pytest.mark.slow  # 8 routed layers of 7 experts: ~40 s eagerly on JAX on 2 shared cores
def test_the_convnet_routes_every_layer_with_its_k_and_masks_readouts():
    model = routing_convnet(tasks=2, classes_per_task=[3, 5], input_shape=(8, 8, 1), filters=8, pool_after=())
    routed = [layer for layer in model.layers if isinstance(layer, RoutedExperts)]
    assert [layer.k for layer in routed] == k_annealed(7, 2, 8)
    assert all(len(layer.experts) == 7 and layer.router.task_embedding_dim == 8 for layer in routed)
    ablation = routing_convnet(
        tasks=2,
        classes_per_task=[3, 5],
        input_shape=(8, 8, 1),
        filters=8,
        routed_layers=2,
        expert_types=["conv3x3"] * 3,
        k_schedule=[2, 1],
        pool_after=(),
    )
    routed = [layer for layer in ablation.layers if isinstance(layer, RoutedExperts)]
    assert [layer.k for layer in routed] == [2, 1]
    # Readouts: a task's logits beyond its classes are masked.
    x = np.random.RandomState(0).rand(2, 8, 8, 1).astype("float32")
    logits = to_numpy(model([x, np.array([0, 1], "int32")]))
    assert logits.shape == (2, 5)
    assert (logits[0, 3:] < -1e8).all() and (np.abs(logits[1]) < 1e8).all()


@pytest.mark.slow  # a compiled training step: 40-80 s on TF / JAX on 2 shared cores
def test_the_mnist_model_trains_a_step_and_logs_expert_load():
    model = routing_mlp_mnist()
    routed = model.get_layer("routed")
    assert routed.k == 2 and len(routed.experts) == 5
    model.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.RandomState(1)
    history = model.fit(rng.rand(16, 28, 28, 1), rng.randint(0, 10, 16), batch_size=8, verbose=0)
    loads = [history.history[f"router_expert_load_{i}"][0] for i in range(5)]
    assert sum(loads) == pytest.approx(2.0, abs=1e-5)


def test_profile_counts_k_of_n_experts():
    inputs = keras.Input((8, 8, 4))
    layer = RoutedExperts(["conv3x3", "identity"], 1, filters=4, stacked=1, name="routed")
    model = keras.Model(inputs, layer(inputs))
    report = keras_routing.profile(model)
    conv = 8 * 8 * 3 * 3 * 4 * 4  # the conv3x3 expert; identity costs nothing
    router = 4 * 2  # clean logits from the pooled features
    assert report.madds == router + conv // 2  # k = 1 of n = 2, load spread evenly
    measured = keras_routing.profile(model, rates={"routed": [1.0, 0.0]})
    assert measured.expected_madds == pytest.approx(router + conv)
