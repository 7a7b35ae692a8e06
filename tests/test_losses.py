"""The auxiliary objectives against their papers' formulas written in NumPy, and the loss-weight
mechanism (a non-trainable variable weighting ``add_loss``) in a compiled training step."""

import numpy as np
import pytest

import keras

from keras_routing import losses

RNG = np.random.default_rng(0)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_cv_squared_is_population_variance_over_squared_mean():
    x = np.array([1.0, 2.0, 3.0, 6.0], "float32")
    expected = np.mean((x - x.mean()) ** 2) / (x.mean() ** 2 + 1e-10)  # np.var's ddof=0 by hand
    np.testing.assert_allclose(numpy(losses.cv_squared(x)), expected, rtol=1e-6)
    assert numpy(losses.cv_squared(np.array([5.0]))) == 0.0  # one element: no variation
    assert numpy(losses.cv_squared(np.zeros(4))) == 0.0  # the epsilon keeps it finite
    uniform = np.full(5, 0.2)
    assert numpy(losses.cv_squared(uniform)) == pytest.approx(0.0, abs=1e-12)


def test_importance_and_load_losses_are_cv_squared_of_the_batch_sums():
    gates = RNG.uniform(size=(8, 4)).astype("float32")
    sums = gates.sum(axis=0)
    expected = np.mean((sums - sums.mean()) ** 2) / (sums.mean() ** 2 + 1e-10)
    np.testing.assert_allclose(numpy(losses.importance_loss(gates)), expected, rtol=1e-5)
    np.testing.assert_allclose(numpy(losses.load_loss(gates)), expected, rtol=1e-5)
    balanced = np.tile(np.eye(4, dtype="float32"), (2, 1))  # every expert used equally
    assert numpy(losses.importance_loss(balanced)) == pytest.approx(0.0, abs=1e-7)


def gates_list():
    """Three gated layers over a batch of 6: (6,), (6, 1) and (6, 2) (two gate groups)."""
    return [
        (RNG.uniform(size=(6,)) > 0.5).astype("float32"),
        (RNG.uniform(size=(6, 1)) > 0.3).astype("float32"),
        (RNG.uniform(size=(6, 2)) > 0.6).astype("float32"),
    ]


@pytest.mark.parametrize("target", [0.4, np.array([0.9, 0.5, 0.3, 0.3], "float32")])
def test_target_rate_per_gate_is_the_mean_over_gates_of_squared_rate_errors(target):
    z = gates_list()
    rates = np.array([z[0].mean(), z[1][:, 0].mean(), z[2][:, 0].mean(), z[2][:, 1].mean()])
    expected = np.mean((target - rates) ** 2)
    np.testing.assert_allclose(numpy(losses.target_rate_per_gate(z, target)), expected, rtol=1e-5)
    const_quad = np.mean(np.maximum(rates - target, 0.0) ** 2)
    np.testing.assert_allclose(
        numpy(losses.target_rate_per_gate(z, target, const_quad=True)), const_quad, rtol=1e-5, atol=1e-8
    )
    # The same gates given as one (batch, gates) tensor.
    matrix = np.concatenate([z[0][:, None], z[1], z[2]], axis=1)
    np.testing.assert_allclose(numpy(losses.target_rate_per_gate(matrix, target)), expected, rtol=1e-5)


def test_target_rate_per_batch_is_the_squared_error_of_the_overall_rate():
    z = gates_list()
    overall = np.concatenate([z[0][:, None], z[1], z[2]], axis=1).mean()  # over gates and batch
    for target in (0.2, 0.5, 0.9):
        expected = (target - overall) ** 2
        np.testing.assert_allclose(numpy(losses.target_rate_per_batch(z, target)), expected, rtol=1e-5)
        const_quad = max(overall - target, 0.0) ** 2  # no penalty for using less than the target
        np.testing.assert_allclose(
            numpy(losses.target_rate_per_batch(z, target, const_quad=True)), const_quad, rtol=1e-5, atol=1e-9
        )


def test_per_batch_and_per_gate_differ_where_gates_specialise():
    """Two gates, one always open and one always closed: the per-batch rate is on target (0.5),
    each gate is 0.5 off it."""
    z = [np.ones(4, "float32"), np.zeros(4, "float32")]
    assert numpy(losses.target_rate_per_batch(z, 0.5)) == pytest.approx(0.0)
    assert numpy(losses.target_rate_per_gate(z, 0.5)) == pytest.approx(0.25)


def test_target_rate_loss_by_name_and_bad_targets():
    z = [np.array([1.0, 1.0, 0.0, 1.0], "float32")]  # rate 0.75
    assert numpy(losses.target_rate_loss("per_batch")(z, 0.5)) == pytest.approx(0.0625)
    assert numpy(losses.target_rate_loss("per_gate_const_quad")(z, 0.9)) == pytest.approx(0.0)
    assert numpy(losses.target_rate_loss("per_batch_const_quad")(z, 0.5)) == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="`loss`"):
        losses.target_rate_loss("per_layer")
    with pytest.raises(ValueError, match="`target`"):
        losses.target_rate_per_batch(z, 1.5)
    with pytest.raises(ValueError, match="`z`"):
        losses.target_rate_per_gate([], 0.5)


def test_gate_l1_is_the_elementwise_l1_summed_over_layers_averaged_over_the_batch():
    gates = [RNG.normal(size=(4, 3)).astype("float32"), RNG.normal(size=(4, 5)).astype("float32")]
    expected = np.mean(np.abs(gates[0]).sum(axis=1) + np.abs(gates[1]).sum(axis=1))
    np.testing.assert_allclose(numpy(losses.gate_l1(gates)), expected, rtol=1e-5)
    # Not the matrix 1-norm (largest column sum) a re-implementation used.
    matrix_norm = np.mean([np.linalg.norm(g, 1) for g in gates])
    assert abs(numpy(losses.gate_l1(gates)) - matrix_norm) > 0.1
    np.testing.assert_allclose(
        numpy(losses.gate_l1(gates[0])), np.abs(gates[0]).sum(axis=1).mean(), rtol=1e-5
    )


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class SquaredKernel(keras.layers.Layer):
    """``x @ kernel`` adding ``weight * sum(kernel ** 2)``: its gradient is literal."""

    def __init__(self, weight=0.5, **kwargs):
        super().__init__(**kwargs)
        self.weight_value = weight
        losses.add_loss_weight(self, "penalty_weight", weight)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 1), initializer="ones", name="kernel")

    def call(self, x, training=None):
        losses.add_weighted_loss(self, "penalty_weight", keras.ops.sum(self.kernel**2), training)
        return keras.ops.matmul(x, self.kernel)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight_value}


def test_loss_weight_is_a_non_trainable_float32_variable_even_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    layer = SquaredKernel(0.25)
    layer(np.ones((2, 3), "float32"))
    assert layer.penalty_weight.dtype == "float32" and not layer.penalty_weight.trainable
    assert float(numpy(layer.penalty_weight)) == 0.25
    assert layer.penalty_weight in layer.non_trainable_weights
    assert [v.name for v in layer.trainable_weights] == ["kernel"]
    out = layer(np.ones((2, 3), "float32"), training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    (loss,) = layer.losses
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(numpy(loss), 0.25 * 3.0, rtol=1e-6)
    with pytest.raises(ValueError, match="`weight`|penalty_weight"):
        SquaredKernel(-0.1)


def test_weighted_loss_drives_the_compiled_training_step():
    """One SGD step with a zero data loss moves the kernel by ``lr * weight * 2 * kernel``."""
    weight, lr = 0.5, 0.1
    inputs = keras.Input((3,))
    model = keras.Model(inputs, SquaredKernel(weight)(inputs))
    model.compile(keras.optimizers.SGD(lr), "mse")
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32")  # data loss and its gradient: 0
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], weight * 3.0, rtol=1e-6)
    np.testing.assert_allclose(numpy(model.layers[1].kernel), 1.0 - lr * weight * 2.0, rtol=1e-6)
