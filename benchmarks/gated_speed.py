"""Batch-1 inference speed of a gated ResNet with about half its gates closed, against the same
model with ``inference="always_on"`` and against the pruned static model (issue 17's speed
check; a benchmark, not a timed test).

    KERAS_BACKEND=jax python benchmarks/gated_speed.py                      # gated ResNet-50, 224x224
    KERAS_BACKEND=tensorflow python benchmarks/gated_speed.py --litert      # adds the LiteRT rows
    KERAS_BACKEND=torch python benchmarks/gated_speed.py --model cifar --depth 56 --size 32

The gates are AIG's input-dependent ones (what a trained model has, so the graph keeps its
conditionals: LiteRT's ``IF``), with every other block's gate set closed for every input: the
logits layer's kernel zeroed and its bias far from 0. Under ``"threshold"`` half the blocks
skip ``F`` through ``keras.ops.cond``; ``always_on`` runs them all; the pruned model
(``prune_gated_layers``) has the closed blocks removed and the open ones made plain. Each mode
is timed in this process: the median of ``--runs`` calls of the compiled ``predict_on_batch``
(after two warm-up calls), modes interleaved over ``--repeats`` rounds and the median of the
rounds taken, so that a slow spell of the machine hits every mode alike.
"""

import argparse
import pathlib
import tempfile
import time

import keras
import numpy as np

import keras_routing
from keras_routing import zoo
from keras_routing.layers import GatedResidual


def close_every_other_gate(model):
    """Gates of odd-numbered blocks closed, of even-numbered ones open, for every input."""
    gated = [layer for layer in model.layers if isinstance(layer, GatedResidual)]
    for index, layer in enumerate(gated):
        kernel, _ = layer.gate.logits.get_weights()
        closed = index % 2 == 1
        layer.gate.logits.set_weights(
            [np.zeros_like(kernel), np.array([6.0, -6.0] if closed else [-6.0, 6.0], "float32")]
        )
    return sum(index % 2 == 1 for index in range(len(gated))), len(gated)


def median_latency(predict, x, runs):
    predict(x)  # compile
    predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved(predictors, x, runs, repeats):
    """``{mode: median over rounds of the per-round median latency}``."""
    rounds = {mode: [] for mode in predictors}
    for _ in range(repeats):
        for mode, predict in predictors.items():
            rounds[mode].append(median_latency(predict, x, runs))
    return {mode: float(np.median(values)) for mode, values in rounds.items()}


def keras_predictors(model, pruned):
    """Each mode's compiled batch-1 predict. A clone per mode, so every mode keeps its own
    compiled function (``set_inference`` rebuilds the one it changes)."""
    predictors = {}
    for mode in ("threshold", "always_on"):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        keras_routing.set_inference(copy, mode)
        predictors[mode] = copy.predict_on_batch
    predictors["pruned"] = pruned.predict_on_batch
    return predictors


def litert_predictors(model, pruned, folder, threads):
    from keras_routing.deploy import litert_ops, litert_predictor

    predictors, ops = {}, {}
    for mode in ("threshold", "always_on", "pruned"):
        source = pruned
        if mode != "pruned":
            source = keras.models.clone_model(model)
            source.set_weights(model.get_weights())
            keras_routing.set_inference(source, mode)
        path = keras_routing.export(source, pathlib.Path(folder) / f"{mode}.tflite", "litert", batch_size=1)
        ops[mode] = litert_ops(path)
        predictors[f"litert_{mode}"] = litert_predictor(path, threads=threads)
    return predictors, ops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("imagenet", "cifar"), default="imagenet")
    parser.add_argument("--depth", type=int, default=None, help="50 or 101 (imagenet), 6n + 2 (cifar)")
    parser.add_argument("--size", type=int, default=None, help="input size (224 or 32 by default)")
    parser.add_argument("--width", type=int, default=1, help="filter multiplier (cifar)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--litert", action="store_true", help="also time LiteRT (TensorFlow backend)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT interpreter threads")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    if args.model == "imagenet":
        args.depth, args.size = args.depth or 50, args.size or 224
        model = zoo.gated_resnet(depth=args.depth, input_shape=(args.size, args.size, 3))
    else:
        args.depth, args.size = args.depth or 56, args.size or 32
        model = zoo.gated_resnet_cifar(
            depth=args.depth, width=args.width, input_shape=(args.size, args.size, 3)
        )
    closed, gates = close_every_other_gate(model)
    x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype("float32")
    pruned, _ = keras_routing.prune_gated_layers(model, x)
    predictors = keras_predictors(model, pruned)
    reference = np.asarray(predictors["threshold"](x))
    np.testing.assert_allclose(np.asarray(predictors["pruned"](x)), reference, rtol=1e-4, atol=1e-5)
    with tempfile.TemporaryDirectory() as folder:
        ops = {}
        if args.litert:
            extra, ops = litert_predictors(model, pruned, folder, args.threads)
            predictors.update(extra)
        latency = interleaved(predictors, x, args.runs, args.repeats)
    print(
        f"backend={keras.backend.backend()} {args.model} depth={args.depth} size={args.size} width={args.width} "
        f"gates closed={closed}/{gates}, batch 1, median of {args.repeats} rounds x {args.runs} calls"
    )
    for prefix in ("", "litert_"):
        if f"{prefix}threshold" not in latency:
            continue
        on, threshold, pruned_t = (
            latency[f"{prefix}{mode}"] for mode in ("always_on", "threshold", "pruned")
        )
        print(
            f"  {prefix or 'keras_'}: always_on {on * 1e3:.3f} ms, threshold {threshold * 1e3:.3f} ms, "
            f"pruned {pruned_t * 1e3:.3f} ms; speed-up of threshold {on / threshold:.2f}x, "
            f"of pruned over threshold {threshold / pruned_t:.2f}x"
        )
    for mode, names in ops.items():
        print(f"  LiteRT ops ({mode}): {' '.join(sorted(names))}")


if __name__ == "__main__":
    main()
