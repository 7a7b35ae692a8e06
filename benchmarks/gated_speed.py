"""Batch-1 inference speed of a gated ResNet with about half its gates closed, against the same
model with ``inference="always_on"`` (issue 17's speed check; a benchmark, not a timed test).

    KERAS_BACKEND=jax python benchmarks/gated_speed.py --depth 56 --size 32 --runs 50

Independent gates, every other one set closed (logits far from 0), so under ``"threshold"``
half the blocks skip ``F`` through ``keras.ops.cond``. Prints the median latency of each
mode's compiled ``predict_on_batch`` and their ratio.
"""

import argparse
import time

import keras
import numpy as np

import keras_routing
from keras_routing import zoo
from keras_routing.layers import GatedResidual


def median_latency(model, x, runs):
    model.predict_on_batch(x)  # compile
    model.predict_on_batch(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    model = zoo.gated_resnet_cifar(
        depth=args.depth, gate="independent", width=args.width, input_shape=(args.size, args.size, 3)
    )
    gated = [layer for layer in model.layers if isinstance(layer, GatedResidual)]
    for index, layer in enumerate(gated):
        closed = index % 2 == 1
        layer.gate.independent_logits.assign(np.array([4.0, -4.0] if closed else [-4.0, 4.0], "float32"))
    x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype("float32")
    keras_routing.set_inference(model, "threshold")
    threshold = median_latency(model, x, args.runs)
    keras_routing.set_inference(model, "always_on")
    always_on = median_latency(model, x, args.runs)
    closed = sum(index % 2 == 1 for index in range(len(gated)))
    print(
        f"backend={keras.backend.backend()} depth={args.depth} size={args.size} width={args.width} "
        f"gates closed={closed}/{len(gated)}: threshold {threshold * 1e3:.2f} ms, "
        f"always_on {always_on * 1e3:.2f} ms, speed-up {always_on / threshold:.2f}x"
    )


if __name__ == "__main__":
    main()
