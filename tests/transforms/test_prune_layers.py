"""prune_gated_layers: collapsed gates removed, the rest kept, predictions unchanged on the data."""

import numpy as np
import pytest

from keras_routing import zoo
from keras_routing.layers import GatedResidual, GateTargetLoss
from keras_routing.transforms.prune_layers import prune_gated_layers


def test_pruned_model_matches_the_thresholded_model_with_fewer_weights():
    model = zoo.gated_resnet_cifar(depth=14, input_shape=(8, 8, 3), classes=3, gate="independent")
    gated = [layer for layer in model.layers if isinstance(layer, GatedResidual)]
    assert len(gated) == 6
    # Each gate collapsed closed or open (independent logits far from 0).
    closed, opened = np.array([4.0, -4.0], "float32"), np.array([-4.0, 4.0], "float32")
    pattern = [closed, opened, closed, opened, opened, closed]
    for layer, logits in zip(gated, pattern):
        layer.gate.independent_logits.assign(logits)
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")
    pruned, rates = prune_gated_layers(model, x)
    assert [rates[layer.name] for layer in gated] == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert not any(isinstance(layer, (GatedResidual, GateTargetLoss)) for layer in pruned.layers)
    # Removed: the residual functions of the closed blocks (stage2_block1 keeps its projection
    # shortcut, a layer outside the block); kept static: the others (the gates' weights go).
    removed = sum(layer.residual_function.count_params() for layer, l in zip(gated, pattern) if l is closed)
    gates = sum(layer.gate.count_params() for layer in gated)
    # The loss layer's scalars (target, weight, their step counters, its open rate) and each
    # block's open-rate statistic go too.
    bookkeeping = model.get_layer("target_loss").count_params() + len(gated)
    assert bookkeeping == 5 + 6
    assert pruned.count_params() == model.count_params() - removed - gates - bookkeeping
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="threshold"):
        prune_gated_layers(model, x, threshold=0.7)
