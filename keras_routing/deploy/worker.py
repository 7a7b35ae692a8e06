"""The TensorFlow export worker: converts a saved model in a TensorFlow-backend process.

Every format is written by TensorFlow's converters, so a model trained on JAX or PyTorch is
exported by this worker: its weights move there through a ``.keras`` file.

    python -m keras_routing.deploy.worker MODEL.keras OUTPUT --format litert [--quantize int8
        --calibration IMAGES.npy] [--batch-size 1]

``--module`` (repeatable) names a module to import first: one that defines a class the saved
model holds (the model's own class, a layer's) outside Keras and keras-routing, whose classes
are registered on import. It exits with status 2 and one line on stderr, starting with ``ERROR``,
for a request the conversion refuses (a ``ValueError``), which ``convert_in_tensorflow`` raises
again as the same ``ValueError``.
"""

import argparse
import importlib
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

MODULE = "keras_routing.deploy.worker"
ERROR = f"{MODULE}: error: "


def convert_in_tensorflow(model, path, format, quantize=None, calibration=None, batch_size=None):
    """``keras_routing.deploy.convert.convert`` run by the worker on a copy of ``model``."""
    with tempfile.TemporaryDirectory() as scratch:
        saved = pathlib.Path(scratch) / "model.keras"
        model.save(saved)
        command = [sys.executable, "-m", MODULE, str(saved), str(path), "--format", format]
        for module in defining_modules(model):
            command += ["--module", module]
        if quantize is not None:
            command += ["--quantize", quantize]
        if calibration is not None:
            np.save(pathlib.Path(scratch) / "calibration.npy", calibration)
            command += ["--calibration", str(pathlib.Path(scratch) / "calibration.npy")]
        if batch_size is not None:
            command += ["--batch-size", str(batch_size)]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    if result.returncode == 2 and errors:  # the conversion's own ValueError: the same one here
        raise ValueError(errors[-1][len(ERROR) :])
    if result.returncode != 0:
        raise RuntimeError(f"Exporting through TensorFlow failed:\n{result.stderr[-2000:]}")
    return path


def defining_modules(model):
    """The modules, other than Keras's, that define ``model``'s class or one of its layers'
    (nested models' too): the worker imports them so that the model loads there (keras-routing
    registers only its layers on import). A class defined in a script (``__main__``) cannot be
    imported; its model needs the TensorFlow backend to export."""
    modules, pending = set(), [model]
    while pending:
        layer = pending.pop()
        modules.add(type(layer).__module__)
        pending.extend(getattr(layer, "layers", ()))
    return sorted(m for m in modules if m != "__main__" and m.split(".")[0] != "keras")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("output", type=pathlib.Path)
    parser.add_argument("--format", required=True)
    parser.add_argument("--quantize")
    parser.add_argument("--calibration", type=pathlib.Path, help="a .npy file of stacked model inputs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--module", action="append", default=[], help="a module to import first")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # after the options: on the backend the caller set (tensorflow)

    from keras_routing.deploy.convert import convert

    for module in args.module:
        importlib.import_module(module)
    model = keras.saving.load_model(args.model)
    calibration = None if args.calibration is None else np.load(args.calibration)
    try:
        convert(model, args.output, args.format, args.quantize, calibration, args.batch_size)
    except ValueError as error:
        print(f"{ERROR}{error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
