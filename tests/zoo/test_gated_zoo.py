"""The gated ResNets: a gate on every residual block, the losses in fit, the cost rule."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing import zoo
from keras_routing.layers import GatedResidual


def _gated(model):
    return [layer for layer in model.layers if isinstance(layer, GatedResidual)]


def test_cifar_resnet_has_a_gate_per_block_and_the_cost_rule():
    model = zoo.gated_resnet_cifar(
        depth=8, input_shape=(8, 8, 3), classes=3, loss="per_gate", target_rate=0.6
    )
    assert [layer.name for layer in _gated(model)] == [
        "stage1_block1_add",
        "stage2_block1_add",
        "stage3_block1_add",
    ]
    assert zoo.info("gated_resnet_cifar").family == "gates" and zoo.info("gated_resnet").family == "gates"
    # The cost rule: a block that never runs saves exactly its residual function, two 3x3
    # convolutions 16 -> 16 at 8x8 (no biases), one multiply-add per weight per position.
    full = keras_routing.profile(model)
    closed = keras_routing.profile(model, rates={"stage1_block1_add": 0.0, "stage2_block1_add": 0.5})
    block1 = 2 * 9 * 16 * 16 * 8 * 8
    block2 = 4 * 4 * (9 * 16 * 32 + 9 * 32 * 32)  # stride 2: 4x4 outputs
    assert full.madds == full.expected_madds == closed.madds
    assert full.madds - closed.expected_madds == pytest.approx(block1 + 0.5 * block2)


@pytest.mark.slow
def test_cifar_resnet_trains_with_the_loss_and_logs_every_gate():
    model = zoo.gated_resnet_cifar(
        depth=8, input_shape=(8, 8, 3), classes=3, loss="per_gate", target_rate=0.6
    )
    assert [layer.name for layer in _gated(model)] == [
        "stage1_block1_add",
        "stage2_block1_add",
        "stage3_block1_add",
    ]
    assert zoo.info("gated_resnet_cifar").family == "gates" and zoo.info("gated_resnet").family == "gates"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 8)
    model.compile(loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for name in ("stage1_block1_add", "stage2_block1_add", "stage3_block1_add", "target_loss"):
        assert 0.0 <= history[f"{name}_open_rate"][0] <= 1.0
    # Measured on data: every gate's rate is a fraction, and the expected cost follows it.
    measured = keras_routing.profile(model, data=x)
    assert set(measured.rates) == {layer.name for layer in _gated(model)}
    assert measured.expected_madds <= measured.madds


@pytest.mark.slow
def test_cifar_resnet_110_has_54_gates():
    model = zoo.gated_resnet_cifar(depth=110, gate="independent")
    assert len(_gated(model)) == 54


def test_bad_depths_and_targets_fail():
    with pytest.raises(ValueError, match="depth"):
        zoo.gated_resnet_cifar(depth=100)
    with pytest.raises(ValueError, match="depth"):
        zoo.gated_resnet(depth=152)
    with pytest.raises(ValueError, match="target_rate"):
        zoo.gated_resnet_cifar(depth=8, target_rate=-0.1)


@pytest.mark.slow
@pytest.mark.parametrize("depth, gates", [(50, 16), (101, 33)])
def test_gated_resnet_imagenet_parameters_are_resnet_plus_gates(depth, gates):
    model = zoo.gated_resnet(depth=depth, input_shape=(32, 32, 3), classes=10)
    layers = _gated(model)
    assert len(layers) == gates
    plain = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}[depth]
    reference = plain(weights=None, input_shape=(32, 32, 3), classes=10).count_params()
    # AIG's gate on C input channels: dense C -> 16 (no bias), batch norm (4 x 16), dense 16 -> 2.
    channels = [
        layer.input[0].shape[-1] if isinstance(layer.input, list) else layer.input.shape[-1]
        for layer in layers
    ]
    gate_params = sum(16 * c + 64 + 34 for c in channels)
    # Plus bookkeeping scalars: each block's open-rate statistic, and the loss layer's target,
    # weight, their step counters and its open rate.
    assert model.count_params() == reference + gate_params + gates + 5
