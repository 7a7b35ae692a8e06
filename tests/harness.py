"""The checks every keras-routing layer passes, in the style of Keras's own ``run_layer_test``.

``check_layer(make_layer, input_shape)`` builds the layer, calls it eagerly and symbolically
(``None`` batch), checks ``compute_output_shape``, trains a step with ``fit``, round-trips
``get_config``, saves and reloads a ``.keras`` model (``safe_mode=True``) with identical outputs,
and runs under a mixed-precision dtype policy. Families added later reuse it unchanged.
"""

import numpy as np

import keras

from tests.reference import to_numpy


def _model(layer, input_shape):
    inputs = keras.Input(input_shape[1:])
    return keras.Model(inputs, layer(inputs))


def check_layer(make_layer, input_shape, mixed_policy="mixed_bfloat16", tmp_path=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=input_shape).astype("float32")

    # Eager call, and the declared output shape agrees with the computed one.
    layer = make_layer()
    y = to_numpy(layer(x))
    assert y.shape == tuple(layer.compute_output_shape(input_shape)), "compute_output_shape"
    assert np.all(np.isfinite(y))

    # Symbolic call with an unknown batch size.
    symbolic = make_layer()(keras.Input(input_shape[1:]))
    assert tuple(symbolic.shape) == (None,) + y.shape[1:], "symbolic output shape"

    # get_config round-trips.
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config, "get_config round-trip"

    # One training step through fit changes every trainable weight.
    model = _model(make_layer(), input_shape)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, np.ones_like(y), batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for w, old in zip(model.trainable_weights, before):
        assert not np.allclose(to_numpy(w), old), f"{w.path} did not train"

    # .keras save and load: same outputs, loadable in safe mode.
    if tmp_path is not None:
        path = str(tmp_path / "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)

    # Mixed precision: computes in the low-precision dtype, keeps float32 variables.
    mixed = make_layer_with_policy(make_layer, mixed_policy)
    out = mixed(x)
    assert keras.backend.standardize_dtype(out.dtype) == mixed_policy.split("_")[1]
    assert all(w.dtype == "float32" for w in mixed.weights)
    return layer


def make_layer_with_policy(make_layer, policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return make_layer()
    finally:
        keras.config.set_dtype_policy(previous)
