"""``prune_gated_channels``: the closed channels leave, the outputs on the data stay."""

import numpy as np
import pytest

import keras_routing
from keras_routing.transforms import prune_gated_channels
from keras_routing.zoo import deepmoe_resnet
from keras_routing.zoo.deepmoe import gate_values
from tests.reference import to_numpy


def test_pruned_model_is_smaller_and_matches_the_gated_model_on_the_data(tmp_path):
    model = deepmoe_resnet(8, input_shape=(16, 16, 3), classes=3, embedding_dim=6, num_convs=2)
    x = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    gates = gate_values(model, x)
    pruned = prune_gated_channels(model, x)
    # What stays: the channels open on at least one example, by numpy from the gates.
    expected = [int(np.sum((g != 0).any(axis=0))) for g in gates]
    assert pruned.gate.gate_channels == expected
    assert sum(expected) < sum(model.gate.gate_channels)  # ReLU gates close some channels on all
    assert pruned.get_layer("conv1_block1_1_conv").filters == expected[0]
    for before, after in zip(model.predict(x, verbose=0), pruned.predict(x, verbose=0)):
        np.testing.assert_allclose(to_numpy(after), to_numpy(before), rtol=1e-4, atol=1e-5)
    assert keras_routing.profile(pruned).madds < keras_routing.profile(model).madds
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    import keras

    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        to_numpy(reloaded.predict(x, verbose=0)[0]),
        to_numpy(pruned.predict(x, verbose=0)[0]),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="threshold"):
        prune_gated_channels(model, x, threshold=1.5)
