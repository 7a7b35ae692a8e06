"""The ``keras-routing`` command (also ``python -m keras_routing``).

    keras-routing train cc_mobilenet_v1 --experts 8 --epochs 5      # on the embedded digits
    keras-routing train zoo/cc_mobilenet_v1-digits.toml               # a recipe
    keras-routing evaluate outputs/cc_mobilenet_v1/model.keras
    keras-routing export outputs/cc_mobilenet_v1/model.keras --format litert --batch-size 1
    keras-routing profile cc_mobilenet_v1 --width 0.5
    keras-routing zoo list

``--backend`` picks Keras's backend, so Keras is imported only after the options are read (this
module and the choices it imports import no Keras); then ``keras_routing.app.commands`` runs the
subcommand. Mistakes in the command (unknown model, dataset, backend or option; a value out of
range, from an option or a recipe; a file that is not a model or a recipe) print one line saying
what is wrong and what is valid, and exit with status 2.
"""

import argparse
import os
import pathlib
import sys

from keras_routing.app import UsageError
from keras_routing.deploy.formats import FORMATS, QUANTIZATIONS
from keras_routing.recipes import AUGMENTATIONS, OPTIMIZERS, SCHEDULES

BACKENDS = ("tensorflow", "jax", "torch")
# What `train --export` writes: the formats, and an int8 LiteRT model calibrated on training images.
TRAIN_EXPORTS = (*FORMATS, "litert_int8")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    parser = _Parser(
        prog="keras-routing",
        description="Conditional-computation models for Keras 3: train, evaluate, export, profile.",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND or tensorflow)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a zoo model (or a recipe) with model.fit")
    train.add_argument("model", help="a zoo model name or a recipe file (zoo/*.toml)")
    _data_options(train)
    train.add_argument("--width", type=float)
    train.add_argument("--experts", type=int)
    train.add_argument("--dropout", type=float)
    train.add_argument("--augment", choices=("none", *AUGMENTATIONS))
    train.add_argument("--mixup", type=float, help="mixup alpha (the paper: 0.2); 0 = off")
    train.add_argument("--epochs", type=int)
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--seed", type=int)
    train.add_argument("--take", type=int, help="train on the first N examples only")
    train.add_argument(
        "--baseline", help="also train this zoo model (e.g. mobilenet_v1) and compare; 'none' = skip"
    )
    train.add_argument(
        "--export",
        nargs="*",
        choices=TRAIN_EXPORTS,
        help="formats to export the trained model to (LiteRT at batch 1, for phones)",
    )
    train.add_argument("--distribution", choices=("none", "data_parallel"), default="none")
    train.add_argument("--backup-every", type=int, default=50, help="steps between backups (resumption)")
    train.add_argument("--output", type=pathlib.Path, help="output directory (default outputs/<model>)")
    train.add_argument("--no-plots", action="store_true", help="skip the routing plots")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser("evaluate", help="accuracy of a saved .keras model on a dataset split")
    evaluate.add_argument("model", type=pathlib.Path, help="a .keras file")
    _data_options(evaluate)
    evaluate.add_argument("--split")

    export = commands.add_parser("export", help="export a saved .keras model for deployment")
    export.add_argument("model", type=pathlib.Path, help="a .keras file")
    export.add_argument("--format", choices=FORMATS, default="saved_model")
    export.add_argument(
        "--quantize",
        choices=[q for q in QUANTIZATIONS if q is not None],
        help="LiteRT only: int8 weights, or weights and activations (needs --representative)",
    )
    export.add_argument(
        "--representative",
        help="int8 calibration images: a .npy file of model inputs, or a "
        "TFDS dataset name (its train split, with the zoo's preprocessing)",
    )
    export.add_argument("--image-size", type=int, help="with a TFDS --representative: the model's input size")
    export.add_argument("--batch-size", type=int, help="the exported batch size (default: any; 1 for phones)")
    export.add_argument("--data-dir", help="TFDS data directory")
    export.add_argument("--output", type=pathlib.Path)

    profile = commands.add_parser("profile", help="parameters and multiply-adds, per layer")
    profile.add_argument("model", help="a zoo model name or a .keras file")
    profile.add_argument("--width", type=float)
    profile.add_argument("--experts", type=int)
    profile.add_argument("--image-size", type=int, default=224)
    profile.add_argument("--classes", type=int, default=1000)

    zoo = commands.add_parser("zoo", help="the zoo's models")
    zoo.add_argument("action", choices=("list",))
    return parser


def _data_options(parser):
    parser.add_argument("--dataset", help="a TFDS dataset name (default embedded_digits, shipped, offline)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--data-dir", help="TFDS data directory")


def _select_backend(backend):
    backend = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise UsageError(
                f"Keras is already running on {keras.backend.backend()!r}; --backend {backend} "
                "needs a new process."
            )
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    """Run the command; returns the exit status (2 for mistakes in the command)."""
    try:
        args = _parser().parse_args(argv)
        _select_backend(args.backend)
        from keras_routing.app import commands  # imports Keras, on the chosen backend

        return commands.COMMANDS[args.command](args) or 0
    except (UsageError, ValueError) as error:  # bad requests: one line, no traceback
        print(f"keras-routing: error: {error}", file=sys.stderr)
        return 2


def entry_point():
    sys.exit(main())
