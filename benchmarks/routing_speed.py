"""Sparse against dense dispatch of ``RoutedExperts`` (issue 15's speed check; a benchmark, not a
timed test), on the current Keras backend.

    KERAS_BACKEND=jax python benchmarks/routing_speed.py

One routed layer: 8 experts of type ``conv3x3`` (two 3x3 convolutions of 64 filters, GroupNorm
and ReLU each), ``NoisyTopKRouter(8, k=2)`` with a random-normal gate kernel (so that routing
spreads over the experts as a trained router's does; the zeros default ties every logit), on
16x16x64 inputs. Timed, in this process, for ``dispatch="dense"`` (every expert on every
example) and ``"sparse"`` (each expert on its routed examples: exact in eager PyTorch, at a fixed
capacity of ``ceil(1.25 * k * batch / n)`` examples under ``jit`` / ``tf.function``):

- a training step at batch 64 (``train_on_batch``, mean squared error to zeros, SGD);
- inference at batch 64 (``predict_on_batch``);
- inference at batch 1 for k = 1, 2, 4, 8 (sparse): only the chosen experts run, so the time
  grows with k, not n; the dense layer (all 8) beside it.

``timing.compare``: each pair alternates over ``--repeats`` rounds, each round the mean of calls
filling ``--min-seconds``; ratios are of the medians. Target: sparse at least 2x faster than
dense at batch 64, training and inference (dense runs 8 experts per example, sparse 2.5 at
capacity 1.25: a 3.2x bound on what dispatch can save before its gathers and scatters).
"""

import argparse

import keras
import numpy as np

from keras_routing.layers import NoisyTopKRouter, RoutedExperts
from timing import compare, compare_models

EXPERTS, FILTERS, SIZE = 8, 64, 16


def routed_model(k, dispatch, seed=0):
    inputs = keras.Input((SIZE, SIZE, FILTERS))
    router = NoisyTopKRouter(
        EXPERTS, k, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed), name="router"
    )
    outputs = RoutedExperts(["conv3x3"] * EXPERTS, router, filters=FILTERS, dispatch=dispatch, name="routed")(
        inputs
    )
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, SIZE, SIZE, FILTERS)).astype("float32")
    y = np.zeros_like(x)
    dense, sparse = routed_model(2, "dense"), routed_model(2, "sparse")
    sparse.set_weights(dense.get_weights())
    backend = keras.backend.backend()
    print(f"backend {backend}, {EXPERTS} conv3x3 experts, k=2, {SIZE}x{SIZE}x{FILTERS}, batch {args.batch}")
    for phase in ("train", "infer"):
        timed = compare_models(phase, sparse, dense, x, y, args.repeats, args.min_seconds)
        sparse_t, dense_t = timed
        print(
            f"  {phase} batch {args.batch}: sparse {1e3 * sparse_t:.2f} ms, dense {1e3 * dense_t:.2f} ms, "
            f"dense / sparse {dense_t / sparse_t:.2f}x (target >= 2)"
        )
    one = x[:1]
    dense_one = routed_model(2, "dense")
    row = []
    for k in (1, 2, 4, 8):
        model = routed_model(k, "sparse")
        model.set_weights(dense_one.get_weights())
        k_t, dense_t = compare(
            lambda m=model: m.predict_on_batch(one),
            lambda: dense_one.predict_on_batch(one),
            args.repeats,
            args.min_seconds,
        )
        row.append(f"k={k} {1e3 * k_t:.3f} ms ({k_t / dense_t:.2f} of dense)")
    print(f"  infer batch 1, sparse: {', '.join(row)}; dense (all {EXPERTS}) {1e3 * dense_t:.3f} ms")


if __name__ == "__main__":
    main()
