"""Every recipe in zoo/ loads, names a zoo model and arguments its factory takes, and says where
its figures come from."""

import inspect
import pathlib

import pytest

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
