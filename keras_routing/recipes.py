"""Recipes: one TOML file per (model, dataset) in ``zoo/``, with the paper's figures and ours.

A recipe has ``[model]`` (``name``, the factory's arguments, optional ``baseline``), ``[data]``
(``dataset``, ``image_size``, ``augment``, ``mixup``, splits), ``[train]`` (``epochs``,
``batch_size``, ``optimizer``, ``learning_rate``, ...), and the documentation sections
``[paper]`` and ``[measured]``, which training ignores. ``[requires]`` says what hardware the
recipe needs (``accelerators = true`` for the paper-scale ones).
"""

import pathlib
import tomllib

SECTIONS = ("model", "data", "train", "paper", "measured", "requires")

# What `keras-routing train <model>` uses when neither a recipe nor an option says otherwise:
# a run that fits on a laptop CPU, on the embedded digits.
DEFAULTS = {
    "model": {},
    "data": {
        "dataset": "embedded_digits",
        "train_split": "train",
        "eval_split": "test",
        "image_size": 32,
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
        "seed": 0,
        "backup_every": 50,
    },
}
OPTIONAL = {"data": {"data_dir"}, "train": set()}


def load(path):
    """The recipe at ``path`` as a dict of sections; unknown sections are an error."""
    path = pathlib.Path(path)
    with path.open("rb") as f:
        recipe = tomllib.load(f)
    unknown = set(recipe) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Recipe {path}: unknown sections {sorted(unknown)}; valid: {list(SECTIONS)}.")
    if "name" not in recipe.get("model", {}):
        raise ValueError(f"Recipe {path}: [model] needs a `name` (a zoo model).")
    return recipe


def resolve(recipe, overrides):
    """Defaults, then the recipe, then the options given (``None`` = not given), per section."""
    merged = {section: dict(values) for section, values in DEFAULTS.items()}
    for section in ("model", "data", "train"):
        given = recipe.get(section, {})
        if section != "model":  # the model's keys are the factory's arguments, checked there
            unknown = set(given) - set(DEFAULTS[section]) - OPTIONAL[section]
            if unknown:
                raise ValueError(f"Recipe [{section}]: unknown keys {sorted(unknown)}; valid: "
                                 f"{sorted(set(DEFAULTS[section]) | OPTIONAL[section])}.")  # fmt: skip
        merged[section].update(given)
    for (section, key), value in overrides.items():
        if value is not None:
            merged[section][key] = value
    return merged
