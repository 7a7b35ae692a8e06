"""DeepMoE's layers: ``ShallowEmbeddingGate`` (eq. 6, the L1 of eq. 8, the embedding loss) and
``ChannelGate`` (eqs. 3-5), checked against numpy formulas and Keras's own layers."""

import keras
import numpy as np
import pytest

from keras_routing.layers import ChannelGate, ShallowEmbeddingGate
from tests.harness import run_layer_test
from tests.reference import to_numpy

GATE = {"gate_channels": [4, 6], "embedding_dim": 5, "num_convs": 2, "gate_l1_weight": 0.3}


def test_shallow_embedding_gate_passes_the_harness(tmp_path):
    # 2 convolutions (kernel, bias) + 2 heads; non-trainable: lambda, mu (+ step counters), frozen.
    run_layer_test(
        ShallowEmbeddingGate,
        GATE,
        input_shape=(3, 16, 16, 3),
        expected_output_shape=[(3, 4), (3, 6)],
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=5,
        expected_num_losses=1,
        # A ReLU head can start with a unit closed for the whole batch: no gradient reaches it.
        unreachable_weights=("gate_head*",),
        tmp_path=tmp_path,
    )


def test_shallow_embedding_gate_computes_in_the_mixed_policy():
    layer = ShallowEmbeddingGate(**GATE, dtype="mixed_bfloat16")
    gates = layer(np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32"))
    assert all(keras.backend.standardize_dtype(g.dtype) == "bfloat16" for g in gates)
    for sublayer in layer._flatten_layers():
        assert (sublayer.compute_dtype, sublayer.variable_dtype) == ("bfloat16", "float32")
    assert {w.dtype for w in layer.weights if "float" in w.dtype} == {"float32"}
    assert keras.backend.standardize_dtype(layer.losses[0].dtype) == "float32"


def test_channel_gate_passes_the_harness(tmp_path):
    gate = np.abs(np.random.default_rng(0).normal(size=(3, 4))).astype("float32")
    gate[:, 1] = 0.0
    run_layer_test(
        ChannelGate,
        {"filters": 5, "kernel_size": 3, "padding": "same"},
        input_shape=(3, 8, 8, 4),
        call_kwargs={"gate": gate},
        expected_output_shape=(3, 8, 8, 5),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
        tmp_path=tmp_path,
    )


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def test_gates_follow_eq_6_and_the_loss_is_the_elementwise_l1():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 16, 16, 3)).astype("float32")
    layer = ShallowEmbeddingGate(**GATE)
    gates = [to_numpy(g) for g in layer(x, training=True)]
    # The embedding, by Keras's own Conv2D with the same weights (an independent reference).
    features = x
    for conv in layer.convs:
        reference = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu")
        reference.build(features.shape)
        reference.set_weights(conv.get_weights())
        features = to_numpy(reference(features))
    e = _softmax(features.mean(axis=(1, 2)))
    for g, head in zip(gates, layer.heads):
        np.testing.assert_allclose(g, np.maximum(e @ to_numpy(head.kernel), 0.0), rtol=1e-5, atol=1e-7)
    # lambda * mean over the batch of sum_l ||g_l||_1: elementwise, not a matrix norm.
    l1 = np.mean(sum(np.abs(g).sum(axis=1) for g in gates))
    (loss,) = layer.losses
    np.testing.assert_allclose(to_numpy(loss), 0.3 * l1, rtol=1e-5)
    spectral = 0.3 * sum(np.linalg.norm(g, 2) for g in gates)
    assert not np.isclose(to_numpy(loss), spectral, rtol=1e-3)


def test_channel_gate_scales_input_channels_and_a_zero_gate_removes_a_channel():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 6, 4)).astype("float32")
    gate = np.abs(rng.normal(size=(3, 4))).astype("float32")
    gate[0, 2] = 0.0
    gate[:, 3] = 0.0
    layer = ChannelGate(5, 3, padding="same", strides=2)
    out = to_numpy(layer(x, gate))
    reference = keras.layers.Conv2D(5, 3, padding="same", strides=2)
    reference.build(x.shape)
    reference.set_weights([to_numpy(layer.kernel), to_numpy(layer.bias)])
    np.testing.assert_allclose(out, to_numpy(reference(x * gate[:, None, None, :])), rtol=1e-5, atol=1e-5)
    # A zero gate: that channel's values do not matter (eq. 5 has no term for it).
    changed = x.copy()
    changed[:, :, :, 3] = 100.0
    changed[0, :, :, 2] = -50.0
    np.testing.assert_allclose(to_numpy(layer(changed, gate)), out, rtol=1e-5, atol=1e-5)
    # Statistics: the zero fraction, and 3*3*4*5 madds per output position times the open fraction.
    np.testing.assert_allclose(to_numpy(layer.zero_fraction), np.mean(gate == 0), rtol=1e-6)
    open_fraction = np.mean(np.mean(gate != 0, axis=1))
    np.testing.assert_allclose(to_numpy(layer.realised_madds), 9 * 4 * 5 * 3 * 3 * open_fraction, rtol=1e-6)


def test_bad_input_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="gate_l1_weight"):
        ShallowEmbeddingGate([4], gate_l1_weight=-0.1)
    with pytest.raises(ValueError, match="embedding_loss_weight"):
        ShallowEmbeddingGate([4], embedding_loss_weight=-1.0)
    with pytest.raises(ValueError, match="gate_channels"):
        ShallowEmbeddingGate([])
    with pytest.raises(ValueError, match="gate_channels"):
        ShallowEmbeddingGate([4, 0])
    with pytest.raises(ValueError, match="gate"):
        ChannelGate(5, 3)(np.zeros((2, 6, 6, 4), "float32"), np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="gate"):
        ChannelGate(5, 3)(keras.Input((6, 6, 4)), keras.Input((5,)))
    layer = ShallowEmbeddingGate([4], embedding_classes=3)
    with pytest.raises(ValueError, match="labels"):
        layer.embedding_loss(None, np.full((2, 3), 1 / 3, "float32"))
    with pytest.raises(ValueError, match="embedding_classes"):
        ShallowEmbeddingGate([4])(np.zeros((2, 16, 16, 3), "float32"), return_embedding_predictions=True)
