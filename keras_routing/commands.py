"""What each ``keras-routing`` subcommand does, once the backend is chosen (see ``cli``)."""

import json
import pathlib
import time

import numpy as np

import keras
import tensorflow_datasets as tfds
from rich.console import Console
from rich.progress import track
from rich.table import Table

from keras_routing import experiment, recipes, zoo
from keras_routing.cli import UsageError
from keras_routing.data import image_classification, num_examples
from keras_routing.distribution import data_parallel
from keras_routing.deploy import export as export_model
from keras_routing.deploy import run_litert
from keras_routing.profiler import profile as count

console = Console(soft_wrap=True)  # paths stay whole, to copy and paste


def _check_model_name(name):
    if name not in zoo.list_models():
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(zoo.list_models())} (or a recipe .toml)")


def _check_dataset(name):
    # keras_routing.data, imported above, has registered embedded_digits with TFDS.
    if name.split("/")[0].split(":")[0] not in tfds.list_builders():
        raise UsageError(f"unknown dataset {name!r}; use a TFDS name (e.g. embedded_digits, mnist, cifar10, "
                         "imagenet2012)")  # fmt: skip


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
        recipe = {"model": {"name": args.model}}
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
    config = recipes.resolve(recipe, overrides)
    if config["data"]["augment"] == "none":
        config["data"]["augment"] = None
    _check_model_name(config["model"]["name"])
    _check_dataset(config["data"]["dataset"])
    experiment.factory_arguments(config["model"])  # before any training (the baseline's included)
    if recipe.get("requires", {}).get("accelerators"):
        console.print(f"[yellow]Note:[/] {args.model} is a paper-scale recipe meant for accelerators.")
    return config


def _distribution(distribution):
    """A function giving the context to build each model in, for ``--distribution``."""
    if distribution == "none":
        return None
    scope, replicas = data_parallel()
    console.print(f"data parallel over {replicas} {keras.backend.backend()} devices")
    return scope


def train(args):
    config = _config(args)
    name = config["model"]["name"]
    output = args.output or pathlib.Path("outputs") / name
    scope = _distribution(args.distribution)
    verbose = 0 if args.quiet else 1
    runs = {}
    baseline = args.baseline if args.baseline is not None else config["model"].get("baseline")
    if baseline and baseline != "none":
        _check_model_name(baseline)
        base_config = {**config, "model": {**config["model"], "name": baseline}}  # same width, dropout, ...
        console.rule(f"baseline: {baseline}")
        runs[baseline] = experiment.run(base_config, output / "baseline", verbose, scope, plots=False,
                                        baseline=True)[0]  # fmt: skip
    console.rule(f"{name} on {config['data']['dataset']} ({keras.backend.backend()})")
    results, model = experiment.run(config, output, verbose, scope, plots=not args.no_plots)
    runs[name] = results
    exports = {fmt: _export_trained(model, fmt, config, output) for fmt in args.export or ()}
    _print_summary(runs, exports, output)
    (output / "summary.json").write_text(json.dumps({"runs": runs, "exports": exports}, indent=2))
    return 0


def _export_trained(model, fmt, config, output):
    """Export the trained model; a LiteRT model is also evaluated on the held-out split, so the
    table shows what converting (and quantizing) cost in accuracy."""
    if fmt == "saved_model":
        return {"path": str(export_model(model, output / "export_saved_model").resolve())}
    if fmt == "onnx":
        return {"path": str(export_model(model, output / "model.onnx", format="onnx").resolve())}
    _, evaluation, *_ = experiment.datasets(config)
    calibration = None
    if fmt == "litert_int8":
        data = config["data"]
        calibration = image_classification(data["dataset"], data["train_split"], data["image_size"], 32,
                                           preprocessing=zoo.preprocessing(config["model"]["name"]),
                                           data_dir=data.get("data_dir"), shuffle=False, take=200)  # fmt: skip
    path = output / ("model_int8.tflite" if calibration is not None else "model.tflite")
    export_model(model, path, format="litert", batch_size=1, quantize="int8" if calibration is not None else None,
                 representative_dataset=calibration)  # fmt: skip
    predictions, labels = [], []
    for images, batch_labels in evaluation:
        predictions.append(run_litert(path, images.numpy()).argmax(axis=-1))
        labels.append(batch_labels.numpy())
    accuracy = float((np.concatenate(predictions) == np.concatenate(labels)).mean())
    return {"path": str(path.resolve()), "accuracy": accuracy}


def _print_summary(runs, exports, output):
    table = Table(title="Results (held-out split)")
    for column in ("model", "params", "MAdds", "accuracy", "loss", "train time"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in runs.items():
        table.add_row(name, f"{r['params'] / 1e6:.2f}M", f"{r['madds'] / 1e6:.1f}M", f"{r['accuracy']:.2%}",
                      f"{r['loss']:.3f}", f"{r['train_seconds']:.1f} s")  # fmt: skip
    console.print(table)
    if len(runs) == 2:
        base, cond = runs.values()
        console.print(f"training-time ratio {cond['model']} / {base['model']}: "
                      f"{cond['train_seconds'] / base['train_seconds']:.2f}x")  # fmt: skip
    last = list(runs.values())[-1]
    console.print(f"model:        {last['model_path']}")
    console.print(f"best:         {(output / 'checkpoints' / 'best.keras').resolve()}")
    console.print(f"logs:         {(output / 'history.csv').resolve()}, TensorBoard {(output / 'logs').resolve()}")
    for plot, path in last["plots"].items():
        console.print(f"plot:         {path}")
    for fmt, export in exports.items():
        accuracy = f" (accuracy {export['accuracy']:.2%} in the LiteRT interpreter)" if "accuracy" in export else ""
        console.print(f"export ({fmt}): {export['path']}{accuracy}")
    console.print(f"summary:      {(output / 'summary.json').resolve()}")


def _load(path):
    if not path.is_file():
        raise UsageError(f"no model file {path}")
    return keras.saving.load_model(path)


def evaluate(args):
    model = _load(args.model)
    dataset, split, batch_size = args.dataset or "embedded_digits", args.split or "test", args.batch_size or 64
    _check_dataset(dataset)
    size = args.image_size or model.input_shape[1]
    preprocessing = zoo.preprocessing(model.name) if model.name in zoo.list_models() else "mobilenet"
    data = image_classification(dataset, split, size, batch_size, shuffle=False, preprocessing=preprocessing,
                                data_dir=args.data_dir)  # fmt: skip
    batches = -(-num_examples(dataset, split, args.data_dir) // batch_size)
    start = time.perf_counter()
    predictions, labels = [], []
    for images, batch_labels in track(data, description=f"evaluating on {dataset} {split}", total=batches,
                                      console=console, transient=True):  # fmt: skip
        predictions.append(keras.ops.convert_to_numpy(model.predict_on_batch(np.asarray(images))).argmax(axis=-1))
        labels.append(batch_labels.numpy())
    labels = np.concatenate(labels)
    accuracy = float((np.concatenate(predictions) == labels).mean())
    console.print(f"{args.model}: accuracy {accuracy:.2%} on {dataset} {split} "
                  f"({len(labels):,} examples, {time.perf_counter() - start:.1f} s)")  # fmt: skip
    return 0


def export(args):
    model = _load(args.model)
    suffix = {"saved_model": "_saved_model", "litert": ".tflite", "onnx": ".onnx"}[args.format]
    default = args.model.stem + ("_int8" if args.quantize == "int8" else "") + suffix
    output = args.output or args.model.with_name(default)
    calibration = None if args.representative is None else _representative(args, model)
    path = export_model(model, output, format=args.format, quantize=args.quantize,
                        representative_dataset=calibration, batch_size=args.batch_size)  # fmt: skip
    console.print(f"exported {args.model} as {args.format}: {path.resolve()}")
    return 0


def _representative(args, model):
    """Calibration images: a .npy file of model inputs, or a TFDS dataset's train split."""
    if args.representative.endswith(".npy"):
        if not pathlib.Path(args.representative).is_file():
            raise UsageError(f"no such file: {args.representative}")
        return np.load(args.representative)
    _check_dataset(args.representative)
    preprocessing = zoo.preprocessing(model.name) if model.name in zoo.list_models() else "mobilenet"
    image_size = args.image_size or model.input_shape[1]
    return image_classification(args.representative, "train", image_size, 32, preprocessing=preprocessing,
                                data_dir=args.data_dir, shuffle=False, take=200)  # fmt: skip


def profile(args):
    if args.model.endswith(".keras"):
        model = _load(pathlib.Path(args.model))
    else:
        _check_model_name(args.model)
        config = {"name": args.model, "width": args.width, "experts": args.experts}
        model = experiment.build_model(config, args.image_size, args.classes)
    count(model).print(title=model.name)
    return 0


def zoo_command(args):
    for name in zoo.list_models():
        console.print(f"{name:<18} inputs: {zoo.preprocessing(name)} preprocessing")
    return 0


COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "profile": profile, "zoo": zoo_command}
