"""Export: SavedModel, LiteRT and ONNX models compute what the Keras model computes, on real
images; LiteRT graphs hold builtin ops only, with no per-example loop; bad requests fail clearly.

The converters are TensorFlow's, so the conversions run in this process on the TensorFlow
backend; on JAX and PyTorch one test covers the path through a TensorFlow subprocess.
"""

import keras
import numpy as np
import pytest

from keras_routing import deploy, zoo
from keras_routing.data import load_digit_images
from keras_routing.deploy import worker
from keras_routing.profiler import measure_rates
from tests.reference import to_numpy
from tests.seeds import SEED, record
from tests.zoo.helpers import with_data_statistics

on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="converts in-process with TensorFlow; other backends export through test_export_from_any_backend",
)
SIZE = 32
ZOO = {  # small but whole: every layer type of each family, 32x32 inputs, 10 classes
    "mobilenet_v1": dict(width=0.25),
    "cc_mobilenet_v1": dict(width=0.25, experts=4),
    "mobilenet_v2": dict(width=0.35),
    "cc_mobilenet_v2": dict(width=0.35, experts=4),
    "resnet50": dict(),
    "cc_resnet50": dict(experts=2),
}
CONDITIONAL = [name for name in ZOO if name.startswith("cc_")]


@pytest.fixture(scope="module")
def digits():
    (train, _), (test, test_labels) = load_digit_images(SIZE)
    return train[:256], test[:8]


def build(name, images):
    model = zoo.get(name, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None, **ZOO[name])
    return with_data_statistics(model, images)


# Relative to the largest logit. CC-ResNet-50's float32 rounding is larger than that of the
# conversion: the Keras model itself, batch of 8 against one example at a time (two
# formulations), disagrees by 1.8e-4 on these images; at batch 1 LiteRT matches within 1.2e-5.
# CC-MobileNetV2 through onnxruntime: one logit of 80 off by 1.7e-4 of the largest on the resized
# digits (2026-12-01, AMD EPYC, 2 cores), where the folded Keras model agrees within 1e-6 and
# TensorFlow's SavedModel within 1e-4: onnxruntime's own float32 kernels round differently.
TOLERANCE = {"cc_resnet50": 1e-3, "cc_mobilenet_v2": 1e-3}


def assert_builtin_only(ops):
    """No per-example loop and no TensorFlow (Flex) or custom op: what mobile delegates take."""
    assert not {op for op in ops if op.startswith(("WHILE", "FLEX", "Flex", "CUSTOM"))}, ops


def assert_matches(outputs, expected, tolerance=1e-4):
    assert np.abs(expected).max() > 1e-2, "degenerate reference outputs"
    np.testing.assert_allclose(outputs, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


# The plain networks convert through Keras's and TensorFlow's own path alone (no layer of ours
# takes an export form), and ResNet-50's costs minutes on 2 cores: they run with `-m slow`; the
# CondConv twins, which exercise the folding and the inference forms, run by default.
LITERT_ZOO = [name if name in CONDITIONAL else pytest.param(name, marks=pytest.mark.slow) for name in ZOO]


@on_tensorflow
@pytest.mark.parametrize("name", LITERT_ZOO)
def test_litert_builtin_ops_and_parity(name, digits, tmp_path):
    train, images = digits
    model = build(name, train)
    expected = to_numpy(model(images))
    for batch_size, batch in ((1, images[:1]), (None, images)):  # the phone's graph, and any batch
        path = deploy.export(model, tmp_path / f"{name}_{batch_size}.tflite", "litert", batch_size=batch_size)
        ops = deploy.litert_ops(path)
        assert_builtin_only(ops)
        if name.startswith("cc_"):
            assert "BATCH_MATMUL" in ops  # folded: the mixed kernel times the patches
        assert_matches(deploy.run_litert(path, batch), expected[: len(batch)], TOLERANCE.get(name, 1e-4))


@on_tensorflow
@pytest.mark.parametrize("name", CONDITIONAL)
def test_saved_model_and_onnx_parity(name, digits, tmp_path):
    import onnxruntime
    import tensorflow as tf

    train, images = digits
    model = build(name, train)
    expected = to_numpy(model(images))
    saved = tf.saved_model.load(str(deploy.export(model, tmp_path / "saved_model")))
    session = onnxruntime.InferenceSession(str(deploy.export(model, tmp_path / "model.onnx", "onnx")))
    feed = session.get_inputs()[0].name
    for batch in (images[:1], images):
        tolerance = TOLERANCE.get(name, 1e-4)
        assert_matches(saved.serve(tf.constant(batch)).numpy(), expected[: len(batch)], tolerance)
        assert_matches(session.run(None, {feed: batch})[0], expected[: len(batch)], tolerance)


@on_tensorflow
def test_gated_resnet_exports_its_thresholded_form(digits, tmp_path):
    """Issue 17: a gated ResNet exports as its thresholded form, a builtin ``IF`` per block that
    runs one branch; LiteRT at batch 1 predicts what Keras predicts, example by example, with
    gates open for some images and closed for others; the exported graph writes no variables
    (the gates' statistics are training-side state)."""
    from keras_routing.layers import GatedResidual

    train, images = digits
    model = with_data_statistics(
        zoo.gated_resnet_cifar(depth=8, input_shape=(SIZE, SIZE, 3), classifier_activation=None), train
    )
    rng = np.random.default_rng(SEED)
    gated = [layer for layer in model.layers if isinstance(layer, GatedResidual)]
    for layer in gated:  # input-dependent decisions near even odds
        kernel, _ = layer.gate.logits.get_weights()
        layer.gate.logits.set_weights(
            [rng.normal(0, 2.0, kernel.shape).astype("float32"), np.zeros(2, "float32")]
        )
    expected = to_numpy(model.predict(images, verbose=0))
    rates = measure_rates(model, images)
    assert any(0 < rate < 1 for rate in rates.values()), f"no block decides per example: {rates}"
    path = deploy.export(model, tmp_path / "gated.tflite", "litert", batch_size=1)
    ops = deploy.litert_ops(path)
    assert_builtin_only(ops)
    assert "IF" in ops, ops
    assert not {op for op in ops if op in ("VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE")}, ops
    assert_matches(deploy.run_litert(path, images), expected)
    for layer in gated:
        layer.inference = "always_on"
    always_on = deploy.export(model, tmp_path / "always_on.tflite", "litert", batch_size=1)
    assert "IF" not in deploy.litert_ops(always_on)


def _digits_net(conditional):
    """A small net of every CondConv layer type (``conditional``) or its plain twin: the same
    layers, by the same names, with one kernel each. Its separable block is MobileNet's, batch
    normalization after each convolution, which export folds into the experts."""
    from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D

    def normalized(x, name):
        return keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"{name}_bn")(x))

    if conditional:
        depthwise = lambda **kw: CondDepthwiseConv2D(3, 4, **kw)  # noqa: E731
        conv = lambda filters, size, **kw: CondConv2D(filters, size, 4, **kw)  # noqa: E731
        dense = lambda units, **kw: CondDense(units, 4, **kw)  # noqa: E731
    else:
        depthwise = lambda **kw: keras.layers.DepthwiseConv2D(3, **kw)  # noqa: E731
        conv, dense = keras.layers.Conv2D, keras.layers.Dense
    inputs = keras.Input((SIZE, SIZE, 3))
    x = normalized(
        keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs), "stem"
    )
    x = normalized(depthwise(padding="same", use_bias=False, name="dw")(x), "dw")
    x = normalized(conv(64, 1, use_bias=False, name="pw")(x), "pw")
    x = conv(64, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = dense(10, activation="softmax", name="classifier")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, x, name="cond_net" if conditional else "plain_net")


def _fit(model, x, y, epochs):
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return with_data_statistics(model, x[:1000])  # the data's, not a short run's moving averages


@pytest.fixture(scope="module")
def trained_digits_models():
    """The plain net trained on the embedded digits, and its CondConv twin upcycled from it
    (``zoo.upcycle``: it starts as the plain net, each expert a noisy copy) and trained on the
    same digits. Quantization agreement means something only for models whose predictions are
    not near-ties; trained from scratch the CondConv twin learned too slowly at some seeds (68%
    after 5 epochs where the plain net had 89%), and upcycled it starts where the plain net is."""
    (x_train, y_train), (x_test, y_test) = load_digit_images(SIZE)
    x, y = x_train[:TRAIN_DIGITS], y_train[:TRAIN_DIGITS]
    keras.utils.set_random_seed(SEED)
    plain = _fit(_digits_net(conditional=False), x, y, PLAIN_EPOCHS)
    keras.utils.set_random_seed(SEED)
    cond = _fit(zoo.upcycle(_digits_net(conditional=True), plain, seed=SEED), x, y, CONDCONV_EPOCHS)
    return {"plain_net": plain, "cond_net": cond}, x_train[:200], x_test, y_test


TRAIN_DIGITS, PLAIN_EPOCHS, CONDCONV_EPOCHS = 4000, 5, 2
# Top-1 agreement with the float model that quantizing may cost the CondConv net beyond what it
# costs its plain twin (fractions of the 2,000 held-out digits).
QUANTIZATION_ALLOWANCE = {"int8": 0.015, "dynamic": 0.01}


@on_tensorflow
@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_quantizing_condconv_costs_no_more_than_quantizing_its_plain_twin(
    quantize, trained_digits_models, tmp_path, capsys
):
    """The promise: quantizing a CondConv model (folded experts, static-kernel int8 forms) loses
    no more top-1 agreement with its float model than quantizing its plain twin, the same net
    with plain layers, trained on the same digits.
    A fixed threshold was the wrong promise: on another CPU the same seed lands elsewhere, and
    the plain net's own int8 agreement moves with it. Allowed (``QUANTIZATION_ALLOWANCE``): the
    CondConv form requantizes more tensors per layer (each expert's output summed in the
    accumulator, the routing weights), and 2,000 digits give each agreement a sampling noise of
    about 0.3 points. Seed sweep (12 runs, TensorFlow, 2026-12-01, 2-core AMD EPYC): int8
    agreement 96.95-99.10% for the plain twin (so no fixed threshold near 98% holds even for
    plain layers) and 97.30-99.35% for the CondConv net; the CondConv net's shortfall -0.65 to
    +1.05 points in int8, -0.20 to +0.35 points in dynamic range."""
    models, calibration, x_test, y_test = trained_digits_models
    agreement = {}
    for name, model in models.items():
        float_predictions = to_numpy(model.predict(x_test, batch_size=250, verbose=0)).argmax(-1)
        float_accuracy = (float_predictions == y_test).mean()
        assert float_accuracy > 0.8, f"{name} did not learn; agreement would be meaningless"
        path = deploy.export(
            model,
            tmp_path / f"{name}_{quantize}.tflite",
            "litert",
            quantize=quantize,
            representative_dataset=calibration,
            batch_size=None,
        )
        assert_builtin_only(deploy.litert_ops(path))
        predictions = deploy.run_litert(path, x_test).argmax(-1)
        agreement[name] = (predictions == float_predictions).mean()
        record(f"{quantize}_agreement_{name}", agreement[name])
        with capsys.disabled():
            print(
                f"\n{name} {quantize}: top-1 agreement {agreement[name]:.2%} on {len(y_test)} held-out digits; "
                f"accuracy {(predictions == y_test).mean():.2%} vs float {float_accuracy:.2%}"
            )
    record(f"{quantize}_agreement_gap", agreement["plain_net"] - agreement["cond_net"])
    assert agreement["cond_net"] >= agreement["plain_net"] - QUANTIZATION_ALLOWANCE[quantize]


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the TensorFlow backend exports directly")
def test_export_from_any_backend(digits, tmp_path):
    """A model built on JAX or PyTorch exports through a TensorFlow process: same outputs."""
    train, images = digits
    model = build("cc_mobilenet_v1", train)
    path = deploy.export(model, tmp_path / "model.tflite", "litert", batch_size=1)
    assert_matches(deploy.run_litert(path, images), to_numpy(model(images)))
    quantized = deploy.export(
        model,
        tmp_path / "int8.tflite",
        "litert",
        quantize="int8",
        representative_dataset=train[:16],
        batch_size=1,
    )
    assert deploy.run_litert(quantized, images).shape == (8, 10)


@pytest.mark.parametrize(
    "request_, message",
    [
        (dict(format="tflite"), "`format` must be one of"),
        (dict(format="litert", quantize="float16"), "`quantize` must be one of"),
        (dict(format="onnx", quantize="dynamic"), "applies to format='litert' only"),
        (dict(format="litert", quantize="int8"), "needs `representative_dataset`"),
        (dict(format="litert", batch_size=0), "`batch_size` must be None"),
        (dict(format="litert", batch_size=True), "`batch_size` must be None"),
        (dict(format="onnx"), "An ONNX model is a .onnx file"),
        # Calibration images the model does not take: the shapes, not the converter's complaint.
        (
            dict(
                format="litert", quantize="int8", representative_dataset=np.zeros((4, 28, 28, 1), "float32")
            ),
            r"examples of shape \(28, 28, 1\), but .* takes inputs of shape \(32, 32, 3\)",
        ),
        (
            dict(format="litert", quantize="int8", representative_dataset=[np.zeros((2, 32, 32), "float32")]),
            r"shape \(32, 32\)",
        ),
    ],
)
def test_bad_requests(request_, message, tmp_path):
    """On every backend: checked here, before a TensorFlow subprocess would see them."""
    model = zoo.mobilenet_v1(0.25, input_shape=(SIZE, SIZE, 3), classes=10)
    with pytest.raises(ValueError, match=message):
        deploy.export(model, tmp_path / "model.tflite", **request_)
    assert not (tmp_path / "model.tflite").exists()


def test_a_bad_request_found_by_the_tensorflow_process_is_a_value_error(tmp_path, monkeypatch):
    """What the export worker (the TensorFlow process) refuses with status 2 comes back as the
    ValueError it was, not as a RuntimeError with its stderr."""
    import subprocess

    refused = subprocess.CompletedProcess([], 2, "", f"some warning\n{worker.ERROR}cc cannot be converted.\n")
    monkeypatch.setattr(worker.subprocess, "run", lambda *args, **kwargs: refused)
    model = zoo.mobilenet_v1(0.25, input_shape=(SIZE, SIZE, 3), classes=10)
    with pytest.raises(ValueError, match="^cc cannot be converted.$"):
        worker.convert_in_tensorflow(model, tmp_path / "model.tflite", "litert", batch_size=1)
    crashed = subprocess.CompletedProcess([], 1, "", "Traceback ...\nSegfault\n")
    monkeypatch.setattr(worker.subprocess, "run", lambda *args, **kwargs: crashed)
    with pytest.raises(RuntimeError, match="Exporting through TensorFlow failed"):
        worker.convert_in_tensorflow(model, tmp_path / "model.tflite", "litert", batch_size=1)


def test_the_worker_reports_a_refused_conversion_in_one_line(tmp_path):
    """The worker itself, run as ``export`` runs it: a conversion the converter refuses (here,
    calibration examples of a shape the model does not take, which ``export`` would have caught
    first) exits with status 2 and the refusal on one line of stderr."""
    import os
    import subprocess
    import sys

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(tmp_path / "model.keras")
    np.save(tmp_path / "calibration.npy", np.ones((2, 5), "float32"))
    result = subprocess.run(
        [sys.executable, "-m", worker.MODULE, str(tmp_path / "model.keras"), str(tmp_path / "model.tflite")]
        + ["--format", "litert", "--quantize", "int8", "--calibration", str(tmp_path / "calibration.npy")],
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith(worker.ERROR)]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "cannot be converted to LiteRT" in errors[0]


class _Argmax(keras.layers.Layer):
    def call(self, x):
        return keras.ops.argmax(x, axis=-1)


class _PerExample(keras.layers.Layer):
    def call(self, x):
        return keras.ops.map(lambda row: row * 2.0, x)


@on_tensorflow
@pytest.mark.parametrize(
    "layer, message",
    [(_Argmax(), "cannot be converted to LiteRT with builtin ops only"), (_PerExample(), r"\['WHILE'\]")],
)
def test_models_that_cannot_run_on_phones_fail_at_conversion(layer, message, tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(keras.layers.Dense(3)(inputs)))
    with pytest.raises(ValueError, match=message):
        deploy.export(model, tmp_path / "model.tflite", "litert")
    assert not (tmp_path / "model.tflite").exists()
