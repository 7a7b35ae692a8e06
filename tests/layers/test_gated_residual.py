"""GatedResidual, BypassGate and GateTargetLoss against the paper's formulas (numpy), Keras's
conventions (the harness) and the claim that a closed gate does not run F."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing import metrics as routing_metrics
from keras_routing.layers import BypassGate, GatedResidual, GateTargetLoss
from keras_routing.layers.gated_residual import gumbel_softmax_open
from keras_routing.models.task import Task
from tests.harness import run_layer_test
from tests.reference import gradients, to_numpy


def _conv(filters=4):
    return keras.layers.Conv2D(filters, 3, padding="same")


@pytest.mark.parametrize(
    "kwargs, shape, out, trainable, non_trainable",
    [
        # One harness run (the suite's time is short): the dependent gate, two filter groups, no
        # residual sum, so F changes the channels.
        (
            {"residual_function": _conv(6), "residual": False, "granularity": 2},
            (3, 6, 6, 4),
            (3, 6, 6, 6),
            7,
            3,
        ),
    ],
    ids=["dependent_granularity_not_residual"],
)
def test_harness(kwargs, shape, out, trainable, non_trainable, tmp_path):
    run_layer_test(
        GatedResidual,
        kwargs,
        input_shape=shape,
        expected_output_shape=out,
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=non_trainable,
        expected_num_seed_generators=1,
        # A gate closed for the whole batch of the one step leaves F's weights unchanged.
        unreachable_weights=lambda weight: True,
        tmp_path=tmp_path,
    )


def _independent(logit_open, logit_closed=0.0, function=None, **kwargs):
    layer = GatedResidual(function or _conv(), gate="independent", **kwargs)
    layer.build((None, 5, 5, 4))
    n = layer.granularity
    layer.gate.independent_logits.assign(np.array([logit_closed, logit_open] * n, "float32"))
    return layer


def test_threshold_stochastic_and_always_on_follow_the_formulas():
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 4)).astype("float32")
    layer = _independent(0.3)  # p(open) = sigmoid(0.3) ~ 0.574
    f = to_numpy(layer.residual_function(x))
    p = 1 / (1 + np.exp(-0.3))
    assert p > 0.5
    np.testing.assert_allclose(to_numpy(layer(x)), x + f, rtol=1e-5, atol=1e-5)
    layer.threshold = 0.6  # above p: closed
    np.testing.assert_allclose(to_numpy(layer(x)), x, rtol=0, atol=0)
    layer.inference = "always_on"
    np.testing.assert_allclose(to_numpy(layer(x)), x + f, rtol=1e-5, atol=1e-5)
    layer.inference = "stochastic"
    outs = np.stack([to_numpy(layer(x)) for _ in range(6)])
    # Each example is x or x + F(x), by a sample.
    is_open = np.all(np.isclose(outs, x + f, atol=1e-5), axis=(2, 3, 4))
    is_closed = np.all(np.isclose(outs, x, atol=1e-6), axis=(2, 3, 4))
    assert np.all(is_open | is_closed) and is_open.any() and is_closed.any()
    with pytest.raises(ValueError, match="inference"):
        layer.inference = "sometimes"


def test_granularity_gates_groups_of_filters():
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 4)).astype("float32")
    layer = _independent(3.0, granularity=2)
    layer.gate.independent_logits.assign(np.array([3.0, -3.0, -3.0, 3.0], "float32"))  # group 2 open only
    f = to_numpy(layer.residual_function(x))
    expected = x + np.concatenate([0 * f[..., :2], f[..., 2:]], axis=-1)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    assert to_numpy(layer.open_rate).tolist() == [0.0, 1.0]


def test_gumbel_straight_through_honours_the_temperature():
    logits = np.array([[[0.2, 0.9]], [[1.5, -0.4]], [[0.0, 0.1]]], "float32")
    for temperature in (0.5, 2.0):
        u = to_numpy(keras.random.uniform(logits.shape, 1e-10, 1.0, seed=keras.random.SeedGenerator(7)))
        g = -np.log(-np.log(u) + 1e-10)
        y = np.exp((logits + g) / temperature)
        soft = y[..., 1] / y.sum(-1)
        z = to_numpy(gumbel_softmax_open(logits, temperature, keras.random.SeedGenerator(7)))
        np.testing.assert_array_equal(z, (soft > 0.5).astype("float32"))
        (grad,) = gradients(
            lambda l, t=temperature: keras.ops.sum(gumbel_softmax_open(l, t, keras.random.SeedGenerator(7))),
            logits,
        )
        d = soft * (1 - soft) / temperature  # d soft_open / d logit_open; minus that for closed
        np.testing.assert_allclose(grad, np.stack([-d, d], axis=-1), rtol=1e-4, atol=1e-6)


class _NaNFunction(keras.layers.Layer):
    """A residual function that poisons its output: if it ran, 0 * NaN would show."""

    calls = 0

    def call(self, x):
        type(self).calls += 1
        return x * np.float32("nan")

    def compute_output_shape(self, input_shape):
        return input_shape


def _closed_model(open_logit):
    x = keras.Input((5, 5, 4))
    layer = GatedResidual(_NaNFunction(), gate="independent")
    model = keras.Model(x, layer(x))
    layer.gate.independent_logits.assign(np.array([0.0, open_logit], "float32"))
    return model, layer


def test_a_closed_gate_does_not_run_the_residual_function():
    x = np.random.default_rng(2).normal(size=(1, 5, 5, 4)).astype("float32")
    model, layer = _closed_model(-4.0)
    # Compiled (jit / tf.function / torch) predict at batch 1: exactly the shortcut, no NaN.
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    # A batch whose gates are all closed skips it too.
    np.testing.assert_array_equal(model.predict(np.concatenate([x] * 3), verbose=0), np.concatenate([x] * 3))
    if keras.backend.backend() in ("torch", "tensorflow"):
        _NaNFunction.calls = 0
        layer(x)  # eager: the branch not taken is never called
        assert _NaNFunction.calls == 0
    # Open, or always on, it runs.
    keras_routing.set_inference(model, "always_on")
    assert np.isnan(model.predict(x, verbose=0)).all()
    # The profiler measures the rate in the model's mode: always on, F runs for every example.
    assert keras_routing.profile(model, data=x).rates == {layer.name: 1.0}


class _RecordsMean(keras.layers.Layer):
    """A residual function that writes a routing statistic in inference, as routed or
    channel-gated layers do: ``2 x``, recording ``mean(x)``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        routing_metrics.add_statistic(self, "input_mean")

    def compute_output_shape(self, shape):
        return shape

    def call(self, x):
        routing_metrics.record_statistic(self, "input_mean", keras.ops.mean(x))
        return 2.0 * x


@pytest.mark.parametrize("open_logit", [4.0, -4.0])
def test_a_residual_function_that_writes_state_runs_under_the_gate(open_logit):
    """On JAX a write inside a traced ``lax.cond`` branch would leak a tracer: the state goes
    through the branches. Open, F runs (``x + 2x``) and its statistic is written; closed, the
    block is its shortcut and the statistic keeps its value."""
    x = keras.Input((3, 3, 2))
    layer = GatedResidual(_RecordsMean(), gate="independent")
    model = keras.Model(x, layer(x))
    layer.gate.independent_logits.assign(np.array([0.0, open_logit], "float32"))
    images = np.full((1, 3, 3, 2), 0.5, "float32")
    outputs = model.predict(images, verbose=0)
    if open_logit > 0:
        np.testing.assert_allclose(outputs, 3 * images)
        assert float(to_numpy(layer.residual_function.input_mean)) == pytest.approx(0.5)
    else:
        np.testing.assert_array_equal(outputs, images)
        assert float(to_numpy(layer.residual_function.input_mean)) == 0.0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="gate"):
        GatedResidual(_conv(), gate="random")
    with pytest.raises(ValueError, match="inference"):
        GatedResidual(_conv(), inference="fast")
    with pytest.raises(ValueError, match="threshold"):
        GatedResidual(_conv(), threshold=1.5)
    with pytest.raises(ValueError, match="output shape"):
        GatedResidual(_conv(6))(keras.Input((5, 5, 4)))
    with pytest.raises(ValueError, match="granularity"):
        GatedResidual(_conv(), granularity=3)(keras.Input((5, 5, 4)))
    with pytest.raises(ValueError, match="residual_function"):
        GatedResidual("conv")
    with pytest.raises(ValueError, match="target_rate"):
        GateTargetLoss(target_rate=1.2)
    with pytest.raises(ValueError, match="loss"):
        GateTargetLoss(loss="per_layer")
    with pytest.raises(ValueError, match="temperature"):
        BypassGate(1, temperature=0)


@pytest.mark.parametrize("loss", ["per_gate", "per_batch", "per_gate_const_quad", "per_batch_const_quad"])
def test_target_loss_is_the_papers_formula(loss):
    rng = np.random.default_rng(3)
    gates = [rng.integers(0, 2, (6, 1)).astype("float32"), rng.integers(0, 2, (6, 2)).astype("float32")]
    t, weight = 0.3, 2.0
    layer = GateTargetLoss(t, loss, weight=weight)
    out = layer([np.zeros((6, 3), "float32"), *gates], training=True)
    assert tuple(out.shape) == (6, 3)
    z = np.concatenate(gates, axis=1)
    clip = (lambda e: np.maximum(e, 0)) if loss.endswith("const_quad") else (lambda e: e)
    expected = np.mean(clip(z.mean(0) - t) ** 2) if loss.startswith("per_gate") else clip(z.mean() - t) ** 2
    np.testing.assert_allclose(to_numpy(layer.losses[0]), weight * expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.open_rate), z.mean(), rtol=1e-6)
    layer([np.zeros((6, 3), "float32"), *gates], training=False)
    assert not layer.losses


def _gated_task(target=0.4, loss="per_batch", momentum=None):
    x = keras.Input((6, 6, 4))
    y, z1 = GatedResidual(_conv(), name="g1")(x, return_gates=True)
    y, z2 = GatedResidual(_conv(), gate="independent", name="g2")(y, return_gates=True)
    p = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(y))
    p = GateTargetLoss(target, loss, target_momentum=momentum, name="target")([p, z1, z2])
    return Task(x, p)


def test_fit_logs_open_rates_and_trains_the_target_loss():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(16, 6, 6, 4)).astype("float32"), rng.integers(0, 3, 16)
    model = _gated_task(target=0.0, loss="per_batch")
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    for key in ("g1_open_rate", "g2_open_rate", "target_open_rate", "loss"):
        assert key in history and len(history[key]) == 3
    # A target of 0 with a strong weight closes gates: the independent gate's logits move to closed.
    logits = to_numpy(model.get_layer("g2").gate.independent_logits)
    assert logits[1] - logits[0] < 2.0 - 0.1  # started at 1.9


def test_variable_target_is_a_moving_average_of_the_open_rate():
    layer = GateTargetLoss(0.8, "per_batch", target_momentum=0.75)
    target = 0.8
    for rate in (0.25, 0.5):
        z = (np.arange(8) < 8 * rate).astype("float32")[:, None]
        layer([np.zeros((8, 1), "float32"), z], training=True)
        np.testing.assert_allclose(to_numpy(layer.losses[0]), (rate - target) ** 2, rtol=1e-5)
        target = 0.75 * target + 0.25 * rate
        np.testing.assert_allclose(to_numpy(layer.moving_target), target, rtol=1e-6)


def test_ensemble_predict_averages_stochastic_runs_and_restores_the_mode():
    x = np.random.default_rng(5).normal(size=(2, 5, 5, 4)).astype("float32")
    inputs = keras.Input((5, 5, 4))
    layer = _independent(0.0)  # p(open) = 0.5
    model = keras.Model(inputs, layer(inputs))
    layer.gate.independent_logits.assign(np.array([0.0, 0.0], "float32"))
    f = to_numpy(layer.residual_function(x))
    mean = keras_routing.ensemble_predict(model, x, runs=24)
    # Each example is x + (its fraction of open runs) * F(x): within 0.35 of 0.5 but for ~1e-3.
    np.testing.assert_allclose(mean, x + 0.5 * f, atol=0.35 * np.abs(f).max() + 1e-3)
    assert layer.inference == "threshold"
    with pytest.raises(ValueError, match="runs"):
        keras_routing.ensemble_predict(model, x, runs=0)
