"""DeepMoE's models: the task's loss (eq. 7), Procedure 1 (frozen means no update), the gated
layers and widths of each factory, the paper's static FLOPs, realised multiply-adds."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing.training import Procedure1
from keras_routing.zoo import deepmoe_resnet, deepmoe_vgg16, resnet_baseline, vgg16_baseline
from keras_routing.zoo.deepmoe import _gate_outputs, gate_values
from tests.reference import to_numpy

TINY = {"input_shape": (16, 16, 3), "classes": 3, "embedding_dim": 6, "num_convs": 2}


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 16, 16, 3)).astype("float32"), rng.integers(0, 3, size=n)


def _cross_entropy(p, y):
    return float(np.mean(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))


def _expected_loss(probe, x, y, lam, mu):
    """Eq. 7 by numpy from one probe model's outputs: predictions, embedding predictions, gates."""
    predictions, embedding, *gates = (to_numpy(t) for t in probe.predict(x, batch_size=len(x), verbose=0))
    l1 = np.mean(sum(np.abs(g).sum(axis=1) for g in gates))
    return _cross_entropy(predictions, y) + lam * l1 + mu * _cross_entropy(embedding, y)


def test_loss_is_eq_7_and_procedure_1_freezes_the_embedding_and_gate_heads():
    """J = CE(base) + lambda sum_l ||g_l||_1 + mu CE(embedding) by numpy from the outputs; fit's
    logs hold every gated layer's zero-gate fraction and realised multiply-adds; after n0 = 1
    epochs (Adam: momentum-like slots, the hard case) the embedding, heads and embedding
    classifier stay bit-identical while the base network trains, lambda = mu = 0, and the loss
    is the base cross-entropy alone."""
    model = deepmoe_resnet(8, gate_l1_weight=0.2, embedding_loss_weight=0.5, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, y = _data()
    probe = keras.Model(model.inputs, [*model.outputs, *_gate_outputs(model)])  # one compiled predict
    loss = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, _expected_loss(probe, x, y, 0.2, 0.5), rtol=1e-4)
    # Labels missing where the embedding loss needs them.
    with pytest.raises(ValueError, match="labels"):
        model.compute_loss(x, None, [keras.ops.zeros((8, 3)), keras.ops.zeros((8, 3))])

    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([to_numpy(v).copy() for v in self.model.trainable_variables])

    history = model.fit(
        x, y, epochs=3, batch_size=4, verbose=0, callbacks=[Procedure1(1), Snapshot()]
    ).history
    gated = [layer for layer in model.layers if isinstance(layer, keras_routing.layers.ChannelGate)]
    assert len(gated) == 3  # one per basic block of ResNet-8
    for layer in gated:
        assert 0.0 <= history[f"{layer.name}_zero_fraction"][0] <= 1.0
        assert history[f"{layer.name}_realised_madds"][0] > 0
    gate = model.gate
    frozen = {id(v) for layer in gate.embedding_layers for v in layer.trainable_variables}
    assert len(frozen) == 2 * 2 + 3 + 2  # 2 convolutions, 3 heads, the embedding classifier
    for i, variable in enumerate(model.trainable_variables):
        moved = np.abs(snapshots[2][i] - snapshots[0][i]).max()
        if id(variable) in frozen:
            assert moved == 0.0, variable.path
        elif variable.path.endswith("kernel"):
            assert moved > 0.0, variable.path
    assert float(to_numpy(gate.gate_l1_weight)) == 0.0
    assert float(to_numpy(gate.embedding_loss_weight)) == 0.0
    loss = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, _expected_loss(probe, x, y, 0.0, 0.0), rtol=1e-4)


@pytest.fixture(scope="module")
def wide():
    return deepmoe_resnet(8, wide=True, **TINY)


def test_wide_doubles_the_gated_layers_and_gate_widths_must_match(wide):
    narrow = deepmoe_resnet(8, wide=False, **TINY)
    plain = resnet_baseline(8, input_shape=(16, 16, 3), classes=3)
    assert wide.gate.gate_channels == [32, 64, 128]  # 2 x (16, 32, 64): each block's first 3x3
    assert narrow.gate.gate_channels == [16, 32, 64]
    for model in (wide, narrow):
        assert model.get_layer("conv1_block1_1_conv").filters == model.gate.gate_channels[0]
        assert isinstance(model.get_layer("conv1_block1_2_conv"), keras_routing.layers.ChannelGate)
        assert model.get_layer("conv1_block1_2_conv").filters == 16  # the block output is not widened
    assert plain.get_layer("conv1_block1_1_conv").filters == 16

    # Same weights as the baseline, except the gates and the embedding.
    def trainable(layer):
        return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)

    assert trainable(narrow) - trainable(narrow.gate) == trainable(plain)
    from keras_routing.models.backbones.resnet_basic import basic_resnet_backbone
    from keras_routing.models.conditioners import ChannelGateConditioner

    wrong = ChannelGateConditioner(lambda s: s.role == "basic_first", widen=1, gate_channels=[16, 32, 32])
    with pytest.raises(ValueError, match="gate_channels"):
        basic_resnet_backbone(depth=8, cifar=True, conditioner=wrong, input_shape=(16, 16, 3), classes=3)
    with pytest.raises(ValueError, match="variant"):
        deepmoe_resnet(56, variant="B")
    with pytest.raises(ValueError, match="depth"):
        deepmoe_resnet(57)


def test_realised_madds_of_profile_follow_the_gates(wide):
    """profile(data=...): each ChannelGate's expected madds are its static ones times the mean
    fraction of open input channels over the data, from the gates by numpy."""
    model = wide
    x, _ = _data()
    report = keras_routing.profile(model, data=x)
    gates = gate_values(model, x)
    rows = {row.name: row for row in report.layers}
    for index, name in enumerate(["conv1_block1_2_conv", "conv2_block1_2_conv", "conv3_block1_2_conv"]):
        layer = model.get_layer(name)
        out = layer.output.shape
        static = 9 * gates[index].shape[1] * layer.filters * out[1] * out[2]
        assert rows[name].madds == static
        np.testing.assert_allclose(rows[name].expected_madds, static * np.mean(gates[index] != 0), rtol=1e-5)
    assert not report.uncounted
    assert report.expected_madds < report.madds


TABLE_4 = {
    "all": (8.15e8, 24.18e6),
    "high": (3.51e8, 24.15e6),
    "mid": (9.18e8, 24.16e6),
    "low": (43.16e8, 24.18e6),
}


@pytest.mark.parametrize(
    "widen", ["all", *(pytest.param(w, marks=pytest.mark.slow) for w in ("high", "mid", "low"))]
)
def test_table_4_static_flops_and_params_of_the_vgg16_widenings(widen):
    """Table 4 ("Params" control): FLOPs 8.15, 3.51, 9.18, 43.16 (x 1e8) and 24.15-24.18M
    parameters for W13-All, W1-High, W1-Mid, W4-Low. The paper's parameters are the 13
    convolutions' weights; the batch norms and the 100-way classifier add 0.3%. (W13-All, the
    paper's choice, is a default test; the others are slow.)"""
    for flops, params in [TABLE_4[widen]]:
        model = vgg16_baseline(widen)
        report = keras_routing.profile(model)
        assert abs(report.madds - flops) / flops < 0.03, (widen, report.madds)
        conv_params = sum(
            int(np.prod(layer.kernel.shape))
            for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)
        )
        assert abs(conv_params - params) / params < 0.003, (widen, conv_params)


@pytest.mark.slow
def test_full_size_models_build_with_their_gated_layers():
    """ResNet-18/34/50 (A and B) at 224, the CIFAR ResNet-56/110, and DeepMoE VGG16."""
    r50a = deepmoe_resnet(50, variant="A")
    r50b = deepmoe_resnet(50, variant="B")
    assert len(r50a.gate.gate_channels) == 32 and len(r50b.gate.gate_channels) == 16
    assert r50a.gate.gate_channels[:2] == [128, 128]  # conv2_block1: 2 x 64 for the 1x1 and the 3x3
    assert r50b.get_layer("conv2_block1_2_conv").filters == 128
    assert r50b.get_layer("conv2_block1_1_conv").filters == 64
    # He et al.'s 3.8e9 FLOPs of ResNet-50 and Table 3's reductions (implied base 3.70-3.85e9).
    plain = keras_routing.profile(resnet_baseline(50))
    assert abs(plain.madds - 3.8e9) / 3.8e9 < 0.03
    for depth, gated in ((18, 8), (34, 16), (56, 27), (110, 54)):
        assert len(deepmoe_resnet(depth).gate.gate_channels) == gated
    assert len(deepmoe_vgg16("all").gate.gate_channels) == 12
