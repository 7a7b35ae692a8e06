"""ExitGate, EarlyExit and ExitTargetLoss against literal references (numpy), Keras's conventions
(the harness) and the claim that what follows an exit does not run."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing.layers import EarlyExit, ExitGate, ExitTargetLoss
from keras_routing.layers.conditional import cond_with_state, threaded_cond
from tests.harness import run_layer_test
from tests.reference import to_numpy


def _head(classes=3, conv=False):
    layers = [keras.layers.Conv2D(4, 3, padding="same")] if conv else []
    return keras.Sequential([*layers, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)])


def test_exit_gate_harness(tmp_path):
    run_layer_test(
        ExitGate,
        {"width": 4},
        input_shape=(2, 6, 6, 3),
        expected_output_shape=(2, 1, 2),
        expected_num_trainable_weights=10,  # two convolutions, two normalizations, the linear layer
        expected_num_non_trainable_weights=4,
        expected_num_seed_generators=1,
        run_mixed_precision_check=False,  # EarlyExit's harness checks it, a sublayer there
        tmp_path=tmp_path,
    )


def test_early_exit_harness(tmp_path):
    run_layer_test(
        EarlyExit,
        # Plain layers (a Sequential's input layer would be created at the default policy).
        {
            "classifier": keras.layers.Dense(3),
            "rest": keras.layers.Conv2D(3, 3, padding="same"),
            "gate": ExitGate(4),
        },
        input_shape=(3, 6, 6, 3),
        expected_output_shape=(3, 6, 6, 3),
        expected_num_trainable_weights=14,
        expected_num_non_trainable_weights=4,
        expected_num_seed_generators=1,
        # An exit no example of the one step took leaves its classifier (or the rest) unchanged.
        unreachable_weights=lambda weight: True,
        tmp_path=tmp_path,
    )


def test_exit_target_loss_harness(tmp_path):
    run_layer_test(
        ExitTargetLoss,
        {"target_rate": 0.3},
        input_shape=[(4, 3), (4, 1), (4, 1)],
        expected_output_shape=(4, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=5,  # target, weight, their step counters, exit_fraction
        expected_num_losses=1,
        tmp_path=tmp_path,
    )


def _nested(seed=0):
    """exit1(classifier c1, rest = exit2(classifier c2, rest r)): three classifiers in a row."""
    inner = EarlyExit(_head(), _head(conv=True), gate=ExitGate(4, seed=seed + 1), name="exit2")
    rest_input = keras.Input((6, 6, 3))
    rest = keras.Model(rest_input, inner(rest_input, return_gates=True))  # [prediction, exit gate 2]
    outer = EarlyExit(_head(), rest, gate=ExitGate(4, seed=seed), name="exit1")
    x = keras.Input((6, 6, 3))
    outputs = outer(x, return_gates=True)
    prediction = ExitTargetLoss(0.3, name="exit_loss")([outputs[0], outputs[1], outputs[2]])
    return keras.Model(x, prediction), outer, inner


def _exit_probability(layer, x):
    return to_numpy(layer.gate.open_probability(layer.gate(x)))[:, 0]


def test_an_example_takes_the_first_classifier_whose_gate_is_open():
    x = np.random.default_rng(0).normal(size=(10, 6, 6, 3)).astype("float32")
    model, outer, inner = _nested()
    p1, p2 = _exit_probability(outer, x), _exit_probability(inner, x)
    # Thresholds between the examples' probabilities: each gate is open for some, closed for others.
    outer.threshold, inner.threshold = float(np.median(p1)), float(np.median(p2))
    c1, c2, r = (to_numpy(f(x)) for f in (outer.classifier, inner.classifier, inner.rest))
    open1, open2 = p1 > outer.threshold, p2 > inner.threshold
    assert open1.any() and (~open1).any() and (open2 & ~open1).any() and (~open2 & ~open1).any()
    expected = np.where(open1[:, None], c1, np.where(open2[:, None], c2, r))
    np.testing.assert_allclose(to_numpy(model(x)), expected, rtol=1e-5, atol=1e-6)
    # The statistic: the fraction each classifier answers, literally counted.
    first = np.where(open1, 0, np.where(open2, 1, 2))
    np.testing.assert_allclose(
        to_numpy(model.get_layer("exit_loss").exit_fraction), np.bincount(first, minlength=3) / 10
    )
    # One example at a time, compiled: the same answers.
    for i in range(3):
        np.testing.assert_allclose(
            model.predict(x[i : i + 1], verbose=0), expected[i : i + 1], rtol=1e-5, atol=1e-6
        )
    # always_on never exits: every example takes the last classifier.
    keras_routing.set_inference(model, "always_on")
    np.testing.assert_allclose(to_numpy(model(x)), r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(model.get_layer("exit_loss").exit_fraction), [0, 0, 1])
    # stochastic: each example takes one of the three.
    keras_routing.set_inference(model, "stochastic")
    out = to_numpy(model(x))
    assert all(any(np.allclose(out[i], c[i], atol=1e-5) for c in (c1, c2, r)) for i in range(10))


def test_training_mixes_by_the_hard_straight_through_exit():
    x = np.random.default_rng(1).normal(size=(12, 6, 6, 3)).astype("float32")
    layer = EarlyExit(_head(), _head(conv=True), gate=ExitGate(4))
    prediction, e = (to_numpy(t) for t in layer(x, training=True, return_gates=True))
    assert set(np.unique(e)) <= {0.0, 1.0} and e.shape == (12, 1)
    here, rest = to_numpy(layer.classifier(x)), to_numpy(layer.rest(x))
    np.testing.assert_allclose(prediction, np.where(e > 0, here, rest), rtol=1e-5, atol=1e-6)
    # The gate learns: its logits get a gradient through the straight-through exit.
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, layer(inputs))
    before = to_numpy(layer.gate.logits.kernel)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, np.ones((12, 3), "float32"), batch_size=12, epochs=1, verbose=0)
    assert np.abs(to_numpy(layer.gate.logits.kernel) - before).max() > 0


@pytest.mark.parametrize("target", [0.3, 0.8])
def test_exit_target_loss_is_the_const_quad_formula(target):
    rng = np.random.default_rng(2)
    exits = [rng.integers(0, 2, (8, 1)).astype("float32") for _ in range(2)]
    exits[0][:5] = 1.0  # rate >= 5/8: above .3, below .8
    layer = ExitTargetLoss(target, weight=2.0)
    out = layer([np.zeros((8, 3), "float32"), *exits], training=True)
    assert tuple(out.shape) == (8, 3)
    rates = np.array([e.mean() for e in exits])
    expected = 2.0 * np.mean(np.maximum(target - rates, 0.0) ** 2)  # quadratic below t, 0 above
    np.testing.assert_allclose(to_numpy(layer.losses[0]), expected, rtol=1e-5, atol=1e-8)
    e1, e2 = exits[0][:, 0], exits[1][:, 0]
    fractions = [e1.mean(), ((1 - e1) * e2).mean(), ((1 - e1) * (1 - e2)).mean()]
    np.testing.assert_allclose(to_numpy(layer.exit_fraction), fractions, rtol=1e-6)
    layer([np.zeros((8, 3), "float32"), *exits], training=False)
    assert not layer.losses


@keras.saving.register_keras_serializable(package="keras_routing_tests")
class _Probe(keras.layers.Layer):
    """Passes its input through and counts its executions in a variable (written in the branch
    that runs it, so a compiled branch not taken leaves it) and, eagerly, in Python."""

    calls = 0

    def build(self, input_shape):
        self.runs = self.add_weight(shape=(), initializer="zeros", trainable=False, name="runs")

    def call(self, x):
        type(self).calls += 1
        self.runs.assign(self.runs + 1.0)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def _probed(exit_logit):
    inputs = keras.Input((6, 6, 3))
    here, rest = _Probe(name="here_probe"), _Probe(name="rest_probe")
    classifier = keras.Sequential([here, *_head().layers])
    inner = EarlyExit(
        _head(), keras.Sequential([rest, *_head(conv=True).layers]), gate=ExitGate(4), name="exit2"
    )
    layer = EarlyExit(classifier, inner, gate=ExitGate(4), name="exit1")
    model = keras.Model(inputs, layer(inputs))
    _force(layer, exit_logit)
    _force(inner, -6.0)
    return model, layer, here, rest


def _force(layer, exit_logit):
    """Every example's exit gate open (``exit_logit`` > 0) or closed, whatever the input."""
    kernel = layer.gate.logits.kernel
    layer.gate.logits.kernel.assign(np.zeros(kernel.shape, "float32"))
    layer.gate.logits.bias.assign(np.array([0.0, exit_logit], "float32"))


def _runs(*probes):
    return [float(to_numpy(p.runs)) for p in probes]


def test_an_exiting_example_runs_nothing_after_its_exit():
    x = np.random.default_rng(3).normal(size=(3, 6, 6, 3)).astype("float32")
    model, layer, here, rest = _probed(6.0)

    def runs(call):
        before = np.array(_runs(here, rest))
        call()
        return (np.array(_runs(here, rest)) - before).tolist()

    # Compiled predict at batch 1: the classifier runs once, the rest (two levels down) never.
    assert runs(lambda: model.predict(x[:1], verbose=0)) == [1.0, 0.0]
    # A batch that all exits skips the rest too.
    assert runs(lambda: model.predict(x, verbose=0)) == [1.0, 0.0]
    if keras.backend.backend() in ("torch", "tensorflow"):
        _Probe.calls = 0
        model(x[:1])  # eagerly, the branch not taken is never called
        assert _Probe.calls == 1
    # Staying: the rest runs and the classifier does not.
    _force(layer, -6.0)
    assert runs(lambda: model.predict(x[:1], verbose=0)) == [0.0, 1.0]
    # always_on never exits, whatever the gate.
    _force(layer, 6.0)
    keras_routing.set_inference(model, "always_on")
    assert runs(lambda: model.predict(x[:1], verbose=0)) == [0.0, 1.0]


def test_threaded_cond_agrees_with_the_backend_cond():
    x = np.ones((2, 3), "float32")
    results = []
    for cond in (cond_with_state, threaded_cond):
        probe = _Probe()
        probe.build(x.shape)
        outs = [
            to_numpy(cond(flag, lambda probe=probe: probe(x) * 2.0, lambda: x * 0.0, probe))
            for flag in (True, False, True)
        ]
        results.append((outs, _runs(probe)))
    (a, runs_a), (b, runs_b) = results
    assert runs_a == runs_b == [2.0]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="classifier"):
        EarlyExit("linear", _head())
    with pytest.raises(ValueError, match="rest"):
        EarlyExit(_head(), None)
    with pytest.raises(ValueError, match="inference"):
        EarlyExit(_head(), _head(), inference="fast")
    with pytest.raises(ValueError, match="threshold"):
        EarlyExit(_head(), _head(), threshold=1.5)
    with pytest.raises(ValueError, match="gate"):
        EarlyExit(_head(), _head(), gate="dependent")
    with pytest.raises(ValueError, match="classifier"):  # its output shape differs from the rest's
        EarlyExit(_head(4), _head(3))(keras.Input((6, 6, 3)))
    with pytest.raises(ValueError, match="width"):
        ExitGate(width=0)
    with pytest.raises(ValueError, match="temperature"):
        ExitGate(temperature=0.0)
    with pytest.raises(ValueError, match="rank >= 4"):
        ExitGate(4)(keras.Input((5,)))
    with pytest.raises(ValueError, match="target_rate"):
        ExitTargetLoss(target_rate=1.5)
