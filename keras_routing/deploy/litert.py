"""Running exported LiteRT models in the ``ai-edge-litert`` interpreter (what phones run)."""

import re

import numpy as np

from keras_routing.deploy.formats import INSTALL_EXTRA

# The converter names a model's outputs by its output dict's keys, or `output_<i>` in order.
_POSITIONAL = re.compile(r"output_(\d+)")


def run_litert(path, images, threads=None):
    """Outputs of the LiteRT model at ``path`` on ``images`` (see ``litert_predictor``)."""
    return litert_predictor(path, threads)(images)


def litert_predictor(path, threads=None):
    """A function from images to the outputs of the LiteRT model at ``path``, holding one
    interpreter for all its calls. It runs the model's own batch size, or all the images at
    once when that is free. Its outputs are structured as the Keras model's were: one array, a
    list of arrays (a model with several outputs) or a dict by output name."""
    interpreter = _interpreter(path, threads)
    (inputs,) = interpreter.get_input_details()
    fixed = inputs["shape_signature"][0] != -1
    runner = interpreter.get_signature_runner()
    (input_name,) = runner.get_input_details()
    names = list(runner.get_output_details())

    def predict(images):
        images = np.asarray(images, dtype="float32")
        batch = inputs["shape"][0] if fixed else len(images)
        results = {name: [] for name in names}
        for start in range(0, len(images), batch):
            outputs = runner(**{input_name: images[start : start + batch]})
            for name in names:
                results[name].append(np.array(outputs[name]))
        return _structured({name: np.concatenate(parts) for name, parts in results.items()})

    return predict


def litert_ops(path):
    """The set of op names in a LiteRT model, read by the ``ai-edge-litert`` interpreter."""
    return {op["op_name"] for op in _interpreter(path)._get_ops_details()}


def _structured(outputs):
    positions = [_POSITIONAL.fullmatch(name) for name in outputs]
    if not all(positions):
        return outputs
    ordered = [outputs[match.group(0)] for match in sorted(positions, key=lambda m: int(m.group(1)))]
    return ordered[0] if len(ordered) == 1 else ordered


def _interpreter(path, threads=None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(f"Running LiteRT models needs ai-edge-litert: {INSTALL_EXTRA}") from error
    return Interpreter(model_path=str(path), num_threads=threads)
