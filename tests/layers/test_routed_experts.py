"""``NoisyTopKRouter`` and ``RoutedExperts`` against literal NumPy formulas of Shazeer et al. 2017
(top-k softmax gates, importance and load losses with the normal-CDF estimator), sparse dispatch
against dense (forward and gradient, eager and compiled), capacity drops counted, statistics in
a ``Task``'s logs, the annealed balancing weight inside ``fit`` and across a resumed run."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_routing import schedules
from keras_routing.layers import routed_dispatch
from keras_routing.layers.expert_types import OMNIGLOT_EXPERTS, make_expert
from keras_routing.layers.routed_experts import NoisyTopKRouter, RoutedExperts
from keras_routing.models.task import Task
from keras_routing.training import fit_resumable
from tests.harness import run_layer_test
from tests.interrupt import Interrupt, KillAt
from tests.reference import gradients, to_numpy

BACKEND = keras.backend.backend()


def literal_gates(logits, k):
    """softmax(keep_top_k(logits, k)): -inf outside the top k, then a row softmax."""
    gates = np.zeros_like(logits)
    for row, values in enumerate(logits):
        top = np.argsort(-values, kind="stable")[:k]
        e = np.exp(values[top] - values[top].max())
        gates[row, top] = e / e.sum()
    return gates


def literal_cv_squared(x):
    x = np.asarray(x, "float64")
    return x.var() / (x.mean() ** 2 + 1e-10)


def literal_load_probability(clean, noisy, stddev, k):
    """P(x, i) = Phi((clean_i - kth largest noisy logit among the other experts) / stddev_i)."""
    phi = np.vectorize(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))))
    out = np.zeros_like(clean, dtype="float64")
    for b in range(clean.shape[0]):
        for i in range(clean.shape[1]):
            others = np.delete(noisy[b], i)
            threshold = np.sort(others)[::-1][k - 1]
            out[b, i] = phi((clean[b, i] - threshold) / stddev[b, i])
    return out


def test_inference_gates_are_the_top_k_softmax_of_the_clean_logits():
    rng = np.random.RandomState(0)
    x = rng.randn(6, 5, 5, 3).astype("float32")
    router = NoisyTopKRouter(5, 2, kernel_initializer="glorot_uniform", seed=1)
    gates = to_numpy(router(x))
    pooled = x.mean(axis=(1, 2))
    expected = literal_gates(pooled @ to_numpy(router.w_gate), 2)
    np.testing.assert_allclose(gates, expected, rtol=1e-5, atol=1e-6)
    assert ((gates != 0).sum(axis=1) == 2).all()
    # Its losses: the importance and load cv^2, each times 0.1; load from hard counts at inference.
    importance, load = (float(to_numpy(v)) for v in router.losses)
    assert importance == pytest.approx(0.1 * literal_cv_squared(expected.sum(0)), rel=1e-4, abs=1e-7)
    assert load == pytest.approx(0.1 * literal_cv_squared((expected != 0).sum(0)), rel=1e-4, abs=1e-7)


def test_training_gates_have_k_nonzeros_summing_to_one_and_are_noisy():
    x = np.random.RandomState(1).randn(16, 4).astype("float32")
    router = NoisyTopKRouter(6, 3, kernel_initializer="glorot_uniform", seed=2)
    a, b = to_numpy(router(x, training=True)), to_numpy(router(x, training=True))
    for gates in (a, b):
        assert ((gates != 0).sum(axis=1) == 3).all()
        np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(a, b)  # fresh noise each call
    np.testing.assert_array_equal(to_numpy(router(x)), to_numpy(router(x)))  # inference: deterministic


def test_load_probability_is_the_normal_cdf_estimator():
    rng = np.random.RandomState(3)
    router = NoisyTopKRouter(5, 2)
    clean = rng.randn(7, 5).astype("float32")
    stddev = (np.abs(rng.randn(7, 5)) + 0.1).astype("float32")
    noisy = (clean + rng.randn(7, 5) * stddev).astype("float32")
    top = -np.sort(-noisy, axis=1)[:, :3]
    got = to_numpy(router._probability_in_top_k(clean, noisy, stddev, top))
    np.testing.assert_allclose(got, literal_load_probability(clean, noisy, stddev, 2), rtol=1e-4, atol=1e-6)


def test_task_embedding_is_concatenated_to_the_router_input():
    rng = np.random.RandomState(4)
    x, e = rng.randn(4, 6, 6, 3).astype("float32"), rng.randn(4, 2).astype("float32")
    router = NoisyTopKRouter(4, 1, kernel_initializer="glorot_uniform")
    gates = to_numpy(router(x, task_embedding=e))
    assert router.w_gate.shape == (5, 4)
    features = np.concatenate([x.mean(axis=(1, 2)), e], axis=1)
    np.testing.assert_allclose(gates, literal_gates(features @ to_numpy(router.w_gate), 1), atol=1e-6)
    with pytest.raises(ValueError, match="task_embedding"):
        router(x, task_embedding=np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="task_embedding"):
        NoisyTopKRouter(4, 1, task_embedding_dim=3)(x, task_embedding=e)


@pytest.mark.parametrize("k", [0, 5, 1.5, True])
def test_bad_k_names_the_argument(k):
    with pytest.raises(ValueError, match="`k`"):
        NoisyTopKRouter(4, k)


def test_bad_routed_experts_arguments_name_what_is_wrong():
    x = np.zeros((2, 6, 6, 4), "float32")
    with pytest.raises(
        ValueError, match=r"expert_0_conv3x3.*\(2, 6, 6, 8\).*expert_1_identity.*\(2, 6, 6, 4\)"
    ):
        RoutedExperts(["conv3x3", "identity"], 1, filters=8)(x)
    with pytest.raises(ValueError, match="capacity_factor"):
        RoutedExperts(["identity", "identity"], 1, capacity_factor=0)
    with pytest.raises(ValueError, match="routes over 3 experts"):
        RoutedExperts(["identity", "identity"], NoisyTopKRouter(3, 1))
    with pytest.raises(ValueError, match="filters"):
        RoutedExperts(["conv3x3"], 1)
    with pytest.raises(ValueError, match="dispatch"):
        RoutedExperts(["identity"], 1, dispatch="fast")


def test_routed_experts_pass_the_harness(tmp_path):
    run_layer_test(
        RoutedExperts,
        {
            "experts": ["conv3x3", "maxpool3x3", "identity", "squeeze_excite"],
            "router": 2,
            "filters": 4,
            "dispatch": "dense",
        },
        input_shape=(3, 6, 6, 4),
        expected_output_shape=(3, 6, 6, 4),
        expected_num_trainable_weights=2 + 6 + 4,
        expected_num_non_trainable_weights=7,
        expected_num_seed_generators=1,
        expected_num_losses=2,
        unreachable_weights=lambda w: "expert_" in w.path,  # experts top-2 did not pick
        tmp_path=tmp_path,
    )
    mixed = RoutedExperts(["conv3x3", "identity", "squeeze_excite"], 2, filters=4, dtype="mixed_bfloat16")
    assert keras.backend.standardize_dtype(mixed(np.zeros((2, 6, 6, 4), "float32")).dtype) == "bfloat16"
    for sublayer in mixed._flatten_layers():
        assert (sublayer.compute_dtype, sublayer.variable_dtype) == ("bfloat16", "float32"), sublayer.name
    assert all(w.dtype in ("float32", "int32", "int64") for w in mixed.weights)


def _layer(dispatch, capacity_factor=2.0, seed=0):
    keras.utils.set_random_seed(seed)
    layer = RoutedExperts(
        ["conv3x3", "conv1x7_7x1", "avgpool3x3", "identity"],
        NoisyTopKRouter(4, 2, kernel_initializer="glorot_uniform"),
        filters=3,
        dispatch=dispatch,
        capacity_factor=capacity_factor,
    )
    return layer


def test_sparse_equals_dense_forward_and_gradient_eagerly():
    rng = np.random.RandomState(5)
    x = rng.randn(6, 5, 5, 3).astype("float32")
    layer = _layer("dense")
    layer(x)
    weights = rng.randn(6, 5, 5, 3).astype("float32")
    results = {}
    for mode in ("dense", "sparse"):
        layer.inference = mode
        output = to_numpy(ops.stop_gradient(layer(x)))
        (grad,) = gradients(lambda t: ops.sum(ops.multiply(layer(t), weights)), x)
        results[mode] = output, grad
    np.testing.assert_allclose(results["sparse"][0], results["dense"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results["sparse"][1], results["dense"][1], rtol=1e-4, atol=1e-5)


def _compiled(function):
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function)


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch runs eagerly: sparse dispatch is exact there")
def test_sparse_equals_dense_under_jit_when_nothing_is_dropped():
    rng = np.random.RandomState(6)
    x = rng.randn(6, 5, 5, 3).astype("float32")
    weights = rng.randn(6, 5, 5, 3).astype("float32")
    layer = _layer("dense", capacity_factor=2.0)  # n / k = 2: capacity = batch
    layer(x)
    dense = to_numpy(layer(x))
    (dense_grad,) = gradients(lambda t: ops.sum(ops.multiply(layer(t), weights)), x)
    layer.inference = "sparse"
    if BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(t):
            outputs, _ = layer.stateless_call(trainable, non_trainable, t)
            return ops.sum(ops.multiply(outputs, weights))

        sparse, updates = jax.jit(lambda t: layer.stateless_call(trainable, non_trainable, t))(x)
        dropped = dict(zip([v.path for v in layer.non_trainable_variables], updates))[
            layer.dropped_fraction.path
        ]
        sparse_grad = jax.jit(jax.grad(loss))(x)
        np.testing.assert_allclose(np.asarray(sparse_grad), dense_grad, rtol=1e-4, atol=1e-5)
    else:
        import tensorflow as tf

        sparse = tf.function(lambda t: layer(t))(x)
        dropped = layer.dropped_fraction
        (sparse_grad,) = gradients(tf.function(lambda t: ops.sum(ops.multiply(layer(t), weights))), x)
        np.testing.assert_allclose(sparse_grad, dense_grad, rtol=1e-4, atol=1e-5)
    assert float(to_numpy(dropped)) == 0.0
    np.testing.assert_allclose(to_numpy(sparse), dense, rtol=1e-5, atol=1e-5)


def test_capacity_dispatch_drops_over_capacity_and_renormalises():
    """The pure capacity rule on given gates: experts 0 and 1 are each chosen by 3 examples but
    hold 2 (those with the largest gates); the third falls back to its other expert, weight 1."""
    gates = np.array([[0.9, 0.1, 0.0], [0.6, 0.0, 0.4], [0.3, 0.7, 0.0], [0.0, 0.5, 0.5]], "float32")
    x = np.arange(4, dtype="float32").reshape(4, 1) + 1.0
    experts = [lambda t: t * 10.0, lambda t: t * 100.0, lambda t: t * 1000.0]
    out, used = routed_dispatch.sparse_capacity(
        experts, x, gates, lambda e, t: e(t), (None, 1), capacity_per_expert=2
    )
    expected_used = gates.copy()
    expected_used[2] = [0.0, 1.0, 0.0]  # example 2 had the smallest expert-0 gate: dropped there
    expected_used[0] = [1.0, 0.0, 0.0]  # example 0 had the smallest expert-1 gate
    np.testing.assert_allclose(to_numpy(used), expected_used, rtol=1e-6)
    expected = (expected_used * np.array([10.0, 100.0, 1000.0])).sum(1, keepdims=True) * x
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5)
    assert routed_dispatch.capacity(8, 2, 4, 1.0) == 4
    assert routed_dispatch.capacity(8, 2, 4, 100.0) == 8


def _task(layer, shape):
    inputs = keras.Input(shape)
    outputs = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    return Task(inputs, keras.layers.Dense(2, name="head")(outputs))


def test_statistics_are_logged_through_a_task():
    rng = np.random.RandomState(7)
    x, y = rng.randn(8, 5, 5, 3).astype("float32"), rng.randn(8, 2).astype("float32")
    layer = _layer("sparse", capacity_factor=0.5)  # capacity 1 of batch 4 under jit
    layer.router.noisy = False
    model = _task(layer, (5, 5, 3))
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    name = layer.router.name
    loads = [history.history[f"{name}_expert_load_{i}"][0] for i in range(4)]
    gates = to_numpy(layer.router(x))
    np.testing.assert_allclose(loads, (gates != 0).mean(0), atol=1e-6)  # same weights: lr 0
    assert sum(loads) == pytest.approx(2.0)
    cv = history.history[f"{name}_importance_cv"][0]
    halves = [np.sqrt(literal_cv_squared(g.sum(0))) for g in (gates[:4], gates[4:])]
    assert cv == pytest.approx(np.mean(halves), rel=1e-4)
    dropped = history.history[f"{layer.name}_dropped_fraction"][0]
    if BACKEND == "torch":
        assert dropped == 0.0  # eager: exact dispatch drops nothing
    else:
        assert dropped > 0.2  # 8 assignments per batch, 4 experts of capacity 1: at least half dropped


def _balancing_model(schedule):
    keras.utils.set_random_seed(3)
    router = NoisyTopKRouter(
        4,
        2,
        noisy=False,
        importance_weight=schedule,
        load_weight=schedule,
        kernel_initializer="glorot_uniform",
    )
    layer = RoutedExperts(["identity"] * 4, router, name="routed")
    inputs = keras.Input((3,))
    model = Task(inputs, layer(inputs))
    model.compile(keras.optimizers.SGD(0.0))  # the loss is the balancing loss alone; weights fixed
    return model, router


X = np.random.RandomState(8).randn(12, 3).astype("float32")


class BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self.losses.append((batch + 1) * mean - batch * self._previous)
        self._previous = mean


def test_the_annealed_balancing_weight_changes_the_loss_mid_training():
    schedule = schedules.Linear(0.1, 0.0, steps=4)
    model, router = _balancing_model(schedule)
    recorder = BatchLosses()
    model.fit(X, X, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[recorder])  # 6 steps
    gates = to_numpy(router(X))
    expected = []
    for step in range(6):
        batch = gates[(step % 3) * 4 : (step % 3) * 4 + 4]
        balance = literal_cv_squared(batch.sum(0)) + literal_cv_squared((batch != 0).sum(0))
        expected.append(max(0.0, 0.1 * (1 - step / 4)) * balance)
    assert expected[0] > 0.0
    np.testing.assert_allclose(recorder.losses, expected, rtol=1e-3, atol=1e-6)
    assert float(to_numpy(router.importance_weight)) == 0.0


def test_a_resumed_run_continues_the_balancing_schedule_at_the_exact_step(tmp_path):
    import tensorflow as tf

    def stream():
        return tf.data.Dataset.from_tensor_slices((X, X)).batch(4).repeat(3)

    schedule = schedules.Linear(0.1, 0.0, steps=20)
    model, router = _balancing_model(schedule)
    with pytest.raises(Interrupt):
        fit_resumable(
            model,
            stream(),
            epochs=3,
            steps_per_epoch=3,
            backup_dir=tmp_path,
            backup_every=2,
            callbacks=[KillAt(5)],
            verbose=0,
        )
    resumed, router = _balancing_model(schedule)
    fit_resumable(resumed, stream(), epochs=3, steps_per_epoch=3, backup_dir=tmp_path, verbose=0)
    steps = [int(to_numpy(s.step)) for s in schedules.scheduled_variables(resumed)]
    assert steps == [9, 9] == [int(to_numpy(resumed.optimizer.iterations))] * 2
    assert float(to_numpy(router.load_weight)) == pytest.approx(0.1 * (1 - 9 / 20), abs=1e-7)


@pytest.mark.slow  # seven experts eagerly: ~30 s on JAX on 2 shared cores
def test_omniglot_experts_agree_and_dispatch_reaches_every_expert():
    x = np.random.RandomState(9).randn(8, 6, 6, 5).astype("float32")
    layer = RoutedExperts(list(OMNIGLOT_EXPERTS), 7, filters=5)
    assert layer.inference == "auto" and layer._dispatch() == "dense"  # k == n
    assert to_numpy(layer(x)).shape == (8, 6, 6, 5)
    conv = make_expert("conv1x7_7x1", 4, name="c")
    conv.build((None, 6, 6, 5))
    assert [tuple(c.kernel.shape) for c in conv.convs] == [(1, 7, 5, 4), (7, 1, 4, 4)]


class _Scale(keras.layers.Layer):
    """An expert that multiplies by ``factor``, or returns NaN where ``factor`` is None."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return ops.log(ops.zeros_like(x) - 1.0) if self.factor is None else x * self.factor

    def compute_output_shape(self, input_shape):
        return input_shape


def test_at_batch_1_compiled_inference_runs_only_the_chosen_experts():
    """Expert 2 returns NaN and is never chosen. At batch 1 every expert has capacity 1, so
    without a conditional it would run on the example (gate 0) and 0 * NaN would reach the
    output; the predict function (jit on JAX, tf.function on TF, eager on PyTorch) skips it."""
    router = NoisyTopKRouter(3, 2, noisy=False, name="router")
    layer = RoutedExperts([_Scale(2.0), _Scale(3.0), _Scale(None)], router, dispatch="sparse")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    w_gate = np.array([[1.0, 0.5, -100.0]] * 4, "float32")
    router.w_gate.assign(w_gate)
    x = np.array([[0.5, 1.0, 1.5, 2.0]], "float32")
    gates = literal_gates(x @ w_gate, 2)
    expected = x * (2.0 * gates[:, :1] + 3.0 * gates[:, 1:2])
    np.testing.assert_allclose(to_numpy(model.predict_on_batch(x)), expected, rtol=1e-5)
