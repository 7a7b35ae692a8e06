"""Transformed models reload with ``safe_mode=True`` in a fresh process, as a user would load
them (``import keras_routing`` only), and compute what the models they came from compute."""

import json
import os
import subprocess
import sys

import numpy as np

import keras

from keras_routing.layers import CondConv2D, Routing
from keras_routing.transforms import Offset, fold_batch_normalization, upcycle
from tests.reference import to_numpy
from tests.zoo.helpers import perturb_weights

LOAD = """
import json, sys
import numpy as np
import keras_routing  # registers the package's layers once Keras is imported
import keras

x = np.load(sys.argv[1])
report = {}
for path in sys.argv[2:]:
    model = keras.saving.load_model(path, safe_mode=True)
    report[path] = {
        "kinds": {layer.name: type(layer).__name__ for layer in model.layers},
        "outputs": keras.ops.convert_to_numpy(model(x, training=False)).tolist(),
    }
print(json.dumps(report))
"""


def _pair():
    """A plain net and its CondConv twin: same layer names, experts where the plain net has
    convolutions, one routing function feeding both."""

    def net(conditional):
        inputs = keras.Input((8, 8, 3))
        r = Routing(3, name="routing")(inputs) if conditional else None

        def conv(filters, kernel, name):
            if conditional:
                return lambda x: CondConv2D(filters, kernel, 3, routing=None, padding="same", name=name)(
                    x, routing_weights=r
                )
            return keras.layers.Conv2D(filters, kernel, padding="same", name=name)

        x = conv(6, 3, "conv")(inputs)
        x = keras.layers.BatchNormalization(name="conv_bn")(x)
        x = keras.layers.ReLU()(x)
        x = conv(4, 1, "pointwise")(x)
        x = keras.layers.BatchNormalization(name="pointwise_bn")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))

    baseline = net(conditional=False)
    perturb_weights(baseline)  # batch-norm statistics far from the identity: folding shows
    return baseline, net(conditional=True)


def _load_in_fresh_process(tmp_path, x, paths):
    np.save(tmp_path / "x.npy", x)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(tmp_path / "x.npy"), *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_upcycled_and_folded_models_reload_in_safe_mode(tmp_path):
    baseline, model = _pair()
    upcycle(model, baseline, seed=0)
    folded = fold_batch_normalization(model)
    assert type(folded.get_layer("conv_bn")) is Offset and type(folded.get_layer("pointwise_bn")) is Offset
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    expected = to_numpy(baseline(x, training=False))
    paths = [tmp_path / "upcycled.keras", tmp_path / "folded.keras"]
    model.save(paths[0])
    folded.save(paths[1])
    report = _load_in_fresh_process(tmp_path, x, paths)
    upcycled, refolded = (report[str(path)] for path in paths)
    assert upcycled["kinds"]["conv"] == "CondConv2D" and upcycled["kinds"]["conv_bn"] == "BatchNormalization"
    assert refolded["kinds"]["conv_bn"] == refolded["kinds"]["pointwise_bn"] == "Offset"
    # Upcycled, the CondConv net computes what the plain net computes; folded, the same again.
    np.testing.assert_allclose(upcycled["outputs"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(refolded["outputs"], expected, rtol=1e-4, atol=1e-4)


LOAD_EACH = """
import json, sys
import numpy as np
import keras_routing  # nothing else of the package: its models must load after this alone
import keras

report = {}
for path, inputs in zip(sys.argv[1::2], sys.argv[2::2]):
    model = keras.saving.load_model(path, safe_mode=True)
    outputs = keras.tree.flatten(model(np.load(inputs), training=False))
    report[path] = {"class": type(model).__name__, "outputs": [keras.ops.convert_to_numpy(o).tolist() for o in outputs]}
print(json.dumps(report))
"""


def test_every_familys_zoo_model_reloads_after_importing_the_package_alone(tmp_path):
    """A saved DeepMoE, early-exit and routing zoo model loads in a fresh process that imports
    only ``keras_routing`` and Keras (their task classes and layers registered by the import)."""
    from keras_routing import zoo

    rng = np.random.default_rng(3)
    models = {
        "deepmoe": (
            zoo.deepmoe_resnet(8, input_shape=(16, 16, 3), classes=4),
            rng.normal(size=(2, 16, 16, 3)),
        ),
        "early_exit": (
            zoo.gated_densenet_cifar(
                depth=16,
                growth_rate=4,
                exit_gate_width=8,
                exit_classifier_width=8,
                input_shape=(16, 16, 3),
                classes=4,
            ),
            rng.normal(size=(2, 16, 16, 3)),
        ),
        "routing": (zoo.routing_mlp_mnist(units=8), rng.uniform(size=(2, 28, 28, 1))),
    }
    arguments, expected = [], {}
    for name, (model, x) in models.items():
        x = x.astype("float32")
        path, inputs = tmp_path / f"{name}.keras", tmp_path / f"{name}.npy"
        model.save(path)
        np.save(inputs, x)
        arguments += [str(path), str(inputs)]
        expected[str(path)] = (
            type(model).__name__,
            [to_numpy(o) for o in keras.tree.flatten(model(x, training=False))],
        )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_EACH, *arguments], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for path, (kind, outputs) in expected.items():
        assert report[path]["class"] == kind
        for got, want in zip(report[path]["outputs"], outputs):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
