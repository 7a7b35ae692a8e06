"""Every recipe in zoo/ loads, names a zoo model and arguments its factory takes, and says where
its figures come from."""

import inspect
import pathlib

import numpy as np
import pytest

import keras

from keras_routing import recipes, zoo

RECIPES = sorted((pathlib.Path(__file__).parents[1] / "zoo").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_complete(path):
    recipe = recipes.load(path)
    config = recipes.resolve(recipe, {})
    model = config["model"]
    accepted = inspect.signature(zoo.factory(model["name"])).parameters
    assert set(model) - {"name", "baseline"} <= set(accepted)
    if "baseline" in model:
        assert model["baseline"] in zoo.list_models()
    assert config["train"]["epochs"] >= 1 and config["train"]["batch_size"] >= 1
    text = path.read_text()
    assert "keras-routing train" in text or "benchmarks/" in text  # the command that runs it
    if recipe.get("requires", {}).get("accelerators"):
        assert recipe["paper"]["top1"] > recipe["paper"]["baseline_top1"]


def test_recipe_keys_are_checked(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[model]\nname = "mobilenet_v1"\n[train]\nepoch = 3\n')
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        recipes.resolve(recipes.load(path), {})


def test_options_override_the_recipe():
    config = recipes.resolve(
        {"model": {"name": "cc_mobilenet_v1"}, "train": {"epochs": 9}},
        {("train", "epochs"): 2, ("train", "seed"): None},
    )
    assert config["train"]["epochs"] == 2 and config["train"]["seed"] == recipes.DEFAULTS["train"]["seed"]


@pytest.mark.parametrize(
    "section, key, value",
    [("train", "optimizer", "adamw"), ("train", "schedule", "step"), ("data", "augment", "cutout")],
)
def test_choices_are_checked_before_any_work(section, key, value):
    with pytest.raises(ValueError, match=rf"Recipe \[{section}\]: `{key}` must be one of \["):
        recipes.resolve({"model": {"name": "mobilenet_v1"}, section: {key: value}}, {})


def test_no_augmentation_is_none_however_it_is_spelled():
    for spelling in ("none", None):
        config = recipes.resolve({"model": {"name": "mobilenet_v1"}, "data": {"augment": spelling}}, {})
        assert config["data"]["augment"] is None


def test_every_optimizer_choice_is_built():
    import keras

    from keras_routing import experiment

    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    assert set(recipes.OPTIMIZERS) == set(classes)
    for name in recipes.OPTIMIZERS:
        for schedule in recipes.SCHEDULES:
            train = {**recipes.DEFAULTS["train"], "optimizer": name, "schedule": schedule}
            assert isinstance(
                experiment.make_optimizer(train, total_steps=10, steps_per_epoch=5), classes[name]
            )


# --- [baseline] overrides, the ImageNet recipes, weight decay -----------------------------------


def recipe_file(name):
    return recipes.load(pathlib.Path(__file__).parents[1] / "zoo" / name)


def test_baseline_overrides_apply_to_the_baseline_only():
    recipe = {
        "model": {"name": "cc_mobilenet_v1", "baseline": "mobilenet_v1", "dropout": 0.3, "experts": 4},
        "data": {"augment": "randaugment", "mixup": 0.2},
        "train": {"l2": 4e-5},
        "baseline": {"dropout": 0.0, "augment": "none", "mixup": 0.0, "learning_rate": 0.1},
    }
    options = {("train", "epochs"): 2, ("data", "mixup"): None}
    model, base = recipes.resolve(recipe, options), recipes.resolve(recipe, options, baseline="mobilenet_v1")
    assert model["model"] == {
        "name": "cc_mobilenet_v1",
        "baseline": "mobilenet_v1",
        "dropout": 0.3,
        "experts": 4,
    }
    assert (model["data"]["augment"], model["data"]["mixup"], model["train"]["learning_rate"]) == (
        "randaugment",
        0.2,
        recipes.DEFAULTS["train"]["learning_rate"],
    )
    assert base["model"]["name"] == "mobilenet_v1" and base["model"]["dropout"] == 0.0
    assert (base["data"]["augment"], base["data"]["mixup"], base["train"]["learning_rate"]) == (
        None,
        0.0,
        0.1,
    )
    assert base["train"]["l2"] == 4e-5  # what [baseline] does not name is shared
    assert model["train"]["epochs"] == base["train"]["epochs"] == 2  # options apply to both
    # An option given on the command line overrides [baseline] too.
    assert recipes.resolve(recipe, {("data", "mixup"): 0.4}, baseline="mobilenet_v1")["data"]["mixup"] == 0.4


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mixup": -1}, r"\[baseline\]: `mixup`"),
        ({"crop": "random"}, r"\[baseline\]: `crop` must be one of"),
        ({"name": "resnet50"}, r"\[model\] `baseline`"),
    ],
)
def test_baseline_overrides_are_checked(overrides, message):
    recipe = {"model": {"name": "cc_mobilenet_v1", "baseline": "mobilenet_v1"}, "baseline": overrides}
    recipes.resolve(recipe, {})  # the CondConv model's own configuration does not read them
    with pytest.raises(ValueError, match=message):
        recipes.resolve(recipe, {}, baseline="mobilenet_v1")


def test_analysis_classes_are_checked():
    recipe = {"model": {"name": "cc_mobilenet_v1"}, "analysis": {"classes": [1, "pug"]}}
    with pytest.raises(ValueError, match="`classes` must be a list of class ids"):
        recipes.resolve(recipe, {})


@pytest.mark.parametrize(
    "name", ["cc_mobilenet_v1-imagenet.toml", "cc_mobilenet_v2-imagenet.toml", "cc_resnet50-imagenet.toml"]
)
def test_imagenet_recipes_as_the_paper_describes(name):
    recipe = recipe_file(name)
    model = recipes.resolve(recipe, {})
    base = recipes.resolve(recipe, {}, baseline=model["model"]["baseline"])
    for config in (model, base):  # Inception crops for training, 224 of 256 for evaluation
        assert (config["data"]["crop"], config["data"]["eval_crop"]) == ("random_resized", "center")
        assert config["data"]["image_size"] == 224
        # L2 on kernels, as the reference MobileNets; no decoupled decay of every variable
        assert config["train"]["l2"] == 4e-5 and config["train"]["weight_decay"] == 0
    # The CondConv models get dropout, augmentation and mixup 0.2 (section 4.1).
    assert model["model"]["dropout"] > 0 and model["data"]["augment"] and model["data"]["mixup"] == 0.2
    if name.startswith("cc_resnet50"):  # section 4.1.3: both models got mixup and AutoAugment
        assert {s: base[s] for s in ("data", "train")} == {s: model[s] for s in ("data", "train")}
        assert base["model"]["dropout"] == model["model"]["dropout"]
    else:  # 4.1.1-4.1.2: that regularisation lowered the MobileNet baselines' accuracy
        assert (
            base["model"]["dropout"] == 0 and base["data"]["augment"] is None and base["data"]["mixup"] == 0
        )
        assert model["analysis"]["classes"] == [1, 254, 726, 972]  # goldfish, pug, plane, cliff


def test_capacity_recipe_is_unregularised():
    recipe = recipe_file("cc_mobilenet_v1-capacity-imagenet.toml")
    model = recipes.resolve(recipe, {})
    base = recipes.resolve(recipe, {}, baseline=model["model"]["baseline"])
    for config in (model, base):
        assert config["model"].get("dropout", 0) == 0
        assert config["data"]["augment"] is None and config["data"]["mixup"] == 0
    assert (model["model"]["width"], model["model"]["experts"]) == (0.25, 32)  # CCMV1_0.25_32
    assert recipe["paper"]["train_ce"] < recipe["paper"]["baseline_train_ce"]


def _penalty_model():
    from keras_routing.layers import CondConv2D, CondDense

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = CondConv2D(5, 1, 3, name="cond_conv")(x)  # experts + its own routing function
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4, name="dense")(x)
    outputs = CondDense(3, 2, activation="softmax", name="cond_dense")(x)
    return keras.Model(inputs, outputs)


def test_l2_penalises_exactly_the_kernels():
    from keras_routing.training.weight_decay import add_kernel_l2

    model = _penalty_model()
    penalised = add_kernel_l2(model, 4e-5)
    g = model.get_layer
    expected = [
        g("conv").kernel,
        g("depthwise").kernel,
        g("cond_conv").kernel,
        g("cond_conv").routing.logits.kernel,
        g("dense").kernel,
        g("cond_dense").kernel,
        g("cond_dense").routing.logits.kernel,
    ]
    assert sorted(v.path for v in penalised) == sorted(v.path for v in expected)
    # Batch norm, biases and every other variable are left alone.
    assert all(v.regularizer is None for v in model.weights if all(v is not e for e in expected))
    # The loss term: the reference models' weight_decay * tf.nn.l2_loss(w) = 4e-5 / 2 * sum(w ** 2).
    literal = sum(4e-5 / 2 * np.sum(keras.ops.convert_to_numpy(v) ** 2) for v in expected)
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(total, literal, rtol=1e-5)
    # fit's loss includes it: the compiled loss plus the penalty.
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.zeros((4, 6, 6, 3), "float32")
    y = np.array([0, 1, 2, 0])
    predictions = np.random.default_rng(0).dirichlet(np.ones(3), size=4).astype("float32")  # any
    cross_entropy = -np.mean(np.log(predictions[np.arange(4), y]))
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x, y, predictions)))
    np.testing.assert_allclose(loss, cross_entropy + literal, rtol=1e-5)
    add_kernel_l2(model, 0.0)
    assert not model.losses
    with pytest.raises(ValueError, match="`l2`"):
        add_kernel_l2(model, -1.0)


def test_optimizer_weight_decay_stays_decoupled():
    from keras_routing import experiment

    train = {**recipes.DEFAULTS["train"], "optimizer": "sgd", "weight_decay": 4e-5}
    assert experiment.make_optimizer(train, 10, 5).weight_decay == 4e-5
    assert experiment.make_optimizer(recipes.DEFAULTS["train"], 10, 5).weight_decay is None
