"""One training run as the command does it: data, model, fit with backups, evaluation, outputs.

``run(config, output_dir)`` takes a resolved recipe (``keras_routing.recipes.resolve``) and
writes into ``output_dir``: ``model.keras`` (the final model), ``checkpoints/best.keras`` (best
held-out accuracy), ``history.csv``, ``logs/`` (TensorBoard), ``backup/`` (while training;
rerunning the same command after an interruption resumes from it), ``plots/`` (routing plots
for models with routing functions) and ``results.json``.
"""

import contextlib
import inspect
import json
import math
import pathlib
import time

import keras

from keras_routing import analysis, zoo
from keras_routing.data import image_classification, num_examples
from keras_routing.data.pipelines import prepared_builder
from keras_routing.profiler import profile
from keras_routing.recipes import OPTIMIZERS, SCHEDULES
from keras_routing.training import fit_resumable
from keras_routing.training.weight_decay import add_kernel_l2


def factory_arguments(model_config, strict=True):
    """``(name, keyword arguments)`` of the zoo factory that ``model_config`` describes.

    ``strict``: an argument the factory does not take is a ``ValueError`` naming the ones it
    takes; otherwise it is left out (a baseline built from its CondConv model's configuration
    has no ``experts``)."""
    options = {k: v for k, v in model_config.items() if v is not None}
    name = options.pop("name")
    options.pop("baseline", None)
    accepted = inspect.signature(zoo.factory(name)).parameters
    unknown = set(options) - set(accepted)
    if strict and unknown:
        raise ValueError(f"{name} takes no argument(s) {sorted(unknown)}; it takes {sorted(accepted)}.")
    return name, {k: v for k, v in options.items() if k in accepted}


def build_model(model_config, image_size, classes, strict=True):
    """The zoo model of ``model_config`` for ``image_size`` RGB inputs and ``classes`` outputs."""
    name, options = factory_arguments(model_config, strict)
    return zoo.get(name, input_shape=(image_size, image_size, 3), classes=classes, **options)


def make_optimizer(train_config, total_steps, steps_per_epoch):
    """The optimizer and learning-rate schedule of ``train_config``."""
    name, rate = train_config["optimizer"], train_config["learning_rate"]
    if name not in OPTIMIZERS:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {name!r}.")
    warmup = int(train_config.get("warmup_epochs", 0) * steps_per_epoch)
    if train_config["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate,
            max(total_steps - warmup, 1),
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    elif train_config["schedule"] not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}, got {train_config['schedule']!r}.")
    decay = train_config.get("weight_decay") or None
    if name == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(rate, rho=0.9, momentum=0.9, epsilon=1e-3, weight_decay=decay)
    return keras.optimizers.Adam(rate, weight_decay=decay)


def datasets(config):
    """``(train stream over all epochs, evaluation split, steps per epoch, classes, class names)``."""
    data, train = config["data"], config["train"]
    name, batch = data["dataset"], train["batch_size"]
    common = dict(
        image_size=data["image_size"],
        batch_size=batch,
        preprocessing=zoo.preprocessing(config["model"]["name"]),
        data_dir=data.get("data_dir"),
    )
    examples = num_examples(name, data["train_split"], data.get("data_dir"))
    if data.get("take") is not None:
        examples = min(examples, data["take"])
    steps = examples // batch
    if steps < 1:
        raise ValueError(f"The {examples} training examples make no full batch of {batch}.")
    train_stream = image_classification(
        name,
        data["train_split"],
        augment=data.get("augment"),
        mixup=data.get("mixup", 0.0),
        crop=data.get("crop", "resize"),
        epochs=train["epochs"],
        seed=train["seed"],
        take=data.get("take"),
        **common,
    )
    evaluation = image_classification(
        name, data["eval_split"], shuffle=False, crop=data.get("eval_crop", "resize"), **common
    )
    label = prepared_builder(name, data.get("data_dir")).info.features["label"]
    return train_stream, evaluation, steps, label.num_classes, list(label.names)


def is_task(model):
    """Whether ``model`` owns its loss and metrics, as a task model (``keras_routing.models.task``)
    does: it overrides ``compute_loss``. The command compiles it with the recipe's optimizer alone."""
    return type(model).compute_loss is not keras.Model.compute_loss


def compile_for(model, optimizer, mixup=False):
    """Compile ``model`` as the command trains it; returns ``(metric to monitor, mode)``.

    A task model gets ``optimizer`` alone and keeps its own loss and metrics (monitored: the
    held-out loss). Any other model must be a classifier with one output: cross-entropy and
    accuracy, on one-hot labels with ``mixup``."""
    if is_task(model):
        model.compile(optimizer=optimizer)
        return "val_loss", "min"
    if len(model.outputs) != 1:
        raise ValueError(
            f"{model.name} has {len(model.outputs)} outputs: the command trains classifiers with one "
            "output, or task models that own their loss (keras_routing.models.task)."
        )
    loss = "categorical_crossentropy" if mixup else "sparse_categorical_crossentropy"
    metric = "categorical_accuracy" if mixup else "accuracy"
    model.compile(optimizer, loss, metrics=[metric])
    return f"val_{metric}", "max"


def run(config, output_dir, verbose=1, scope=None, plots=True, baseline=False):
    """Train, evaluate and save one model; returns ``(results written to results.json, model)``.
    ``baseline``: the model is a baseline built from its CondConv model's configuration.
    The results hold every held-out metric (``metrics``) and, where one was computed, the
    ``accuracy``."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config["train"]["seed"])
    train_stream, evaluation, steps, classes, class_names = datasets(config)
    epochs = config["train"]["epochs"]
    mixup = bool(config["data"].get("mixup"))
    with (scope or contextlib.nullcontext)():  # a distribution strategy's scope, if any
        model = build_model(config["model"], config["data"]["image_size"], classes, strict=not baseline)
        if config["train"].get("l2"):  # L2 on the kernels, in the loss (see training/weight_decay.py)
            add_kernel_l2(model, config["train"]["l2"])
        optimizer = make_optimizer(config["train"], epochs * steps, steps)
        monitor, mode = compile_for(model, optimizer, mixup)
    if mixup:  # evaluation labels are indices; mixup training needs one-hot
        evaluation = evaluation.map(lambda x, y: (x, keras.ops.one_hot(y, classes)))
    callbacks = [
        keras.callbacks.CSVLogger(str(output_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(output_dir / "logs"), write_graph=False),
        keras.callbacks.ModelCheckpoint(
            str(output_dir / "checkpoints" / "best.keras"), monitor=monitor, mode=mode, save_best_only=True
        ),
    ]
    (output_dir / "checkpoints").mkdir(exist_ok=True)
    start = time.perf_counter()
    # log=print: a resumed run says so, --quiet or not.
    fit_resumable(
        model,
        train_stream,
        epochs=epochs,
        steps_per_epoch=steps,
        backup_dir=output_dir / "backup",
        backup_every=config["train"].get("backup_every", 50),
        callbacks=callbacks,
        validation_data=evaluation,
        verbose=verbose,
        log=print,
    )
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in model.evaluate(evaluation, verbose=0, return_dict=True).items()}
    model_path = output_dir / "model.keras"
    model.save(model_path)
    counts = profile(model)
    accuracy = metrics.get(monitor[len("val_") :]) if mode == "max" else metrics.get("accuracy")
    results = {
        "model": config["model"]["name"],
        "dataset": config["data"]["dataset"],
        "backend": keras.backend.backend(),
        "accuracy": accuracy,
        "loss": metrics.get("loss"),
        "metrics": metrics,
        "train_seconds": round(seconds, 1),
        "epochs": epochs,
        "params": counts.params,
        "madds": counts.madds,
        "model_path": str(model_path.resolve()),
        "plots": {},
    }
    if plots:
        batches = math.ceil(2000 / config["train"]["batch_size"])  # about 2,000 held-out examples
        try:
            paths = analysis.write_routing_plots(
                model,
                evaluation,
                output_dir / "plots",
                class_names,
                batches,
                classes=config.get("analysis", {}).get("classes"),
            )
            results["plots"] = {k: str(v.resolve()) for k, v in paths.items()}
        except ValueError:
            pass  # a plain model: nothing routed to plot
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results, model
