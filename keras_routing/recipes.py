"""Recipes: one TOML file per (model, dataset) in ``zoo/``, with the paper's figures and ours.

A recipe has ``[model]`` (``name``, the factory's arguments, optional ``baseline``), ``[data]``
(``dataset``, ``image_size``, ``crop``, ``eval_crop``, ``augment``, ``mixup``, splits),
``[train]`` (``epochs``, ``batch_size``, ``optimizer``, ``learning_rate``, ``l2``,
``weight_decay``, ...), ``[baseline]`` (what the baseline trains with instead: any key of
``[model]``, ``[data]`` or ``[train]``, e.g. ``dropout = 0.0``, ``augment = "none"``,
``mixup = 0.0``; the paper tuned regularisation per model), ``[analysis]`` (``classes``: the
class ids the routing figures single out), and the documentation sections ``[paper]`` and
``[measured]``, which training ignores. ``[requires]`` says what hardware the recipe needs
(``accelerators = true`` for the paper-scale ones).

Weight decay comes in two forms, kept apart: ``l2`` is the penalty ``l2 / 2 * sum(w ** 2)`` over
every convolution and dense kernel (experts and routing kernels included; biases, batch-norm and
other variables not), added to the loss (TF-slim's ``l2_regularizer`` and the TPU reference
MobileNets, whose 4e-5 the ImageNet recipes use); ``weight_decay`` is the optimizer's decoupled
decay (Keras 3's ``weight_decay=``: every trainable variable shrunk by ``lr * weight_decay`` each
step, batch-norm and routing parameters included).

``resolve`` checks every value it resolves (``RULES``), wherever it came from, and names it as
the user wrote it: ``--batch-size`` for an option of the command, ``[train] batch_size`` for a
recipe's.
"""

import functools
import pathlib
import tomllib

from keras_routing import validation

SECTIONS = ("model", "data", "train", "baseline", "analysis", "paper", "measured", "requires")

# The settings that name one of a few choices; the command offers them as its options' choices
# (this module imports neither Keras nor NumPy, so the command reads them before choosing the
# backend). The optimizers are built by `keras_routing.experiment.make_optimizer`, the
# augmentations by `keras_routing.data.image_classification` (besides None, no augmentation).
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("flip", "randaugment")
CROPS = ("resize", "random_resized", "center")

# What `keras-routing train <model>` uses when neither a recipe nor an option says otherwise:
# a run that fits on a laptop CPU, on the embedded digits.
DEFAULTS = {
    "model": {},
    "data": {
        "dataset": "embedded_digits",
        "train_split": "train",
        "eval_split": "test",
        "image_size": 32,
        "crop": "resize",
        "eval_crop": "resize",
        "augment": None,
        "mixup": 0.0,
        "take": None,
    },
    "train": {
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": 3e-3,
        "schedule": "constant",
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "l2": 0.0,
        "seed": 0,
        "backup_every": 50,
    },
}
OPTIONAL = {"data": {"data_dir"}, "train": set()}


def _one_of(choices):
    """A check that the value is one of ``choices``, called as the checks of ``validation`` are."""

    def check(value, name, owner=None):
        if value not in choices:
            prefix = f"{owner}: " if owner else ""
            raise ValueError(f"{prefix}`{name}` must be one of {list(choices)}, got {value!r}.")
        return value

    return check


# What each setting must be when given (None is "not given"): a check of
# `keras_routing.validation`, called as `check(value, name, owner=...)`. The model's are the
# factory arguments the zoo's factories share.
RULES = {
    "width": functools.partial(validation.number, above=0),
    "classes": validation.integer,
    "experts": validation.integer,
    "dropout": validation.fraction,
    "image_size": validation.integer,
    "mixup": functools.partial(validation.number, at_least=0),  # 0: off
    "take": validation.integer,
    "epochs": validation.integer,
    "batch_size": validation.integer,
    "learning_rate": functools.partial(validation.number, above=0),
    "warmup_epochs": functools.partial(validation.number, at_least=0),
    "weight_decay": functools.partial(validation.number, at_least=0),
    "l2": functools.partial(validation.number, at_least=0),
    "seed": functools.partial(validation.integer, minimum=0),
    "backup_every": validation.integer,
    "augment": _one_of((None, "none", *AUGMENTATIONS)),  # the command spells None "none"
    "crop": _one_of(CROPS),
    "eval_crop": _one_of(CROPS),
    "optimizer": _one_of(OPTIMIZERS),
    "schedule": _one_of(SCHEDULES),
}


def option_name(key):
    """How the command spells the option of setting ``key``: ``--batch-size``."""
    return "--" + key.replace("_", "-")


def check(key, value, name=None, owner=None):
    """Check the given ``value`` of setting ``key`` (see ``RULES``; keys without a rule pass);
    ``name``: what to call it in the error (default ``key``)."""
    rule = RULES.get(key)
    if rule is not None:
        rule(value, name or key, owner=owner)


def load(path):
    """The recipe at ``path`` as a dict of sections; unknown sections are an error."""
    path = pathlib.Path(path)
    try:
        with path.open("rb") as f:
            recipe = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:  # its message ends with "(at line L, column C)"
        raise ValueError(f"Recipe {path} is not valid TOML: {error}.") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"Recipe {path} is not UTF-8 text: {error}.") from None
    unknown = set(recipe) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Recipe {path}: unknown sections {sorted(unknown)}; valid: {list(SECTIONS)}.")
    if "name" not in recipe.get("model", {}):
        raise ValueError(f"Recipe {path}: [model] needs a `name` (a zoo model).")
    return recipe


def _section_of(key):
    """Which of ``[model]``, ``[data]`` and ``[train]`` a ``[baseline]`` key overrides."""
    for section in ("data", "train"):
        if key in DEFAULTS[section] or key in OPTIONAL[section]:
            return section
    return "model"  # a factory argument, checked by the factory


def baseline_overrides(recipe, origin=None):
    """The recipe's ``[baseline]`` as ``{section: {key: value}}``, every value checked."""
    where = f"Recipe {origin}" if origin is not None else "Recipe"
    overrides = {}
    for key, value in recipe.get("baseline", {}).items():
        if key in ("name", "baseline"):
            raise ValueError(f"{where} [baseline]: name the baseline model in [model] `baseline`, not here.")
        check(key, value, owner=f"{where} [baseline]")
        overrides.setdefault(_section_of(key), {})[key] = value
    return overrides


def _analysis(recipe, where):
    given = dict(recipe.get("analysis", {}))
    unknown = set(given) - {"classes"}
    if unknown:
        raise ValueError(f"{where} [analysis]: unknown keys {sorted(unknown)}; valid: ['classes'].")
    classes = given.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not all(validation.is_integer(c) and c >= 0 for c in classes)
    ):
        raise ValueError(f"{where} [analysis]: `classes` must be a list of class ids >= 0, got {classes!r}.")
    return given


def resolve(recipe, overrides, origin=None, baseline=None):
    """Defaults, then the recipe, then the options given (``None`` = not given), per section;
    every value checked (``RULES``). ``origin``: the recipe's file, for the messages.

    ``baseline``: the name of a baseline model to resolve the configuration of instead: the
    recipe's sections, then its ``[baseline]`` overrides, then the options (which apply to both
    models), with ``[model] name`` replaced by ``baseline``."""
    merged = {section: dict(values) for section, values in DEFAULTS.items()}
    where = f"Recipe {origin}" if origin is not None else "Recipe"
    extra = baseline_overrides(recipe, origin) if baseline is not None else {}
    for section in ("model", "data", "train"):
        given = {**recipe.get(section, {}), **extra.get(section, {})}
        if section != "model":  # the model's keys are the factory's arguments, checked there
            unknown = set(given) - set(DEFAULTS[section]) - OPTIONAL[section]
            if unknown:
                raise ValueError(
                    f"{where} [{section}]: unknown keys {sorted(unknown)}; valid: "
                    f"{sorted(set(DEFAULTS[section]) | OPTIONAL[section])}."
                )
        for key, value in given.items():
            check(key, value, owner=f"{where} [{section}]")
        merged[section].update(given)
    for (section, key), value in overrides.items():
        if value is not None:
            check(key, value, option_name(key))
            merged[section][key] = value
    if merged["data"]["augment"] == "none":
        merged["data"]["augment"] = None
    if baseline is not None:
        merged["model"]["name"] = baseline
    merged["analysis"] = _analysis(recipe, where)
    return merged
