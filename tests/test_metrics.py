"""Routing statistics: the statistic functions against NumPy, and a toy layer's statistics in
``fit``'s ``History`` (and ``evaluate``, and ``val_``) with their literal epoch means."""

import numpy as np
import pytest

import keras

from keras_routing import metrics
from keras_routing.models.task import Task
from tests.interrupt import Interrupt, KillAt


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


GATES = np.array(
    [[0.7, 0.0, 0.3], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8], [0.1, 0.0, 0.9]], "float32"
)


def test_statistic_functions_follow_their_definitions():
    np.testing.assert_allclose(numpy(metrics.expert_load(GATES)), [3 / 5, 2 / 5, 4 / 5], rtol=1e-6)
    z = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], "float32")
    np.testing.assert_allclose(numpy(metrics.open_rate(z)), [0.75, 0.25])
    assert numpy(metrics.open_rate(z[:, 0])) == pytest.approx(0.75)
    assert numpy(metrics.zero_fraction(GATES)) == pytest.approx(6 / 15)
    kept = GATES * np.array(
        [[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 1, 0]], "float32"
    )  # 3 of 9 dropped
    assert numpy(metrics.dropped_fraction(GATES, kept)) == pytest.approx(3 / 9)
    assert numpy(metrics.dropped_fraction(np.zeros((2, 3)), np.zeros((2, 3)))) == 0.0


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class Routed(keras.layers.Layer):
    """Treats its input as gates: records the expert load (a vector) and the zero fraction."""

    def __init__(self, experts=3, **kwargs):
        super().__init__(**kwargs)
        self.experts = experts
        metrics.add_statistic(self, "expert_load", (experts,))
        metrics.add_statistic(self, "zero_fraction")

    def call(self, gates):
        metrics.record_statistic(self, "expert_load", metrics.expert_load(gates))
        metrics.record_statistic(self, "zero_fraction", metrics.zero_fraction(gates))
        return gates

    def get_config(self):
        return {**super().get_config(), "experts": self.experts}


def build():
    inputs = keras.Input((3,))
    model = Task(inputs, keras.layers.Dense(1)(Routed(name="routed")(inputs)))
    model.compile(loss="mse")
    return model


def test_statistics_are_logged_with_their_epoch_means_over_examples():
    """Batches of 2, 2 and 1: each batch's value is weighted by its size, so the epoch's is the
    statistic over all five examples."""
    model = build()
    y = np.zeros((5, 1), "float32")
    history = model.fit(GATES, y, batch_size=2, epochs=2, verbose=0, validation_data=(GATES[:3], y[:3]))
    load = (GATES != 0).mean(axis=0)
    for i in range(3):
        np.testing.assert_allclose(history.history[f"routed_expert_load_{i}"], [load[i]] * 2, rtol=1e-6)
    np.testing.assert_allclose(history.history["routed_zero_fraction"], [6 / 15] * 2, rtol=1e-6)
    val_load = (GATES[:3] != 0).mean(axis=0)
    np.testing.assert_allclose(history.history["val_routed_expert_load_1"], [val_load[1]] * 2, rtol=1e-6)
    np.testing.assert_allclose(history.history["val_routed_zero_fraction"], [4 / 9] * 2, rtol=1e-6)
    # Not folded into the loss: the data loss alone.
    assert "loss" in history.history and len(history.history) == 2 * 5

    results = model.evaluate(GATES[3:], y[3:], batch_size=1, verbose=0, return_dict=True)
    assert results["routed_zero_fraction"] == pytest.approx(2 / 6)
    # The layer's variable holds the last batch's value, read after predict too.
    model.predict(GATES[:1], verbose=0)
    np.testing.assert_allclose(numpy(model.get_layer("routed").expert_load), [1.0, 0.0, 1.0])


def test_a_statistic_is_a_non_trainable_float32_weight_and_names_are_checked():
    layer = Routed()
    assert [w.name for w in layer.non_trainable_weights] == ["expert_load", "zero_fraction"]
    assert layer.expert_load.dtype == "float32" and tuple(layer.expert_load.shape) == (3,)
    with pytest.raises(ValueError, match="already"):
        metrics.add_statistic(layer, "zero_fraction")
    with pytest.raises(ValueError, match="`name`"):
        metrics.add_statistic(layer, "zero fraction")


def test_an_epoch_resumed_mid_way_logs_the_statistics_of_all_its_steps(tmp_path):
    """``fit_resumable`` adds the backed-up running totals of every metric: the statistics' too."""
    import tensorflow as tf

    from keras_routing.training import fit_resumable

    x = np.concatenate([GATES, GATES[::-1], GATES[:2]])  # 12 examples: 2 epochs of 3 steps of 2
    stream = tf.data.Dataset.from_tensor_slices((x, np.zeros((12, 1), "float32"))).batch(2)
    model = build()
    with pytest.raises(Interrupt):
        fit_resumable(
            model,
            stream,
            epochs=2,
            steps_per_epoch=3,
            backup_dir=tmp_path,
            backup_every=2,
            callbacks=[KillAt(5)],
            verbose=0,
        )
    history = fit_resumable(build(), stream, epochs=2, steps_per_epoch=3, backup_dir=tmp_path, verbose=0)
    second_epoch = x[6:]
    np.testing.assert_allclose(
        history.history["routed_zero_fraction"], [(second_epoch == 0).mean()], rtol=1e-6
    )
    np.testing.assert_allclose(
        history.history["routed_expert_load_2"], [(second_epoch[:, 2] != 0).mean()], rtol=1e-6
    )
