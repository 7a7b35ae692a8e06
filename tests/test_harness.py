"""``tests/harness.py`` itself: it passes a layer of the shape the coming families have (two
outputs, a keyword input, a loss, a seed generator, a weight one step cannot reach) and fails
layers that break what it checks. Toy layers with constant initialisers: cheap to compile."""

import numpy as np
import pytest

import keras
from keras import ops

from tests.harness import run_layer_test


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class ToyRouter(keras.layers.Layer):
    """``(indices, gates)`` of ``inputs`` and a keyword ``context``, as a top-k router returns.

    Adds a loss and noise in training; ``closed`` multiplies the gates by ``1 + 0 * closed``, so
    its gradient is exactly zero, as for an expert no example was routed to.
    ``sublayer_dtype`` pins the dense sublayer's policy (a router ignoring its owner's policy,
    which the outputs, cast back, do not show).
    ``units`` is kept as given (a NumPy integer makes the config non-JSON)."""

    def __init__(self, units=3, sublayer_dtype=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.sublayer_dtype = sublayer_dtype
        self.dense = keras.layers.Dense(
            int(units), kernel_initializer="ones", dtype=sublayer_dtype or self.dtype_policy, name="dense"
        )
        self.seed_generator = keras.random.SeedGenerator(1)

    def build(self, inputs_shape, context_shape):
        self.dense.build((None, inputs_shape[-1] + context_shape[-1]))
        self.closed = self.add_weight(shape=(int(self.units),), initializer="zeros", name="closed")

    def call(self, inputs, context, training=None):
        logits = self.dense(ops.concatenate([inputs, ops.cast(context, inputs.dtype)], axis=-1))
        logits = ops.cast(logits, self.compute_dtype)  # right output dtype even if the sublayer is not
        if training:
            logits = logits + 0.01 * keras.random.normal(ops.shape(logits), seed=self.seed_generator)
            self.add_loss(ops.mean(ops.square(logits)))
        gates = ops.softmax(logits) * (1.0 + 0.0 * ops.cast(self.closed, logits.dtype))
        return ops.argmax(logits, axis=-1), gates

    def compute_output_shape(self, inputs_shape, context_shape):
        return (inputs_shape[0],), (inputs_shape[0], int(self.units))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sublayer_dtype": self.sublayer_dtype}


def _run(init_kwargs=None, **overrides):
    arguments = dict(
        input_shape={"inputs": (4, 5), "context": (4, 2)},
        expected_output_shape=((4,), (4, 3)),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1,
        expected_num_losses=1,
        unreachable_weights=("closed",),
        mixed_precision_policy="mixed_float16",
    )
    return run_layer_test(ToyRouter, init_kwargs or {}, **{**arguments, **overrides})


def test_a_router_with_two_outputs_a_loss_and_an_unreachable_weight_passes():
    report = _run()
    assert report.unchanged == ["closed"], "the closed gate is reported, not required to train"
    indices, gates = report.outputs
    assert indices.shape == (4,) and gates.shape == (4, 3)
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"unreachable_weights": ()}, "left closed unchanged"),
        ({"unreachable_weights": ("experts/*",)}, "matches no weight"),
        ({"expected_num_trainable_weights": 2}, "3 trainable weights, expected 2"),
        ({"expected_num_seed_generators": 0}, "1 seed generators, expected 0"),
        ({"expected_num_losses": 0}, "1 losses, expected 0"),
        ({"expected_output_shape": ((4,), (4, 2))}, "output shapes"),
    ],
)
def test_wrong_declarations_fail(overrides, message):
    with pytest.raises(AssertionError, match=message):
        _run(**overrides)


def test_a_sublayer_ignoring_the_policy_fails_the_mixed_precision_check():
    with pytest.raises(AssertionError, match="sublayer 'dense' .* computes in float32"):
        _run({"sublayer_dtype": "float32"}, run_training_check=False)


def test_a_config_that_is_not_json_fails():
    with pytest.raises(AssertionError, match="not JSON"):
        _run({"units": np.int64(3)}, run_training_check=False, run_mixed_precision_check=False)
