"""Train a gated CIFAR-style ResNet on the embedded digits with the per-gate and the per-batch
loss at the same target; evaluate threshold / always-on / stochastic / ensemble inference.

    KERAS_BACKEND=torch python benchmarks/gated_digits.py --depth 14 --epochs 2 --seeds 0 --size 16

Prints, per loss and seed, held-out accuracy and mean gate activation (the fraction of blocks
run) for each inference strategy, and with ``--heatmap PATH`` writes the per-class open rate of
every gate (the paper's Fig. 8) of the last per-batch model to a PNG.
"""

import argparse
import time

import keras
import numpy as np

import keras_routing
from keras_routing import zoo
from keras_routing.data import load_digit_images
from keras_routing.layers import GatedResidual


def gate_activations(model, x):
    """``(examples, gates)``: 1 where a block ran ``F`` under the model's current mode."""
    gated = [layer for layer in model.layers if isinstance(layer, GatedResidual)]
    rates = keras_routing.profiler.report._rate_probes(keras_routing.profiler.report._functional(model))
    probe = keras.Model(model.input, [tensor for _, tensor in rates])
    values = probe.predict(x, batch_size=256, verbose=0)
    return np.stack([np.asarray(v) for v in values], axis=1), [layer.name for layer in gated]


def evaluate(model, x, y, runs):
    results = {}
    for mode in ("threshold", "always_on", "stochastic"):
        keras_routing.set_inference(model, mode)
        predictions = model.predict(x, batch_size=256, verbose=0)
        activation, _ = gate_activations(model, x)
        results[mode] = (float(np.mean(predictions.argmax(-1) == y)), float(activation.mean()))
    keras_routing.set_inference(model, "stochastic")
    mean = keras_routing.ensemble_predict(model, x, runs=runs, batch_size=256)
    results[f"ensemble_{runs}"] = (float(np.mean(mean.argmax(-1) == y)), results["stochastic"][1] * runs)
    keras_routing.set_inference(model, "threshold")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=14)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--loss-weight", type=float, default=1.0, help="the target-rate loss's weight")
    parser.add_argument("--losses", nargs="+", default=["per_gate", "per_batch"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heatmap", default=None)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_digit_images(size=args.size)
    x_train, y_train = x_train[: args.train], y_train[: args.train]
    last = None
    for loss in args.losses:
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            model = zoo.gated_resnet_cifar(
                depth=args.depth,
                input_shape=(args.size, args.size, 3),
                loss=loss,
                target_rate=args.target,
                loss_weight=args.loss_weight,
            )
            model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
            start = time.perf_counter()
            model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0)
            seconds = time.perf_counter() - start
            keras_routing.recalibrate_batchnorm(model, x_train[:1024], steps=8)
            results = evaluate(model, x_test, y_test, args.runs)
            text = ", ".join(f"{mode} acc {a:.4f} act {r:.3f}" for mode, (a, r) in results.items())
            print(f"{loss} seed {seed} ({seconds:.0f} s): {text}", flush=True)
            last = model
    if args.heatmap:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        activation, names = gate_activations(last, x_test)
        heat = np.stack([activation[y_test == c].mean(0) for c in range(10)])
        figure, axis = plt.subplots(figsize=(max(4, len(names) * 0.5), 4))
        image = axis.imshow(heat, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axis.set_xlabel("gate (residual block)")
        axis.set_ylabel("digit class")
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels([str(i + 1) for i in range(len(names))])
        axis.set_yticks(range(10))
        axis.set_title("per-class open rate (threshold inference), per-batch loss")
        figure.colorbar(image)
        figure.savefig(args.heatmap, dpi=100, bbox_inches="tight")
        print(f"heatmap: {args.heatmap}")


if __name__ == "__main__":
    main()
