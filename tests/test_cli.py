"""The keras-routing command: one-line errors with exit status 2, and a whole small run."""

import json
import pathlib
import zipfile

import numpy as np
import pytest

import keras

from keras_routing import zoo
from keras_routing.app import cli
from keras_routing.data import image_classification
from keras_routing.models.task import Task


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "argv, names",
    [
        (["train", "resnet51"], ["unknown model 'resnet51'", "cc_mobilenet_v1", "resnet50"]),
        (["train", "mobilenet_v1", "--dataset", "cifar11"], ["unknown dataset 'cifar11'"]),
        (["--backend", "theano", "zoo", "list"], ["--backend", "tensorflow", "jax", "torch"]),
        (["train", "mobilenet_v1", "--epochz", "3"], ["unrecognized arguments: --epochz"]),
        (["train", "mobilenet_v1", "--augment", "cutout"], ["--augment", "randaugment"]),
        (["train", "no/such/recipe.toml"], ["no recipe file"]),
        (["evaluate", "missing.keras"], ["no model file"]),
        (["train", "mobilenet_v1", "--experts", "8"], ["takes no argument(s) ['experts']", "width"]),
        (
            ["train", "mobilenet_v1", "--dataset", "cifar10", "--data-dir", "/nonexistent"],
            ["tfds build cifar10"],
        ),
        # Values out of range, from an option or a recipe, named as the user wrote them.
        (
            [
                "train",
                "cc_mobilenet_v1",
                "--batch-size",
                "0",
                "--epochs",
                "1",
                "--take",
                "64",
                "--output",
                "out",
            ],
            ["`--batch-size` must be an integer >= 1, got 0"],
        ),
        (["train", "cc_mobilenet_v1", "--learning-rate", "-1"], ["`--learning-rate` must be a number > 0"]),
        (["train", "cc_mobilenet_v1", "--take", "0"], ["`--take` must be an integer >= 1, got 0"]),
        (["train", "cc_mobilenet_v1", "--epochs", "0"], ["`--epochs` must be an integer >= 1, got 0"]),
        (["train", "cc_mobilenet_v1", "--epochs", "-1"], ["`--epochs`", "got -1"]),
        (["train", "cc_mobilenet_v1", "--dropout", "2"], ["`--dropout` must be a number in [0, 1)"]),
        (["train", "cc_mobilenet_v1", "--experts", "0"], ["`--experts`"]),
        (["train", "cc_mobilenet_v1", "--width", "0"], ["`--width` must be a number > 0"]),
        (["train", "cc_mobilenet_v1", "--mixup", "-1"], ["`--mixup` must be a number >= 0"]),
        (["train", "cc_mobilenet_v1", "--image-size", "0"], ["`--image-size`"]),
        (["train", "cc_mobilenet_v1", "--backup-every", "0"], ["`--backup-every`"]),
        (
            ["train", "zero_batch.toml"],
            ["Recipe zero_batch.toml [train]: `batch_size` must be an integer >= 1"],
        ),
        (["train", "broken.toml"], ["Recipe broken.toml is not valid TOML", "line 4, column 10"]),
        (["evaluate", "missing.keras", "--batch-size", "0"], ["`--batch-size` must be an integer >= 1"]),
        (["export", "missing.keras", "--batch-size", "0"], ["`--batch-size`"]),
        (["profile", "mobilenet_v1", "--classes", "0"], ["`--classes` must be an integer >= 1"]),
        (
            ["profile", "mobilenet_v1", "--width", "0.01"],
            ["`width` must leave every layer at least one channel"],
        ),
        # Files that are not models are not "not found".
        (
            ["evaluate", "corrupt.keras"],
            ["corrupt.keras is not a readable .keras model", "not a zip archive"],
        ),
        (["export", "corrupt.keras"], ["corrupt.keras is not a readable .keras model"]),
        (["evaluate", "no_config.keras"], ["no_config.keras is not a readable .keras model", "config.json"]),
    ],
)
def test_mistakes_get_one_line_and_status_2(capsys, argv, names, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the files the cases name
    pathlib.Path("zero_batch.toml").write_text('[model]\nname = "mobilenet_v1"\n[train]\nbatch_size = 0\n')
    pathlib.Path("broken.toml").write_text('[model]\nname = "mobilenet_v1"\n[train]\nepochs = = 3\n')
    pathlib.Path("corrupt.keras").write_bytes(b"\x00not a zip archive\xff" * 8)
    with zipfile.ZipFile("no_config.keras", "w") as archive:
        archive.writestr("model.weights.h5", b"")
    status, out, err = run(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-routing: error:"), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0]
    assert not pathlib.Path("out").exists()  # refused before any work


def test_zoo_list_names_every_model(capsys):
    status, out, _ = run(capsys, "zoo", "list")
    assert status == 0
    lines = out.strip("\n").splitlines()
    assert [line for line in lines if not line.startswith(" ")] == zoo.families()  # grouped by family
    names = [line.split()[0] for line in lines if line.startswith(" ")]
    assert names == [name for family in zoo.families() for name in zoo.list_models(family=family)]
    assert sorted(names) == zoo.list_models()


def test_profile_counts_the_models_parameters(capsys):
    status, out, _ = run(
        capsys, "profile", "mobilenet_v1", "--width", "0.25", "--image-size", "64", "--classes", "10"
    )
    expected = zoo.mobilenet_v1(0.25, input_shape=(64, 64, 3), classes=10).count_params()
    assert status == 0 and f"{expected:,}" in out


def test_train_evaluate_export_from_a_recipe(capsys, tmp_path, digits_dir):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        '[model]\nname = "cc_mobilenet_v1"\nwidth = 0.25\nexperts = 2\n'
        '[data]\ndataset = "embedded_digits"\nimage_size = 32\n'
        "[train]\nepochs = 2\nbatch_size = 32\nlearning_rate = 0.003\n"
    )
    output = tmp_path / "run"
    status, out, err = run(
        capsys,
        "train",
        str(recipe),
        "--take",
        "128",
        "--epochs",
        "1",
        "--output",
        str(output),
        "--data-dir",
        digits_dir,
        "--quiet",
        "--export",
        "saved_model",
        "litert",
    )
    assert status == 0, err
    results = json.loads((output / "results.json").read_text())
    # The recipe's architecture, the option's epoch count.
    assert (
        results["params"] == zoo.cc_mobilenet_v1(0.25, 2, input_shape=(32, 32, 3), classes=10).count_params()
    )
    assert results["epochs"] == 1 and len((output / "history.csv").read_text().strip().splitlines()) == 2
    for name in ("model.keras", "checkpoints/best.keras", "plots/routing_by_class.png", "summary.json"):
        assert (output / name).is_file(), name
    assert not (output / "backup" / "state.json").exists()
    assert str(output / "model.keras") in out.replace("\n", "")

    # The reported accuracy is the argmax accuracy of the saved model on the held-out split.
    model = keras.saving.load_model(output / "model.keras")
    data = image_classification("embedded_digits", "test", 32, 500, shuffle=False, data_dir=digits_dir)
    hits = [
        np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(np.asarray(x)))).argmax(-1)
        == np.asarray(y)
        for x, y in data
    ]
    assert results["accuracy"] == pytest.approx(np.concatenate(hits).mean(), abs=1e-6)
    status, out, _ = run(capsys, "evaluate", str(output / "model.keras"), "--data-dir", digits_dir)
    assert status == 0 and f"accuracy {results['accuracy']:.2%}" in out

    # The exported SavedModel computes what the Keras model computes.
    import tensorflow as tf

    images = next(iter(data))[0][:4]
    loaded = tf.saved_model.load(str(output / "export_saved_model"))  # keep it: serve uses its variables
    served = loaded.serve(tf.constant(images)).numpy()
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(model(np.asarray(images))), atol=1e-5)
    # The LiteRT model (batch 1) was evaluated on the same split: the same accuracy, give or take
    # a prediction that float rounding flips.
    litert = json.loads((output / "summary.json").read_text())["exports"]["litert"]
    assert litert["path"] == str((output / "model.tflite").resolve())
    assert litert["accuracy"] == pytest.approx(results["accuracy"], abs=2 / 2000)

    # int8 LiteRT calibrated on a TFDS dataset's train split; a bad request is one line, status 2.
    status, out, err = run(
        capsys,
        "export",
        str(output / "model.keras"),
        "--format",
        "litert",
        "--quantize",
        "int8",
        "--representative",
        "embedded_digits",
        "--data-dir",
        digits_dir,
        "--batch-size",
        "1",
    )
    assert status == 0, err
    assert (output / "model_int8.tflite").is_file() and str((output / "model_int8.tflite").resolve()) in out
    status, _, err = run(
        capsys, "export", str(output / "model.keras"), "--format", "onnx", "--quantize", "dynamic"
    )
    assert status == 2 and "applies to format='litert' only" in err


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class TwoHeadTask(Task):
    """A task with two outputs, its own loss (``compute_loss``: cross-entropy of the class logits
    plus ``AUX_WEIGHT`` times the mean square of the second head) and its own metric,
    ``cross_entropy`` (per example, over the split)."""

    AUX_WEIGHT = 0.1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cross_entropy = keras.metrics.Mean(name="cross_entropy")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        losses = keras.losses.sparse_categorical_crossentropy(y, y_pred["classes"], from_logits=True)
        self.cross_entropy.update_state(keras.ops.mean(losses), sample_weight=keras.ops.shape(losses)[0])
        return (
            total + keras.ops.mean(losses) + self.AUX_WEIGHT * keras.ops.mean(keras.ops.square(y_pred["aux"]))
        )


def two_head_task(image_size, classes):
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = {
        "classes": keras.layers.Dense(classes, name="classes")(x),
        "aux": keras.layers.Dense(2, name="aux")(x),
    }
    return TwoHeadTask(inputs, outputs, name="two_head_task")


def test_a_task_model_trains_evaluates_and_exports_through_the_command(
    capsys, tmp_path, digits_dir, monkeypatch
):
    """A model that owns its loss and has two outputs: the command compiles it with the recipe's
    optimizer alone, reports every metric it has, and exports both outputs."""
    from keras_routing import experiment

    monkeypatch.setattr(
        experiment, "build_model", lambda config, size, classes, strict=True: two_head_task(size, classes)
    )
    recipe = tmp_path / "task.toml"
    recipe.write_text(
        '[model]\nname = "mobilenet_v1"\n[data]\ndataset = "embedded_digits"\nimage_size = 32\n'
        "[train]\nepochs = 1\nbatch_size = 32\n"
    )
    output = tmp_path / "run"
    status, out, err = run(
        capsys,
        "train",
        str(recipe),
        "--take",
        "128",
        "--output",
        str(output),
        "--data-dir",
        digits_dir,
        "--optimizer",
        "sgd",
        "--learning-rate",
        "0.05",
        "--quiet",
        "--no-plots",
        "--export",
        "saved_model",
        "litert",
    )
    assert status == 0, err
    results = json.loads((output / "results.json").read_text())
    assert set(results["metrics"]) == {"loss", "cross_entropy"} and results["accuracy"] is None
    assert "cross_entropy" in (output / "history.csv").read_text().splitlines()[0]  # trained on its own loss
    model = keras.saving.load_model(output / "model.keras")
    assert isinstance(model, TwoHeadTask) and isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)

    # Every metric, against the task's formulas in NumPy on the held-out split.
    data = image_classification("embedded_digits", "test", 32, 500, shuffle=False, data_dir=digits_dir)
    images, labels = (
        np.concatenate(parts) for parts in zip(*((np.asarray(x), np.asarray(y)) for x, y in data))
    )
    outputs = {
        k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in model.predict(images, verbose=0).items()
    }
    logits = outputs["classes"] - outputs["classes"].max(-1, keepdims=True)
    cross_entropy = np.mean(np.log(np.exp(logits).sum(-1)) - logits[np.arange(len(labels)), labels])
    expected = {"cross_entropy": cross_entropy, "loss": cross_entropy + 0.1 * np.mean(outputs["aux"] ** 2)}
    for name, value in expected.items():
        assert results["metrics"][name] == pytest.approx(value, rel=1e-4)
    status, out, err = run(capsys, "evaluate", str(output / "model.keras"), "--data-dir", digits_dir)
    assert status == 0, err
    printed = dict(part.split() for part in out.split(": ", 1)[1].split(" on ")[0].split(", "))
    assert set(printed) == set(expected)
    for name, value in expected.items():
        assert float(printed[name]) == pytest.approx(value, rel=1e-3)

    # Both outputs exported: the SavedModel's and the LiteRT model's, against the Keras model's.
    import tensorflow as tf

    from keras_routing.deploy import run_litert

    batch = images[:4]
    reference = {k: v[:4] for k, v in outputs.items()}
    loaded = tf.saved_model.load(str(output / "export_saved_model"))
    served = {k: v.numpy() for k, v in loaded.serve(tf.constant(batch)).items()}
    litert = run_litert(output / "model.tflite", batch)
    exports = json.loads((output / "summary.json").read_text())["exports"]
    assert "accuracy" not in exports["litert"]  # no accuracy for a task: its metrics say what it does
    for got in (served, litert):
        assert set(got) == set(reference)
        for name in reference:
            np.testing.assert_allclose(got[name], reference[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two models trained (6 minutes under JAX on a busy 2-core CPU)
def test_baseline_trains_with_its_own_recipe_overrides(capsys, tmp_path, digits_dir):
    # [baseline] gives the baseline its own regularisation; the ImageNet crops, L2 on the kernels
    # and the routing figures for chosen classes run through the command.
    recipe = tmp_path / "per_model.toml"
    recipe.write_text(
        '[model]\nname = "cc_mobilenet_v1"\nbaseline = "mobilenet_v1"\nwidth = 0.25\nexperts = 2\ndropout = 0.5\n'
        '[data]\ndataset = "embedded_digits"\nimage_size = 32\ncrop = "random_resized"\neval_crop = "center"\n'
        "take = 64\n[train]\nepochs = 1\nbatch_size = 32\nl2 = 4e-5\n"
        "[baseline]\ndropout = 0.0\n[analysis]\nclasses = [3, 7]\n"
    )
    output = tmp_path / "run"
    status, _, err = run(
        capsys, "train", str(recipe), "--output", str(output), "--data-dir", digits_dir, "--quiet"
    )
    assert status == 0, err
    summary = json.loads((output / "summary.json").read_text())
    assert list(summary["runs"]) == ["mobilenet_v1", "cc_mobilenet_v1"]
    model = keras.saving.load_model(output / "model.keras")
    baseline = keras.saving.load_model(output / "baseline" / "model.keras")
    assert model.get_layer("dropout").rate == 0.5 and baseline.get_layer("dropout").rate == 0.0
    for name in ("routing_by_class", "routing_spread", "top_examples_per_expert", "weight_distribution"):
        assert (output / "plots" / f"{name}.png").is_file(), name
