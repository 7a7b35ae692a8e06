"""Inference modes: set on a trained model without rebuilding, used by the next call and by
``predict``, saved with the model."""

import numpy as np
import pytest

import keras

from keras_routing.layers import (
    CondConv2D,
    CondDense,
    CondDepthwiseConv2D,
    InferenceModes,
    cond_conv_ops,
    set_inference,
)
from tests.reference import to_numpy


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class Scaled(InferenceModes, keras.layers.Layer):
    """A toy layer with two inference modes: multiply by 1 or by 2."""

    inference_modes = ("once", "twice")

    def __init__(self, inference="once", **kwargs):
        super().__init__(**kwargs)
        self.inference = inference

    def call(self, x):
        return x * 2.0 if self.inference == "twice" else x

    def get_config(self):
        return {**super().get_config(), **self.inference_config()}


def test_mode_is_validated_settable_and_in_the_config():
    layer = Scaled()
    assert layer.inference == "once" and layer.get_config()["inference"] == "once"
    layer.inference = "twice"
    assert Scaled.from_config(layer.get_config()).inference == "twice"
    assert not layer.weights
    with pytest.raises(ValueError, match="`inference` must be one of \\('once', 'twice'\\)"):
        layer.inference = "thrice"
    with pytest.raises(ValueError, match="`inference`"):
        Scaled(inference="thrice")


def test_cond_conv_strategy_is_its_inference_mode():
    layer = CondConv2D(4, 3, 2)
    assert layer.inference_modes == ("auto", "mixture", "grouped", "patches")
    layer.inference = "patches"
    assert layer.strategy == "patches" and layer.get_config()["strategy"] == "patches"
    layer.strategy = "grouped"
    assert layer.inference == "grouped"
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        layer.strategy = "single"  # the batch-1 form "auto" picks, not a user's choice


def _model():
    inputs = keras.Input((8, 8, 3))
    y = CondConv2D(4, 3, 3, padding="same", name="conv")(inputs)
    y = CondDepthwiseConv2D(3, 3, padding="same", name="depthwise")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    outputs = Scaled(name="scaled")(CondDense(2, 3, name="dense")(y))
    return keras.Model(inputs, outputs)


def _spy(monkeypatch, table, record, label):
    for strategy, compute in list(table.items()):

        def spy(*args, _compute=compute, _name=strategy):
            record.append((label, _name))
            return _compute(*args)

        monkeypatch.setitem(table, strategy, spy)


def test_set_inference_reaches_every_layer_that_supports_the_mode(monkeypatch):
    model = _model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    model.compile(loss="mse")
    before = model.predict(x, verbose=0)
    record = []
    _spy(monkeypatch, cond_conv_ops.FULL, record, "conv")
    _spy(monkeypatch, cond_conv_ops.DEPTHWISE, record, "depthwise")

    assert set_inference(model, "mixture") == 2  # the two convolutions; CondDense has no modes
    assert model.get_layer("conv").strategy == model.get_layer("depthwise").strategy == "mixture"
    after = model.predict(x, verbose=0)  # a compiled predict, traced before with "auto"
    assert ("conv", "mixture") in record and ("depthwise", "mixture") in record
    assert {name for _, name in record} == {"mixture"}
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)  # same numbers, another way

    record.clear()
    assert set_inference(model, "patches", layer_types=CondDepthwiseConv2D) == 1
    model.predict(x, verbose=0)
    assert ("depthwise", "patches") in record and ("conv", "mixture") in record
    model.evaluate(x, before, verbose=0)  # a compiled evaluate follows too

    assert set_inference(model, "twice") == 1
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * before, rtol=1e-4, atol=1e-4)


def test_a_mode_no_layer_supports_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="'threshold'.*support"):
        set_inference(model, "threshold")
    with pytest.raises(ValueError, match="'twice'"):
        set_inference(model, "twice", layer_types=(CondConv2D, CondDepthwiseConv2D))
    with pytest.raises(ValueError, match="no layer with inference modes"):
        set_inference(keras.layers.Dense(2), "auto")
    with pytest.raises(ValueError, match="model_or_layer"):
        set_inference("model", "auto")
    assert model.get_layer("conv").strategy == "auto"  # nothing changed


def test_a_single_layer_and_a_reloaded_model_keep_their_modes(tmp_path):
    layer = CondDepthwiseConv2D(3, 2)
    assert set_inference(layer, "grouped") == 1 and layer.strategy == "grouped"
    model = _model()
    set_inference(model, "patches")
    set_inference(model, "twice")
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_layer("conv").strategy == "patches" and loaded.get_layer("scaled").inference == "twice"
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)


def test_a_change_takes_effect_in_the_next_eager_call(monkeypatch):
    layer = CondConv2D(4, 3, 2, routing=None)
    x = np.zeros((2, 6, 6, 3), "float32")
    r = np.full((2, 2), 0.5, "float32")
    record = []
    _spy(monkeypatch, cond_conv_ops.FULL, record, "conv")
    for strategy in ("grouped", "patches", "mixture"):
        layer.inference = strategy
        layer(x, routing_weights=r)
        assert record[-1] == ("conv", strategy)
