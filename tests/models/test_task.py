"""``Task``: a task whose loss needs the labels and an intermediate output trains with plain
``model.fit(x, y)``, its loss is the literal formula, it compiles with defaults, and it saves and
reloads with ``safe_mode=True``."""

import numpy as np
import pytest

import keras

from keras_routing.models.task import Task

CLASSES = 3


def backbone():
    """A functional backbone with two outputs: mid-level and final features."""
    inputs = keras.Input((6,))
    mid = keras.layers.Dense(8, activation="relu", name="mid")(inputs)
    final = keras.layers.Dense(8, activation="relu", name="final")(mid)
    return keras.Model(inputs, [mid, final], name="backbone")


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class AuxiliaryClassifier(Task):
    """A classifier with an auxiliary head on the backbone's mid-level features: its loss is
    ``CE(y, logits) + auxiliary_weight * CE(y, auxiliary logits)`` from the labels."""

    def __init__(self, backbone, num_classes, auxiliary_weight=0.5, **kwargs):
        inputs = keras.Input(backbone.input.shape[1:])
        mid, final = backbone(inputs)
        outputs = {
            "logits": keras.layers.Dense(num_classes, name="head")(final),
            "auxiliary": keras.layers.Dense(num_classes, name="auxiliary_head")(mid),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone, self.num_classes, self.auxiliary_weight = backbone, num_classes, auxiliary_weight

    def default_optimizer(self):
        return keras.optimizers.Adam(0.01)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        loss = ce(y, y_pred["logits"]) + self.auxiliary_weight * ce(y, y_pred["auxiliary"])
        return super().compute_loss(x, y, y_pred, sample_weight, training) + loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["logits"], sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "auxiliary_weight": self.auxiliary_weight,
        }


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")  # three classes
    return x, y


def cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels].mean()


def test_the_loss_uses_the_labels_and_the_intermediate_output():
    x, y = data()
    task = AuxiliaryClassifier(backbone(), CLASSES, auxiliary_weight=0.3)
    task.compile()
    outputs = task.predict(x, batch_size=48, verbose=0)
    expected = cross_entropy(outputs["logits"], y) + 0.3 * cross_entropy(outputs["auxiliary"], y)
    results = task.evaluate(x, y, batch_size=48, verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(expected, rel=1e-5)
    accuracy = (outputs["logits"].argmax(axis=1) == y).mean()
    assert results["accuracy"] == pytest.approx(accuracy)


def test_plain_fit_trains_it_and_it_saves_and_reloads(tmp_path):
    x, y = data()
    task = AuxiliaryClassifier(backbone(), CLASSES)
    task.compile()
    history = task.fit(x, y, batch_size=8, epochs=10, verbose=0)
    # Seeds 0-5 on TensorFlow: the last epoch's loss at 0.40-0.59 of the first's.
    assert history.history["loss"][-1] < 0.75 * history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy"}

    task.save(tmp_path / "task.keras")
    reloaded = keras.saving.load_model(tmp_path / "task.keras", safe_mode=True)
    assert isinstance(reloaded, AuxiliaryClassifier)
    assert reloaded.num_classes == CLASSES and reloaded.auxiliary_weight == 0.5
    assert reloaded.backbone.name == "backbone"
    ours, theirs = task.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for key in ("logits", "auxiliary"):
        np.testing.assert_allclose(theirs[key], ours[key], rtol=1e-5, atol=1e-6)
    # Compiled as saved (the defaults resolved): it evaluates and trains on.
    assert isinstance(reloaded.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(reloaded.optimizer.learning_rate)) == pytest.approx(0.01)
    steps = int(keras.ops.convert_to_numpy(reloaded.optimizer.iterations))
    assert steps == int(keras.ops.convert_to_numpy(task.optimizer.iterations)) == 60  # its state came back
    before = task.evaluate(x, y, verbose=0, return_dict=True)
    after = reloaded.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)
    reloaded.fit(x, y, batch_size=16, epochs=1, verbose=0)


def test_compile_defaults_and_overrides():
    task = AuxiliaryClassifier(backbone(), CLASSES)
    task.compile()
    assert isinstance(task.optimizer, keras.optimizers.Adam) and task.loss is None
    task.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[])
    assert isinstance(task.optimizer, keras.optimizers.SGD)
    x, y = data()
    assert set(task.evaluate(x, y, verbose=0, return_dict=True)) == {"loss"}


def test_the_saved_jit_compile_is_the_argument_so_the_loading_backend_resolves_auto(tmp_path):
    """Keras would save "auto" resolved on this backend (False on TensorFlow's CPU and PyTorch),
    and a model loaded on JAX would then run eagerly; a task saves the argument itself."""
    task = AuxiliaryClassifier(backbone(), CLASSES)
    task.compile()
    assert task.get_compile_config()["jit_compile"] == "auto"
    task.save(tmp_path / "auto.keras")
    reloaded = keras.saving.load_model(tmp_path / "auto.keras")
    assert reloaded.jit_compile == (keras.backend.backend() == "jax")  # "auto" on a CPU machine
    task.compile(jit_compile=False)
    assert task.get_compile_config()["jit_compile"] is False
    task.save(tmp_path / "eager.keras")
    assert keras.saving.load_model(tmp_path / "eager.keras").jit_compile is False


def test_a_task_built_directly_is_functional_and_reloads(tmp_path):
    inputs = keras.Input((6,))
    task = Task(inputs, keras.layers.Dense(CLASSES)(inputs), name="plain")
    task.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert isinstance(task.optimizer, keras.optimizers.Adam)  # the base default
    x, y = data()
    task.fit(x, y, epochs=1, verbose=0)
    config = task.get_config()
    assert {"layers", "input_layers", "output_layers"} <= set(config)
    task.save(tmp_path / "plain.keras")
    reloaded = keras.saving.load_model(tmp_path / "plain.keras", safe_mode=True)
    assert isinstance(reloaded, Task) and reloaded.name == "plain"
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), task.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_a_task_without_any_loss_gives_zero():
    """Nothing compiled and no add_loss terms: 0 (a subclass adds its own terms to it)."""
    inputs = keras.Input((6,))
    task = Task(inputs, keras.layers.Dense(2)(inputs))
    task.compile()
    x, _ = data()
    assert float(keras.ops.convert_to_numpy(task.compute_loss(x, None, task(x)))) == 0.0
