"""Interrupted training resumes from its backup to the weights an uninterrupted run reaches."""

import json
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

import keras

from keras_routing.data import image_classification
from keras_routing.layers import CondConv2D
from keras_routing.models.task import Task
from keras_routing.training import StepBackup, fit_resumable
from tests.interrupt import Interrupt, KillAt

EPOCHS, STEPS, BATCH = 3, 4, 16


def build(metrics=()):
    keras.utils.set_random_seed(0)  # as the command does at start; TF's shuffles depend on it too
    inputs = keras.Input((28, 28, 1))
    x = CondConv2D(8, 3, 4, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)  # its random state must survive the restart too
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def stream(digits_dir):
    return image_classification(
        "embedded_digits",
        "train",
        28,
        BATCH,
        channels=1,
        epochs=EPOCHS,
        take=STEPS * BATCH,
        data_dir=digits_dir,
        shuffle_buffer=64,
    )


def weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.parametrize("kill_at", [6, 8])  # mid-epoch (after the backup at step 4), and at an epoch end
def test_interrupted_run_resumes_to_the_uninterrupted_weights(kill_at, digits_dir, tmp_path):
    reference = build()
    fit_resumable(
        reference,
        stream(digits_dir),
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        backup_dir=tmp_path / "ref",
        backup_every=4,
        verbose=0,
    )

    model = build()
    with pytest.raises(Interrupt):
        fit_resumable(
            model,
            stream(digits_dir),
            epochs=EPOCHS,
            steps_per_epoch=STEPS,
            backup_dir=tmp_path / "run",
            backup_every=4,
            callbacks=[KillAt(kill_at)],
            verbose=0,
        )
    assert (tmp_path / "run" / "state.json").exists()

    # A fresh process running the same command (same seed), whose weights the backup replaces.
    resumed = build()
    rng = np.random.default_rng(1)
    for w in resumed.weights:
        w.assign(rng.normal(size=w.shape).astype(w.dtype))
    history = fit_resumable(
        resumed,
        stream(digits_dir),
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        backup_dir=tmp_path / "run",
        backup_every=4,
        verbose=0,
    )
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == EPOCHS * STEPS
    assert history.epoch[-1] == EPOCHS - 1
    for ours, theirs in zip(weights(resumed), weights(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "run" / "state.json").exists()  # cleaned up once complete


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="one backend: three fresh processes are slow"
)
def test_process_killed_mid_epoch_resumes_to_the_uninterrupted_weights(digits_dir, tmp_path):
    """A real SIGKILL at step 6 (the backup is from step 4), then the same command again."""
    script = pathlib.Path(__file__).with_name("killed_run.py")

    def run(directory, *extra):
        return subprocess.run(
            [sys.executable, str(script), str(directory), digits_dir, *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )

    killed = run(tmp_path / "run", "--kill-at", "6")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 4
    assert run(tmp_path / "run").returncode == 0
    assert run(tmp_path / "reference").returncode == 0
    with (
        np.load(tmp_path / "run" / "final.npz") as resumed,
        np.load(tmp_path / "reference" / "final.npz") as ref,
    ):
        assert len(resumed.files) == len(ref.files) > 0
        for name in ref.files:
            np.testing.assert_allclose(resumed[name], ref[name], rtol=1e-5, atol=1e-6)


def read_history(path):
    lines = path.read_text().strip().splitlines()
    header = lines[0].split(",")
    return [{k: float(v) for k, v in zip(header, line.split(",")) if v != "NA"} for line in lines[1:]]


def test_resumed_run_says_so_and_logs_each_epoch_whole(digits_dir, tmp_path, capsys):
    """Killed mid-epoch (step 7, last backup at step 6 of 12): the resumed run says where it
    resumes, and history.csv holds one row per epoch, each over the whole epoch's steps: the
    rows an uninterrupted run writes."""
    held_out = image_classification(
        "embedded_digits", "test", 28, BATCH, channels=1, take=2 * BATCH, data_dir=digits_dir
    )

    def fit(model, directory, history, *callbacks, **kwargs):
        csv = keras.callbacks.CSVLogger(str(history), append=True)
        return fit_resumable(
            model,
            stream(digits_dir),
            epochs=EPOCHS,
            steps_per_epoch=STEPS,
            backup_dir=directory,
            backup_every=2,
            callbacks=[*callbacks, csv],
            validation_data=held_out,
            verbose=0,
            **kwargs,
        )

    reference_model = build(["accuracy"])
    fit(reference_model, tmp_path / "ref", tmp_path / "reference.csv")
    capsys.readouterr()
    with pytest.raises(Interrupt):
        fit(build(["accuracy"]), tmp_path / "run", tmp_path / "history.csv", KillAt(7))
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 6
    assert len(read_history(tmp_path / "history.csv")) == 1  # epoch 0 logged; epoch 1 cut short
    assert capsys.readouterr().out == ""  # verbose=0 and no `log`: nothing printed

    lines = []
    resumed = build(["accuracy"])
    history = fit(resumed, tmp_path / "run", tmp_path / "history.csv", log=lines.append)
    assert lines == [f"Resuming from {tmp_path / 'run'} at epoch 2 of {EPOCHS}, step 2 of {STEPS}."]
    rows, reference = read_history(tmp_path / "history.csv"), read_history(tmp_path / "reference.csv")
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in reference] == [0, 1, 2]
    for row, expected in zip(rows, reference):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (row, expected)
    np.testing.assert_allclose(history.history["loss"], [row["loss"] for row in reference[1:]], rtol=1e-4)
    for ours, theirs in zip(
        weights(resumed), weights(reference_model)
    ):  # resumed mid-epoch: the same weights
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


class ParityTask(Task):
    """A task with two outputs, its own loss (``compute_loss``) and metric, no compiled loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parity_loss = keras.metrics.Mean(name="parity_loss")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        classes = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred["classes"]))
        parity = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y % 2, y_pred["parity"]))
        self.parity_loss.update_state(parity)
        return total + classes + 0.5 * parity


def build_two_outputs(task):
    """``build()``'s network with a second head (the digit's parity): a task model, or a plain
    model compiled with a dict of losses and of metrics."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = CondConv2D(8, 3, 4, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = {
        "classes": keras.layers.Dense(10, activation="softmax", name="classes")(x),
        "parity": keras.layers.Dense(2, activation="softmax", name="parity")(x),
    }
    if task:
        model = ParityTask(inputs, outputs)
        model.compile(keras.optimizers.Adam(1e-2))
    else:
        model = keras.Model(inputs, outputs)
        model.compile(
            keras.optimizers.Adam(1e-2),
            loss={"classes": "sparse_categorical_crossentropy", "parity": "sparse_categorical_crossentropy"},
            loss_weights={"classes": 1.0, "parity": 0.5},
            metrics={"classes": ["accuracy"], "parity": ["accuracy"]},
        )
    return model


@pytest.mark.parametrize("task", [False, True], ids=["dict_of_losses", "task"])
def test_a_model_with_two_outputs_resumes_to_the_uninterrupted_run(task, digits_dir, tmp_path):
    """Two outputs, either a dict of losses and metrics or a task's own loss and metric: killed
    mid-epoch (step 7; backup at step 6), the resumed run ends with the uninterrupted run's
    weights and logs each epoch over all its steps, every loss and metric as that run does."""
    labels = {True: lambda x, y: (x, y), False: lambda x, y: (x, {"classes": y, "parity": y % 2})}[task]

    def fit(model, directory, history, *callbacks):
        return fit_resumable(
            model,
            stream(digits_dir).map(labels),
            epochs=EPOCHS,
            steps_per_epoch=STEPS,
            backup_dir=directory,
            backup_every=2,
            callbacks=[*callbacks, keras.callbacks.CSVLogger(str(history), append=True)],
            verbose=0,
        )

    reference_model = build_two_outputs(task)
    fit(reference_model, tmp_path / "ref", tmp_path / "reference.csv")
    with pytest.raises(Interrupt):
        fit(build_two_outputs(task), tmp_path / "run", tmp_path / "history.csv", KillAt(7))
    resumed = build_two_outputs(task)
    fit(resumed, tmp_path / "run", tmp_path / "history.csv")
    rows, reference = read_history(tmp_path / "history.csv"), read_history(tmp_path / "reference.csv")
    expected_keys = {"parity_loss"} if task else {"classes_loss", "parity_loss", "classes_accuracy"}
    assert expected_keys <= set(reference[0]), reference[0]
    assert [set(row) for row in rows] == [set(row) for row in reference] and len(rows) == EPOCHS
    for row, expected in zip(rows, reference):
        for key in expected:
            assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (key, row, expected)
    for ours, theirs in zip(weights(resumed), weights(reference_model)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("every", [0, True, 2.5])
def test_backup_rejects_bad_frequency(tmp_path, every):
    with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
        StepBackup(tmp_path, every=every)
    assert StepBackup(tmp_path, every=np.int64(3)).every == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "`epochs` must be"),
        (dict(epochs=-1), "`epochs` must be"),
        (dict(steps_per_epoch=0), "steps"),
    ],
)
def test_fit_resumable_rejects_an_empty_run(kwargs, message, tmp_path):
    """The request is at fault, not a backup (there is none)."""
    arguments = {"epochs": EPOCHS, "steps_per_epoch": STEPS, "backup_dir": tmp_path / "backup", **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_resumable(build(), None, **arguments)
