"""Batch-1 latency and multiply-adds of a DeepMoE model, its channel-pruned form and the plain
baseline, on the current Keras backend.

    KERAS_BACKEND=torch nice -n 15 .venv/bin/python benchmarks/deepmoe_speed.py --depth 20

The model is as built (untrained) unless ``--weights`` names a saved one: at initialisation the
ReLU gates already close about half of the channels on every example, which is what pruning
removes; a trained model's figures depend on its lambda. Pruning uses ``--examples`` uniform
random 32x32 RGB images (seeded), and the latency is measured on one of them.
"""

import argparse
import time

import keras
import numpy as np

import keras_routing
from keras_routing.zoo import deepmoe_resnet, resnet_baseline


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(count, 32, 32, 3)).astype("float32")


def _latency(model, x, repeats):
    model.predict(x, verbose=0)  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        model.predict_on_batch(x)
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    model = (
        keras.saving.load_model(args.weights)
        if args.weights
        else deepmoe_resnet(args.depth, wide=True, input_shape=(32, 32, 3), classes=10)
    )
    data = _images(args.examples)
    pruned = keras_routing.prune_gated_channels(model, data)
    plain = resnet_baseline(args.depth, input_shape=(32, 32, 3), classes=10)
    one = data[:1]
    print(f"backend {keras.backend.backend()}, depth {args.depth}, {args.examples} examples")
    for label, candidate in (("gated", model), ("pruned", pruned), ("plain baseline", plain)):
        report = keras_routing.profile(candidate, data=data if label != "plain baseline" else None)
        realised = report.expected_madds if report.rates else report.madds
        print(
            f"{label:15s} params {report.params / 1e6:6.3f}M  static {report.madds / 1e6:7.2f}M  "
            f"realised {realised / 1e6:7.2f}M madds  batch-1 {_latency(candidate, one, args.repeats):7.2f} ms"
        )


if __name__ == "__main__":
    main()
