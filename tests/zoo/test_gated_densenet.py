"""The early-exit DenseNet: the DenseNet-BC layout against a literal parameter count, layer gates
as masks, the exits and their report, fit's statistics, bad arguments, save and load."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing import zoo
from keras_routing.layers import EarlyExit, GatedResidual
from keras_routing.models.backbones.densenet_cifar import densenet_cifar_backbone
from tests.reference import to_numpy

# One dense layer per block, independent layer gates: the least to compile (JAX), all the structure.
SMALL = {
    "gate": "independent",
    "depth": 10,
    "growth_rate": 4,
    "exit_gate_width": 8,
    "exit_classifier_width": 8,
    "input_shape": (16, 16, 3),
    "classes": 3,
}


def _small(**kwargs):
    return zoo.gated_densenet_cifar(**{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def model():
    """One small model for the tests below (building and compiling it is most of their time on
    JAX); each test sets the gates and thresholds it relies on."""
    keras.utils.set_random_seed(0)
    return _small()


def _literal_densenet_bc_params(depth, k, channels, classes, compression=0.5):
    """Parameters of DenseNet-BC, counted from its description (Huang et al. 2017): batch norm
    4 per channel, convolutions without biases, the dense classifier with."""
    n = (depth - 4) // 6
    c = 2 * k
    total = 3 * 3 * channels * c  # stem
    for block in range(3):
        for _ in range(n):
            total += 4 * c + c * 4 * k + 4 * 4 * k + 9 * 4 * k * k  # BN, 1x1 to 4k, BN, 3x3 to k
            c += k
        if block < 2:
            out = int(compression * c)
            total += 4 * c + c * out
            c = out
    return total + 4 * c + c * classes + classes


# On JAX every new weight shape and call site of the nested conditionals compiles anew (the fit
# test: about two minutes here); the layout is the same on every backend.
HEAVY_ON_JAX = pytest.mark.slow if keras.backend.backend() == "jax" else pytest.mark.usefixtures()


@HEAVY_ON_JAX
def test_plain_backbone_is_densenet_bc():
    plain = densenet_cifar_backbone(depth=22, growth_rate=4, input_shape=(16, 16, 3), classes=3)
    assert plain.count_params() == _literal_densenet_bc_params(22, 4, 3, 3)
    assert not any(isinstance(layer, EarlyExit) for layer in plain.layers)
    # 8 + 3 * 4 = 20 channels, halved and pooled, + 3 * 4 = 22, halved and pooled, + 3 * 4.
    assert plain.get_layer("conv4_block3_concat").output.shape == (None, 4, 4, 23)
    with pytest.raises(ValueError, match="depth"):
        densenet_cifar_backbone(depth=17)


def _gated(graph):
    return [layer for layer in graph.layers if isinstance(layer, GatedResidual)]


def test_layout_masks_and_registry(model):
    exit1 = model.get_layer("exit1")
    exit2 = exit1.rest.get_layer("exit2")
    # A gate per dense layer, in three levels: block 1 here, block 2 in exit1's rest, block 3 in exit2's.
    assert [layer.name for layer in _gated(model)] == ["conv2_block1_gated"]
    assert [layer.name for layer in _gated(exit1.rest)] == ["conv3_block1_gated"]
    assert [layer.name for layer in _gated(exit2.rest)] == ["conv4_block1_gated"]
    assert zoo.info("gated_densenet_cifar").family == "gates"
    # S2.4's gate: 3x3 to 8 (the width asked), BN, 3x3, BN, 4x4 pooling of the 16x16 map, linear to 2.
    assert exit1.gate.logits.kernel.shape == (4 * 4 * 8, 2)
    # A closed layer gate contributes zeros to the concatenation, in training and at inference.
    layer = model.get_layer("conv2_block1_gated")
    layer.gate.independent_logits.assign(np.array([20.0, -20.0], "float32"))
    probe = keras.Model(
        model.input,
        [model.get_layer("conv2_block1_concat").input[0], model.get_layer("conv2_block1_concat").output],
    )
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    for training in (False, True):
        before, after = (to_numpy(t) for t in probe(x, training=training))
        np.testing.assert_array_equal(after[..., : before.shape[-1]], before)
        np.testing.assert_array_equal(
            after[..., before.shape[-1] :], np.zeros_like(after[..., before.shape[-1] :])
        )
    # Open, the new channels are the layer's output.
    layer.gate.independent_logits.assign(np.array([-20.0, 20.0], "float32"))
    before, after = (to_numpy(t) for t in probe(x))
    new = to_numpy(layer.residual_function(before))
    np.testing.assert_allclose(after[..., before.shape[-1] :], new, rtol=1e-5, atol=1e-6)


def _force_exit(layer, logit):
    kernel = layer.gate.logits.kernel
    layer.gate.logits.kernel.assign(np.zeros(kernel.shape, "float32"))
    layer.gate.logits.bias.assign(np.array([0.0, logit], "float32"))


@HEAVY_ON_JAX
def test_fit_report_and_save_load(model, tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 16)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    fractions = [history[f"exit_target_loss_exit_fraction_{i}"][0] for i in range(3)]
    assert np.isclose(sum(fractions), 1.0) and all(0 <= f <= 1 for f in fractions)
    assert 0 <= history["layer_target_loss_open_rate"][0] <= 1 and "conv4_block1_gated_open_rate" in history
    # Layer gates: block 1's closed, the others open (one layer a block).
    exit1, exit2 = model.get_layer("exit1"), model.get_layer("exit1").rest.get_layer("exit2")
    gated = _gated(model) + _gated(exit1.rest) + _gated(exit2.rest)
    for layer, logits in zip(gated, ([20.0, -20.0], [-20.0, 20.0], [-20.0, 20.0])):
        layer.gate.independent_logits.assign(np.array(logits, "float32"))
    # Exits with mixed decisions: exit1's threshold between its examples' exit probabilities.
    features = to_numpy(keras.Model(model.input, exit1.input)(x))
    p = to_numpy(exit1.gate.open_probability(exit1.gate(features)))[:, 0]
    exit1.threshold = float(np.median(p))
    exit2.threshold = 0.0  # every example that reaches it exits there
    report = zoo.exit_report(model, x, y)
    predictions = model.predict(x, batch_size=16, verbose=0)
    # The report's decisions are the model's: its overall error is that of its predictions.
    assert report["error"] == pytest.approx(np.mean(predictions.argmax(-1) != y))
    chosen = [c["fraction"] for c in report["classifiers"]]
    assert [c["name"] for c in report["classifiers"]] == ["exit1", "exit2", "final"]
    assert chosen == pytest.approx([8 / 16, 8 / 16, 0.0])  # the median splits 16 examples in two
    # The error on all examples of exit1's classifier, literally.
    head = to_numpy(exit1.classifier(features))
    assert report["classifiers"][0]["error_all"] == pytest.approx(np.mean(head.argmax(-1) != y))
    # The statistic of that whole-batch predict agrees with the report.
    np.testing.assert_allclose(to_numpy(model.get_layer("exit_target_loss").exit_fraction), chosen, atol=1e-6)
    # Layers run: an example answered by classifier i (0-based) ran blocks 1..i + 1, all but
    # block 1's layer: i of the 3 layers.
    assert report["layer_fraction"] == pytest.approx(sum(f * i for i, f in enumerate(chosen)) / 3)
    # always_on: nothing exits and every layer runs.
    keras_routing.set_inference(model, "always_on")
    always = zoo.exit_report(model, x, y)
    assert [c["fraction"] for c in always["classifiers"]] == [0.0, 0.0, 1.0]
    assert always["layer_fraction"] == 1.0
    keras_routing.set_inference(model, "threshold")
    # Save and load (safe mode): the same predictions, thresholds and modes.
    path = tmp_path / "early_exit.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(loaded(x)), predictions, rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("exit1").threshold == exit1.threshold
    assert loaded.get_layer("exit1").inference == "threshold"


def test_batch_one_exit_skips_the_rest(model):
    exit1 = model.get_layer("exit1")
    saved, exit1.threshold = exit1.gate.logits.get_weights(), 0.5
    x = np.random.default_rng(2).normal(size=(1, 16, 16, 3)).astype("float32")
    features = keras.Model(model.input, exit1.input)(x)
    try:
        _force_exit(exit1, 6.0)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), to_numpy(exit1.classifier(features)), rtol=1e-5, atol=1e-6
        )
        if keras.backend.backend() in ("torch", "tensorflow"):
            calls = []
            original = exit1.rest.call
            exit1.rest.call = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
            model(x)  # eager: the rest of the network is not called
            assert not calls
            _force_exit(exit1, -6.0)
            model(x)
            assert calls
    finally:
        exit1.gate.logits.set_weights(saved)
        exit1.rest.__dict__.pop("call", None)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="depth"):
        _small(depth=15)
    with pytest.raises(ValueError, match="growth_rate"):
        _small(growth_rate=0)
    with pytest.raises(ValueError, match="exit_target_rate"):
        _small(exit_target_rate=1.5)
    with pytest.raises(ValueError, match="inference"):
        _small(inference="fast")
    with pytest.raises(ValueError, match="layer_loss"):
        _small(layer_loss="per_layer")


def test_cost_rule_counts_what_an_exiting_example_runs(model):
    full = keras_routing.profile(model)
    assert not full.uncounted and full.params == model.count_params()
    exiting = keras_routing.profile(model, rates={"exit1": 1.0})
    # Literally, for depth 10 (one layer a block), k = 4, 16x16, widths 8: the stem (3 -> 8), the
    # layer (1x1 8 -> 16, 3x3 16 -> 4; an independent gate costs nothing), S2.4's gate on the
    # 12-channel map (3x3 12 -> 8, 3x3 8 -> 8, linear on the 4x4 pooled map to 2) and MSDNet's
    # classifier (3x3 stride 2 12 -> 8 at 8x8, 8 -> 8 at 4x4, linear on 2x2x8 to 3 with bias).
    stem = 256 * 9 * 3 * 8
    layer = 256 * 8 * 16 + 256 * 9 * 16 * 4
    gate = 256 * 9 * 8 * (12 + 8) + 4 * 4 * 8 * 2
    classifier = 64 * 9 * 12 * 8 + 16 * 9 * 8 * 8 + 2 * 2 * 8 * 3
    assert exiting.expected_madds == pytest.approx(stem + layer + gate + classifier)
    assert exiting.madds == full.madds > exiting.expected_madds


def test_deep_supervision_adds_every_classifiers_loss_on_every_example():
    """EarlyExitTask's loss in training: the chosen prediction's cross-entropy, the target-rate
    terms, and each classifier's cross-entropy on the whole batch (MSDNet's sum), computed here
    from the classifiers called directly on the features each one sees."""
    keras.utils.set_random_seed(3)
    model = _small(layer_gates=False)  # no sampled layer gates: the features are deterministic
    model.compile()
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 6)
    y_pred = model(x, training=True)
    loss = to_numpy(model.compute_loss(x, keras.ops.convert_to_tensor(y), y_pred, training=True))
    assert model.supervised_predictions() == []  # read once, by that loss
    exit1 = model.get_layer("exit1")
    exit2 = exit1.rest.get_layer("exit2")
    features1 = keras.Model(model.input, exit1.input)(x, training=True)
    features2 = keras.Model(exit1.rest.input, exit2.input)(features1, training=True)
    final = exit2.rest(features2, training=True)
    final = final[0] if isinstance(final, (list, tuple)) else final
    heads = [exit1.classifier(features1, training=True), exit2.classifier(features2, training=True), final]

    def cross_entropy(p):
        p = to_numpy(p)
        return float(np.mean(-np.log(p[np.arange(len(y)), y])))

    targets = sum(float(to_numpy(term)) for term in model.losses)
    expected = cross_entropy(y_pred) + targets + sum(cross_entropy(h) for h in heads)
    assert loss == pytest.approx(expected, rel=1e-5)
    # Without deep supervision, the chosen prediction's loss and the targets alone.
    keras.utils.set_random_seed(3)
    plain = _small(layer_gates=False, classifier_loss_weight=0.0)
    plain.compile()
    plain.set_weights(model.get_weights())
    y_plain = plain(x, training=True)
    got = to_numpy(plain.compute_loss(x, keras.ops.convert_to_tensor(y), y_plain, training=True))
    assert got == pytest.approx(
        cross_entropy(y_plain) + sum(float(to_numpy(t)) for t in plain.losses), rel=1e-5
    )
    with pytest.raises(ValueError, match="classifier_loss_weight"):
        _small(classifier_loss_weight=-1.0)
    # Training needs the labels.
    model(x, training=True)
    with pytest.raises(ValueError, match="needs the labels"):
        model.compute_loss(x, None, y_pred, training=True)
