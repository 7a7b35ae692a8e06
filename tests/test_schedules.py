"""Schedules against their formulas, and scheduled variables inside ``fit``: the value follows
``optimizer.iterations`` within the compiled step (mid-epoch, on every backend), and a run
resumed from a backup or a saved model continues the schedule at the exact step."""

import numpy as np
import pytest

import keras

from keras_routing import losses, schedules
from keras_routing.training import fit_resumable
from tests.interrupt import Interrupt, KillAt


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def linear(step, start, end, steps, begin=0):
    return start + (end - start) * min(max((step - begin) / steps, 0.0), 1.0)


def test_constant_and_linear_follow_their_formulas():
    assert numpy(schedules.Constant(0.3)(17)) == pytest.approx(0.3)
    schedule = schedules.Linear(0.1, 0.0, steps=40, begin=10)
    for step in (0, 9, 10, 11, 25, 49, 50, 51, 1000):
        assert numpy(schedule(step)) == pytest.approx(linear(step, 0.1, 0.0, 40, 10), abs=1e-7)
    assert numpy(schedules.Linear(2.0, 7.0, 5)(np.int64(3))) == pytest.approx(5.0)


def test_piecewise_switches_at_each_boundary():
    schedule = schedules.Piecewise([4, 10], [1.0, 0.5, 0.0])
    expected = {0: 1.0, 3: 1.0, 4: 0.5, 9: 0.5, 10: 0.0, 99: 0.0}  # a boundary is the new value's first step
    for step, value in expected.items():
        assert numpy(schedule(step)) == value


def test_staircase_lowers_by_delta_every_k_steps_down_to_the_end():
    schedule = schedules.Piecewise.staircase(1.0, 0.8, 0.05, every=3)
    assert schedule.boundaries == [3, 6, 9, 12]
    np.testing.assert_allclose(schedule.values, [1.0, 0.95, 0.9, 0.85, 0.8])
    assert schedule.values[-1] == 0.8
    steps = np.arange(16)
    expected = np.clip(1.0 - 0.05 * (steps // 3), 0.8, 1.0)
    np.testing.assert_allclose([numpy(schedule(s)) for s in steps], expected, rtol=1e-6)
    ragged = schedules.Piecewise.staircase(0.0, 0.12, 0.05, every=2, begin=1)  # ends on 0.12, not 0.15
    assert ragged.boundaries == [3, 5, 7] and ragged.values[-1] == 0.12


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`steps`"):
        schedules.Linear(1.0, 0.0, 0)
    with pytest.raises(ValueError, match="`boundaries`"):
        schedules.Piecewise([5, 5], [1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="`values`"):
        schedules.Piecewise([5], [1.0])
    with pytest.raises(ValueError, match="`delta`"):
        schedules.Piecewise.staircase(1.0, 0.5, 0.0, every=3)
    with pytest.raises(ValueError, match="schedule"):
        schedules.get("linear")


@pytest.mark.parametrize(
    "schedule",
    [schedules.Constant(0.1), schedules.Linear(0.1, 0.0, 100, begin=5), schedules.Piecewise([3], [1.0, 0.4])],
)
def test_schedules_serialize_and_come_back(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert schedules.get(schedules.serialize(schedule)).get_config() == schedule.get_config()
    assert schedules.serialize(schedules.get(0.25)) == 0.25  # a constant stays a plain number


def test_a_keras_learning_rate_schedule_is_a_schedule_too():
    decay = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    assert schedules.get(decay) is decay
    assert numpy(decay(20)) == pytest.approx(0.25)


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class Penalised(keras.layers.Layer):
    """``x @ kernel`` plus a loss of exactly its scheduled weight (``weight * 1``)."""

    def __init__(self, weight, **kwargs):
        super().__init__(**kwargs)
        self.schedule = schedules.get(weight)
        losses.add_loss_weight(self, "penalty_weight", self.schedule)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 1), initializer="ones", name="kernel")

    def call(self, x, training=None):
        losses.add_weighted_loss(self, "penalty_weight", 1.0, training)
        return keras.ops.matmul(x, self.kernel)

    def get_config(self):
        return {**super().get_config(), "weight": schedules.serialize(self.schedule)}


def build(schedule):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, Penalised(schedule, name="penalised")(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


class BatchLosses(keras.callbacks.Callback):
    """Each step's own loss, from the running means fit logs (``l_n = (n+1) m_n - n m_(n-1)``)."""

    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self.losses.append((batch + 1) * mean - batch * self._previous)
        self._previous = mean


def state(model):
    (scheduled,) = schedules.scheduled_variables(model)
    return (
        float(numpy(scheduled.variable)),
        int(numpy(scheduled.step)),
        int(numpy(model.optimizer.iterations)),
    )


ZEROS = np.zeros((12, 3), "float32"), np.zeros((12, 1), "float32")  # the data loss is 0: loss == weight


def test_the_scheduled_weight_changes_the_loss_at_every_step_of_an_epoch():
    schedule = schedules.Linear(0.1, 0.0, steps=8)
    model = build(schedule)
    recorder = BatchLosses()
    model.fit(*ZEROS, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[recorder])  # 6 steps
    expected = [linear(n, 0.1, 0.0, 8) for n in range(6)]
    np.testing.assert_allclose(recorder.losses, expected, rtol=1e-4, atol=1e-7)
    value, step, iterations = state(model)
    assert step == iterations == 6
    assert value == pytest.approx(linear(6, 0.1, 0.0, 8), abs=1e-7)  # what step 6 will use
    # Inference uses the variable, and does not advance the schedule.
    assert model.evaluate(*ZEROS, batch_size=4, verbose=0) == pytest.approx(value, abs=1e-7)
    assert state(model) == (value, 6, 6)


def test_a_stage_switch_happens_at_its_epoch_within_fit():
    model = build(schedules.Piecewise([3 * 2], [0.5, 0.0]))  # 0 from epoch 2 (2 steps per epoch)
    recorder = BatchLosses()
    history = model.fit(ZEROS[0][:4], ZEROS[1][:4], batch_size=2, epochs=4, verbose=0, callbacks=[recorder])
    np.testing.assert_allclose(recorder.losses, [0.5] * 6 + [0.0] * 2, atol=1e-7)
    np.testing.assert_allclose(history.history["loss"], [0.5, 0.5, 0.5, 0.0], atol=1e-7)


def stream(epochs, steps, batch=2):
    import tensorflow as tf

    x, y = ZEROS[0][: steps * batch], ZEROS[1][: steps * batch]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat(epochs)


@pytest.mark.parametrize("stop_at", [5, 6])  # mid-epoch (backup at step 4), and at an epoch's end
def test_a_resumed_run_continues_the_schedule_at_the_exact_step(stop_at, tmp_path):
    epochs, steps = 3, 3
    schedule = schedules.Linear(1.0, 0.0, steps=7)
    reference = build(schedule)
    fit_resumable(
        reference,
        stream(epochs, steps),
        epochs=epochs,
        steps_per_epoch=steps,
        backup_dir=tmp_path / "r",
        verbose=0,
    )
    model = build(schedule)
    with pytest.raises(Interrupt):
        fit_resumable(
            model,
            stream(epochs, steps),
            epochs=epochs,
            steps_per_epoch=steps,
            backup_dir=tmp_path / "run",
            backup_every=2,
            callbacks=[KillAt(stop_at)],
            verbose=0,
        )
    resumed = build(schedule)  # a fresh process: counter 0, variable at schedule(0)
    assert state(resumed)[:2] == (1.0, 0)
    fit_resumable(
        resumed,
        stream(epochs, steps),
        epochs=epochs,
        steps_per_epoch=steps,
        backup_dir=tmp_path / "run",
        verbose=0,
    )
    total = epochs * steps
    assert state(resumed) == state(reference)
    value, step, iterations = state(resumed)
    assert step == iterations == total
    assert value == pytest.approx(linear(total, 1.0, 0.0, 7), abs=1e-7)


def test_a_saved_and_reloaded_model_continues_the_schedule(tmp_path):
    schedule = schedules.Linear(1.0, 0.0, steps=10)
    model = build(schedule)
    model.fit(*ZEROS[:2], batch_size=4, epochs=1, verbose=0)  # 3 steps
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert state(reloaded)[1:] == (3, 3)
    recorder = BatchLosses()
    reloaded.fit(*ZEROS[:2], batch_size=4, epochs=1, verbose=0, callbacks=[recorder])
    np.testing.assert_allclose(recorder.losses, [linear(n, 1.0, 0.0, 10) for n in (3, 4, 5)], rtol=1e-5)
    assert state(reloaded)[1:] == (6, 6)
    assert state(reloaded)[0] == pytest.approx(0.4, abs=1e-7)


def test_schedule_sync_sets_the_counters_from_the_optimizer():
    """Calls in training outside fit advance the counter; ScheduleSync puts it back on the
    optimizer's step when fit begins."""
    schedule = schedules.Linear(1.0, 0.0, steps=10)
    model = build(schedule)
    for _ in range(3):
        model(ZEROS[0][:2], training=True)
    assert state(model)[1:] == (3, 0)
    recorder = BatchLosses()
    model.fit(
        *ZEROS[:2], batch_size=6, epochs=1, verbose=0, callbacks=[schedules.ScheduleSync(), recorder]
    )  # 2 steps: 0 and 1
    np.testing.assert_allclose(recorder.losses, [1.0, 0.9], rtol=1e-5)
    assert state(model) == (pytest.approx(0.8), 2, 2)
    schedules.sync_schedules(model, step=9)
    assert state(model)[:2] == (pytest.approx(0.1), 9)
