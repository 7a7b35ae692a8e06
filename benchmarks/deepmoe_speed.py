"""Batch-1 latency and multiply-adds of a DeepMoE model, its channel-pruned form and the plain
baseline, on the current Keras backend (and in LiteRT with ``--litert``, TensorFlow backend).

    KERAS_BACKEND=torch python benchmarks/deepmoe_speed.py --depth 20
    KERAS_BACKEND=tensorflow python benchmarks/deepmoe_speed.py --weights /tmp/deepmoe_digits.keras --litert

The model is as built (untrained) unless ``--weights`` names a saved one (e.g. from
``benchmarks/deepmoe_digits.py --save``; then the data are the held-out embedded digits at its
input size, else seeded uniform random 32x32 images). At initialisation the ReLU gates already
close about half of the channels on every example; a trained model's share depends on its
lambda. Pruning (``prune_gated_channels(threshold=0)``) and realised multiply-adds use
``--examples`` of those images; the pruned model's predictions are checked against the gated
model's on them. Latency: one image, the models' compiled ``predict_on_batch`` timed in
alternation (``timing.medians``: ``--repeats`` rounds, each the mean of calls filling
``--min-seconds``; medians), so the ratios are from one process.
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

import keras_routing
from deepmoe_digits import first_output
from keras_routing.zoo import deepmoe_resnet, resnet_baseline
from timing import litert_invoker, medians


def _images(count, size, weights):
    if weights:
        from keras_routing.data import load_digit_images

        _, (x_test, _) = load_digit_images(size=size)
        return x_test[:count]
    return np.random.default_rng(0).uniform(size=(count, size, size, 3)).astype("float32")


def _baseline(model, depth):
    """The plain ResNet of the same depth and input (the gated model's widths before widening)."""
    shape = model.output_shape
    classes = (shape[0] if isinstance(shape, list) else shape)[-1]
    return resnet_baseline(depth, input_shape=model.input_shape[1:], classes=classes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--litert", action="store_true", help="also time LiteRT (TensorFlow backend)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT interpreter threads")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    if args.weights:
        model = keras.saving.load_model(args.weights)
        args.depth = int("".join(ch for ch in model.name.rsplit("resnet", 1)[-1] if ch.isdigit()))
    else:
        model = deepmoe_resnet(args.depth, wide=True, input_shape=(32, 32, 3), classes=10)
    data = _images(args.examples, model.input_shape[1], args.weights)
    pruned = keras_routing.prune_gated_channels(model, data)
    difference = np.max(
        np.abs(first_output(pruned.predict(data, verbose=0)) - first_output(model.predict(data, verbose=0)))
    )
    plain = _baseline(model, args.depth)
    one = data[:1]
    models = {"gated": model, "pruned": pruned, "plain": plain}
    calls = {name: (lambda m=m: m.predict_on_batch(one)) for name, m in models.items()}
    with tempfile.TemporaryDirectory() as folder:
        if args.litert:
            for name, candidate in models.items():
                path = keras_routing.export(
                    candidate, pathlib.Path(folder) / f"{name}.tflite", "litert", batch_size=1
                )
                calls[f"litert {name}"] = litert_invoker(path, args.threads, one)
        latency = medians(calls, args.repeats, args.min_seconds, warmup=2)
    print(
        f"backend {keras.backend.backend()}, {model.name}, input {model.input_shape[1]}, "
        f"{len(data)} examples, max |pruned - gated| {difference:.1e}; batch-1 median of {args.repeats} rounds"
    )
    for name, candidate in models.items():
        report = keras_routing.profile(candidate, data=data if name == "gated" else None)
        realised = report.expected_madds if report.rates else report.madds
        print(
            f"{name:7s} params {report.params / 1e6:6.3f}M  static {report.madds / 1e6:7.2f}M  "
            f"realised {realised / 1e6:7.2f}M madds"
        )
    for prefix in ("", "litert "):
        if f"{prefix}gated" not in latency:
            continue
        gated, small, base = (latency[f"{prefix}{name}"] for name in ("gated", "pruned", "plain"))
        print(
            f"{prefix or 'keras '}batch-1: gated {1e3 * gated:.3f} ms, pruned {1e3 * small:.3f} ms, "
            f"plain {1e3 * base:.3f} ms; pruned / gated {small / gated:.2f}, pruned / plain {small / base:.2f}"
        )


if __name__ == "__main__":
    main()
