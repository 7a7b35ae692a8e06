"""What each ``keras-routing`` subcommand does, once ``keras_routing.app.cli`` has chosen the backend."""

import contextlib
import json
import os
import pathlib
import sys
import time
import zipfile

import numpy as np

import keras
import tensorflow_datasets as tfds
from rich.console import Console
from rich.progress import track
from rich.table import Table

from keras_routing import experiment, recipes, zoo
from keras_routing.app import UsageError
from keras_routing.data import image_classification, num_examples
from keras_routing.deploy.exporter import CALIBRATION_EXAMPLES
from keras_routing.deploy.exporter import export as export_model
from keras_routing.deploy.formats import SUFFIXES
from keras_routing.deploy.litert import litert_predictor
from keras_routing.profiler import profile as count
from keras_routing.seed_spread import SeedSpread
from keras_routing.training import data_parallel

console = Console(soft_wrap=True)  # paths stay whole, to copy and paste


def _check_model_name(name):
    if name not in zoo.list_models():
        raise UsageError(
            f"unknown model {name!r}; choose one of: {', '.join(zoo.list_models())} (or a recipe .toml)"
        )


def _check_dataset(name):
    # keras_routing.data, imported above, has registered embedded_digits with TFDS.
    if name.split("/")[0].split(":")[0] not in tfds.list_builders():
        raise UsageError(
            f"unknown dataset {name!r}; use a TFDS name (e.g. embedded_digits, mnist, cifar10, imagenet2012)"
        )


def _config(args):
    if args.model.endswith(".toml"):
        path = pathlib.Path(args.model)
        if not path.is_file():
            raise UsageError(f"no recipe file {args.model}")
        try:
            recipe = recipes.load(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
    else:
        path, recipe = None, {"model": {"name": args.model}}
    overrides = {
        ("model", "width"): args.width,
        ("model", "experts"): args.experts,
        ("model", "dropout"): args.dropout,
        ("data", "dataset"): args.dataset,
        ("data", "image_size"): args.image_size,
        ("data", "augment"): args.augment,
        ("data", "mixup"): args.mixup,
        ("data", "take"): args.take,
        ("data", "data_dir"): args.data_dir,
        ("train", "epochs"): args.epochs,
        ("train", "batch_size"): args.batch_size,
        ("train", "optimizer"): args.optimizer,
        ("train", "learning_rate"): args.learning_rate,
        ("train", "schedule"): args.schedule,
        ("train", "seed"): args.seed,
        ("train", "backup_every"): args.backup_every,
    }
    config = recipes.resolve(recipe, overrides, origin=path)  # checks every value, the options' too

    def baseline_config(name):  # the recipe's [baseline] overrides, then the options
        return recipes.resolve(recipe, overrides, origin=path, baseline=name)

    baseline_config(config["model"].get("baseline") or config["model"]["name"])  # checks [baseline] now
    # The recipe's recorded seeds describe its own settings: any option but these changes them.
    same_settings = all(
        value is None
        for (_, key), value in overrides.items()
        if key not in ("seed", "backup_every", "data_dir")
    )
    spread = SeedSpread.from_recipe(recipe.get("measured", {})) if same_settings else None
    _check_model_name(config["model"]["name"])
    _check_dataset(config["data"]["dataset"])
    experiment.factory_arguments(config["model"])  # before any training (the baseline's included)
    if recipe.get("requires", {}).get("accelerators"):
        console.print(f"[yellow]Note:[/] {args.model} is a paper-scale recipe meant for accelerators.")
    return config, spread, baseline_config


def _distribution(distribution):
    """A function giving the context to build each model in, for ``--distribution``."""
    if distribution == "none":
        return None
    scope, replicas = data_parallel()
    console.print(f"data parallel over {replicas} {keras.backend.backend()} devices")
    return scope


def train(args):
    config, spread, baseline_config = _config(args)
    name = config["model"]["name"]
    output = args.output or pathlib.Path("outputs") / name
    scope = _distribution(args.distribution)
    verbose = 0 if args.quiet else 1
    runs = {}
    baseline = args.baseline if args.baseline is not None else config["model"].get("baseline")
    if baseline and baseline != "none":
        _check_model_name(baseline)
        base_config = baseline_config(baseline)  # same width, ...; the recipe's [baseline] overrides
        console.rule(f"baseline: {baseline}")
        runs[baseline] = experiment.run(
            base_config, output / "baseline", verbose, scope, plots=False, baseline=True
        )[0]
    console.rule(f"{name} on {config['data']['dataset']} ({keras.backend.backend()})")
    results, model = experiment.run(config, output, verbose, scope, plots=not args.no_plots)
    runs[name] = results
    exports = {}
    if args.export:
        console.print(
            f"exporting {name} as {', '.join(args.export)} (LiteRT models evaluated in the interpreter) ..."
        )
        with _native_output_silenced():
            exports = _export_trained(model, args.export, config, output)
    _print_summary(runs, exports, output, spread if len(runs) == 2 and args.baseline is None else None)
    (output / "summary.json").write_text(json.dumps({"runs": runs, "exports": exports}, indent=2))
    return 0


@contextlib.contextmanager
def _native_output_silenced():
    """Silence what TensorFlow's converter and the LiteRT interpreter print from C++ straight to
    the process's stdout and stderr ("fully_quantize: 0, ...", "Created TensorFlow Lite XNNPACK
    delegate"); Python's exceptions, and so every error, still come through."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _export_trained(model, formats, config, output):
    """Export the trained model in each format; a LiteRT model of a classifier is also
    evaluated on the held-out split, so the table shows what converting (and quantizing) cost
    in accuracy."""
    exports, evaluation = {}, None
    data = config["data"]
    for fmt in formats:
        if fmt == "saved_model":
            exports[fmt] = {"path": str(export_model(model, output / "export_saved_model").resolve())}
            continue
        if fmt == "onnx":
            exports[fmt] = {"path": str(export_model(model, output / "model.onnx", format="onnx").resolve())}
            continue
        calibration = None
        if fmt == "litert_int8":
            calibration = _calibration_images(
                data["dataset"],
                data["train_split"],
                data["image_size"],
                zoo.preprocessing(config["model"]["name"]),
                data.get("data_dir"),
            )
        path = output / ("model_int8.tflite" if calibration is not None else "model.tflite")
        export_model(
            model,
            path,
            format="litert",
            batch_size=1,
            quantize="int8" if calibration is not None else None,
            representative_dataset=calibration,
        )
        exports[fmt] = {"path": str(path.resolve())}
        if _is_classifier(model):
            if evaluation is None:
                _, evaluation, *_ = experiment.datasets(config)
            exports[fmt]["accuracy"], _ = _accuracy(litert_predictor(path), evaluation)
    return exports


def _is_classifier(model):
    """Whether ``model`` is what the command's accuracy is computed for: one output, class scores
    (not a task model, which says what it measures with its own metrics)."""
    return not experiment.is_task(model) and len(model.outputs) == 1


def _accuracy(predict, batches):
    """Arg-max accuracy of ``predict`` over ``(images, labels)`` batches, and the example count."""
    hits = []
    for images, labels in batches:
        predictions = np.asarray(keras.ops.convert_to_numpy(predict(np.asarray(images)))).argmax(axis=-1)
        hits.append(predictions == np.asarray(labels))
    hits = np.concatenate(hits)
    return float(hits.mean()), len(hits)


def _calibration_images(dataset, split, image_size, preprocessing, data_dir):
    """The first examples of a TFDS split, preprocessed as the model takes them, for int8."""
    return image_classification(
        dataset,
        split,
        image_size,
        32,
        preprocessing=preprocessing,
        data_dir=data_dir,
        shuffle=False,
        take=CALIBRATION_EXAMPLES,
    )


def _preprocessing_of(model):
    """The zoo's preprocessing for a zoo model (by its name); MobileNet's for any other."""
    return zoo.preprocessing(model.name) if model.name in zoo.list_models() else "mobilenet"


def _print_summary(runs, exports, output, spread=None):
    """The results table; with the recipe's ``spread`` (``SeedSpread``, for the recipe's own
    settings), each model's accuracy over the recorded seeds beside this run's, and the verdict."""
    table = Table(title="Results (held-out split)")
    table.add_column("model", no_wrap=True)
    columns = ["params", "inference MAdds", "accuracy", "train time"]
    if spread is not None:
        columns.insert(3, "recipe's seeds")  # mean ± standard deviation; the seeds are named below
    for column in columns:
        table.add_column(column, justify="right", no_wrap=column == "recipe's seeds")
    for index, (name, r) in enumerate(runs.items()):
        row = [
            name,
            f"{r['params'] / 1e6:.2f}M",
            f"{r['madds'] / 1e6:.2f}M",
            "-" if r["accuracy"] is None else f"{r['accuracy']:.2%}",
            f"{r['train_seconds']:.1f} s",
        ]
        if spread is not None:
            row.insert(4, spread.summary(spread.condconv if index == len(runs) - 1 else spread.baseline))
        table.add_row(*row)
    console.print(table)
    for name, r in runs.items():  # a task model's own metrics, which the table has no column for
        if set(r["metrics"]) - {"loss", "accuracy", "categorical_accuracy"}:
            console.print(f"{name}: {_metrics_text(r['metrics'])}")
    if spread is not None:
        base, cond = runs
        console.print(
            f"recipe's seeds {', '.join(map(str, spread.seeds))}: {base} {spread.span(spread.baseline)}, "
            f"{cond} {spread.span(spread.condconv)}"
        )
        console.print(spread.verdict())
    if len(runs) == 2:
        base, cond = runs.values()
        console.print(
            f"training-time ratio {cond['model']} / {base['model']}: "
            f"{cond['train_seconds'] / base['train_seconds']:.2f}x"
        )
    last = list(runs.values())[-1]
    console.print(f"model:        {last['model_path']}")
    console.print(f"best:         {(output / 'checkpoints' / 'best.keras').resolve()}")
    console.print(
        f"logs:         {(output / 'history.csv').resolve()}, TensorBoard {(output / 'logs').resolve()}"
    )
    for path in last["plots"].values():
        console.print(f"plot:         {path}")
    for fmt, export in exports.items():
        accuracy = (
            f" (accuracy {export['accuracy']:.2%} in the LiteRT interpreter)" if "accuracy" in export else ""
        )
        console.print(f"export ({fmt}): {export['path']}{accuracy}")
    console.print(f"summary:      {(output / 'summary.json').resolve()}")


def _metrics_text(metrics):
    return ", ".join(f"{name} {value:.4g}" for name, value in metrics.items())


def _check_options(args, *keys):
    """The options ``keys`` of ``args`` that were given, checked as ``train`` checks its own."""
    for key in keys:
        if getattr(args, key) is not None:
            recipes.check(key, getattr(args, key), recipes.option_name(key))


def _load(path):
    if not path.is_file():
        raise UsageError(f"no model file {path}")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise UsageError(
            f"{path} is not a readable .keras model: it is not a zip archive (what model.save writes)"
        )
    try:
        return keras.saving.load_model(path)
    except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise UsageError(f"{path} is not a readable .keras model: {first}") from None


def evaluate(args):
    _check_options(args, "batch_size", "image_size")
    model = _load(args.model)
    dataset, split, batch_size = (
        args.dataset or "embedded_digits",
        args.split or "test",
        args.batch_size or 64,
    )
    _check_dataset(dataset)
    size = args.image_size or model.input_shape[1]
    data = image_classification(
        dataset,
        split,
        size,
        batch_size,
        shuffle=False,
        preprocessing=_preprocessing_of(model),
        data_dir=args.data_dir,
    )
    examples = num_examples(dataset, split, args.data_dir)
    start = time.perf_counter()
    if not _is_classifier(model):  # a task model, or several outputs: every metric it has
        metrics = _compiled(model, args.model).evaluate(data, verbose=0, return_dict=True)
        console.print(
            f"{args.model}: {_metrics_text(metrics)} on {dataset} {split} "
            f"({examples:,} examples, {time.perf_counter() - start:.1f} s)"
        )
        return 0
    batches = -(-examples // batch_size)
    progress = track(
        data, description=f"evaluating on {dataset} {split}", total=batches, console=console, transient=True
    )
    accuracy, examples = _accuracy(model.predict_on_batch, progress)
    console.print(
        f"{args.model}: accuracy {accuracy:.2%} on {dataset} {split} "
        f"({examples:,} examples, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _compiled(model, path):
    """``model`` ready to ``evaluate``: as it was saved compiled, or a task model with its own
    loss and metrics."""
    if not model.compiled:
        if not experiment.is_task(model):
            raise UsageError(
                f"{path} has {len(model.outputs)} outputs and was saved without a compiled loss: "
                "compile it before saving, to say what evaluating it measures."
            )
        model.compile()
    return model


def export(args):
    _check_options(args, "batch_size", "image_size")
    model = _load(args.model)
    suffix = SUFFIXES.get(args.format, "_saved_model")  # a SavedModel: a directory
    default = args.model.stem + ("_int8" if args.quantize == "int8" else "") + suffix
    output = args.output or args.model.with_name(default)
    calibration = None if args.representative is None else _representative(args, model)
    path = export_model(
        model,
        output,
        format=args.format,
        quantize=args.quantize,
        representative_dataset=calibration,
        batch_size=args.batch_size,
    )
    console.print(f"exported {args.model} as {args.format}: {path.resolve()}")
    return 0


def _representative(args, model):
    """Calibration images: a .npy file of model inputs, or a TFDS dataset's train split."""
    if args.representative.endswith(".npy"):
        if not pathlib.Path(args.representative).is_file():
            raise UsageError(f"no such file: {args.representative}")
        return np.load(args.representative)
    _check_dataset(args.representative)
    image_size = args.image_size or model.input_shape[1]
    return _calibration_images(
        args.representative, "train", image_size, _preprocessing_of(model), args.data_dir
    )


def profile(args):
    _check_options(args, "width", "experts", "image_size", "classes")
    if args.model.endswith(".keras"):
        model = _load(pathlib.Path(args.model))
    else:
        _check_model_name(args.model)
        config = {"name": args.model, "width": args.width, "experts": args.experts}
        model = experiment.build_model(config, args.image_size, args.classes)
    count(model).print(title=model.name)
    return 0


def zoo_command(args):
    for family in zoo.families():
        console.print(family)
        for name in zoo.list_models(family=family):
            info = zoo.info(name)
            console.print(f"  {name:<18} {info.task}, inputs: {info.preprocessing} preprocessing")
    return 0


COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "profile": profile, "zoo": zoo_command}
