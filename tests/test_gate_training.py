"""Training utilities of the gated models: BatchNorm recalibration, target annealing, variable target."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing import schedules
from keras_routing.layers import GateTargetLoss
from keras_routing.training.target_rate import VariableTargetReset, annealing_schedule
from tests.reference import to_numpy


def test_recalibrate_batchnorm_sets_the_mean_of_batch_statistics():
    inputs = keras.Input((3,))
    norm = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)
    dense = keras.layers.Dense(2)
    # A training call also advances schedule counters: recalibration leaves them as they were.
    target = GateTargetLoss(schedules.Linear(1.0, 0.5, 10))
    model = keras.Model(inputs, target([dense(norm(inputs)), keras.layers.Dense(1)(inputs)]))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, scale=1 + i, size=(8, 3)).astype("float32") for i in range(4)]
    kernel = to_numpy(dense.kernel).copy()
    used = keras_routing.recalibrate_batchnorm(model, batches, steps=3)
    assert used == 3
    np.testing.assert_allclose(
        to_numpy(norm.moving_mean), np.mean([b.mean(0) for b in batches[:3]], 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(norm.moving_variance), np.mean([b.var(0) for b in batches[:3]], 0), rtol=1e-4
    )
    assert (
        norm.momentum == 0.99 and int(to_numpy(target._scheduled_variables.entries["target_rate"].step)) == 0
    )
    np.testing.assert_array_equal(to_numpy(dense.kernel), kernel)
    with pytest.raises(ValueError, match="steps"):
        keras_routing.recalibrate_batchnorm(model, batches, steps=0)


def test_annealing_steps_the_target_down_and_the_variable_target_resets_each_epoch():
    schedule = annealing_schedule(0.5, steps_per_epoch=4, start=0.6, delta=0.05, every_epochs=2)
    values = [float(to_numpy(schedule(step))) for step in (0, 7, 8, 15, 16, 100)]
    np.testing.assert_allclose(values, [0.6, 0.6, 0.55, 0.55, 0.5, 0.5], atol=1e-7)
    inputs, gates = keras.Input((2,)), keras.Input((1,))
    layer = GateTargetLoss(0.8, target_momentum=0.5)
    model = keras.Model([inputs, gates], layer([keras.layers.Dense(1)(inputs), gates]))
    model.compile(optimizer="sgd", loss="mse")
    x, z, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32"), np.zeros((4, 1), "float32")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(float(to_numpy(layer.moving_target)))

    model.fit([x, z], y, batch_size=4, epochs=2, verbose=0, callbacks=[VariableTargetReset(), Record()])
    # Each epoch: from 0.8, one step towards the open rate 0: 0.4.
    np.testing.assert_allclose(seen, [0.4, 0.4], rtol=1e-6)
