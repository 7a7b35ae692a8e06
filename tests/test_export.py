"""Export: SavedModel, LiteRT and ONNX models compute what the Keras model computes, on real
images; LiteRT graphs hold builtin ops only, with no per-example loop; bad requests fail clearly.

The converters are TensorFlow's, so the conversions run in this process on the TensorFlow
backend; on JAX and PyTorch one test covers the path through a TensorFlow subprocess.
"""

import numpy as np
import pytest

import keras
from keras_routing import deploy, zoo
from keras_routing.data import load_digit_images
from tests.reference import to_numpy
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
TOLERANCE = {"cc_resnet50": 1e-3}


def assert_builtin_only(ops):
    """No per-example loop and no TensorFlow (Flex) or custom op: what mobile delegates take."""
    assert not {op for op in ops if op.startswith(("WHILE", "FLEX", "Flex", "CUSTOM"))}, ops


def assert_matches(outputs, expected, tolerance=1e-4):
    assert np.abs(expected).max() > 1e-2, "degenerate reference outputs"
    np.testing.assert_allclose(outputs, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


@on_tensorflow
@pytest.mark.parametrize("name", list(ZOO))
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


@pytest.fixture(scope="module")
def trained_digits_model():
    """A small net of every CondConv layer type trained on the embedded digits: quantization
    agreement means something only for a model whose predictions are not near-ties (the zoo's
    MobileNets need minutes to learn at 32x32). Its separable block is MobileNet's, batch
    normalization after each CondConv layer, which export folds into the experts."""
    from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D

    (x_train, y_train), (x_test, y_test) = load_digit_images(SIZE)
    keras.utils.set_random_seed(0)

    def normalized(x):
        return keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))

    inputs = keras.Input((SIZE, SIZE, 3))
    x = normalized(keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inputs))
    x = normalized(CondDepthwiseConv2D(3, 4, padding="same", use_bias=False)(x))
    x = normalized(CondConv2D(64, 1, 4, use_bias=False)(x))
    x = CondConv2D(64, 3, 4, strides=2, padding="same", activation="relu")(x)
    x = CondDense(10, 4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, batch_size=64, epochs=10, verbose=0)
    with_data_statistics(model, x_train[:1000])  # the data's, not a short run's moving averages
    return model, x_train[:200], x_test, y_test


@on_tensorflow
def test_int8_agrees_with_float(trained_digits_model, tmp_path, capsys):
    model, calibration, x_test, y_test = trained_digits_model
    float_predictions = to_numpy(model.predict(x_test, batch_size=250, verbose=0)).argmax(-1)
    float_accuracy = (float_predictions == y_test).mean()
    assert float_accuracy > 0.8, "the model did not learn; agreement would be meaningless"
    for quantize in ("int8", "dynamic"):
        path = deploy.export(model, tmp_path / f"{quantize}.tflite", "litert", quantize=quantize,
                             representative_dataset=calibration, batch_size=None)  # fmt: skip
        assert_builtin_only(deploy.litert_ops(path))
        predictions = deploy.run_litert(path, x_test).argmax(-1)
        agreement = (predictions == float_predictions).mean()
        with capsys.disabled():
            print(f"\n{quantize}: top-1 agreement {agreement:.2%} on {len(y_test)} held-out digits; accuracy "
                  f"{(predictions == y_test).mean():.2%} vs float {float_accuracy:.2%}")  # fmt: skip
        assert agreement >= 0.98


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the TensorFlow backend exports directly")
def test_export_from_any_backend(digits, tmp_path):
    """A model built on JAX or PyTorch exports through a TensorFlow process: same outputs."""
    train, images = digits
    model = build("cc_mobilenet_v1", train)
    path = deploy.export(model, tmp_path / "model.tflite", "litert", batch_size=1)
    assert_matches(deploy.run_litert(path, images), to_numpy(model(images)))
    quantized = deploy.export(model, tmp_path / "int8.tflite", "litert", quantize="int8",
                              representative_dataset=train[:16], batch_size=1)  # fmt: skip
    assert deploy.run_litert(quantized, images).shape == (8, 10)


@pytest.mark.parametrize(
    "request_, message",
    [
        (dict(format="tflite"), "`format` must be one of"),
        (dict(format="litert", quantize="float16"), "`quantize` must be one of"),
        (dict(format="onnx", quantize="dynamic"), "applies to format='litert' only"),
        (dict(format="litert", quantize="int8"), "needs `representative_dataset`"),
        (dict(format="litert", batch_size=0), "`batch_size` must be None"),
    ],
)
def test_bad_requests(request_, message, tmp_path):
    model = zoo.mobilenet_v1(0.25, input_shape=(SIZE, SIZE, 3), classes=10)
    with pytest.raises(ValueError, match=message):
        deploy.export(model, tmp_path / "model.tflite", **request_)


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
