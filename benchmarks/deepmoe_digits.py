"""Train a wide-DeepMoE CIFAR ResNet and its plain baseline on the embedded digits with the same
budget, for two values of lambda over several seeds; print held-out accuracy, realised
multiply-adds and the pruned model's size, and plot the per-class mean gate of one layer.

    KERAS_BACKEND=tensorflow python benchmarks/deepmoe_digits.py --depth 8 --size 16 --epochs 4 \
        --n0 3 --lambdas 0.01 1.0 --seeds 0 1 2 --png docs/figures/deepmoe_digits_gates.png \
        --save /tmp/deepmoe_digits.keras

Every model is trained with Adam(1e-3), batch 64, for ``--epochs`` epochs on the first
``--train`` digits; the DeepMoE models with Procedure 1 (``n0`` epochs of joint training, then
the embedding and gate heads frozen and lambda = mu = 0 for the rest), mu = 1 (the paper's CIFAR
setting). Batch norm is re-estimated on 8 training batches before evaluation, for all models.
Realised multiply-adds are ``profile(model, data=held-out).expected_madds`` (each gated
convolution counted at the mean open fraction of its input channels); ``pruned`` is
``prune_gated_channels(model, held-out, threshold=0)``, whose predictions equal the gated
model's on that data (checked here). ``--save`` keeps the last seed's model of the largest
lambda for ``benchmarks/deepmoe_speed.py --weights``.
"""

import argparse
import statistics
import time

import keras
import numpy as np

import keras_routing
from keras_routing.data import load_digit_images
from keras_routing.training import Procedure1
from keras_routing.zoo import deepmoe_resnet, resnet_baseline
from keras_routing.zoo.deepmoe import gate_values


def first_output(outputs):
    """The class predictions of a model's outputs (a ``DeepMoETask`` with an embedding
    classifier also returns the embedding's)."""
    return np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)


def _predictions(model, x):
    return first_output(model.predict(x, batch_size=256, verbose=0))


def train(model, x, y, epochs, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    keras_routing.recalibrate_batchnorm(model, x[:512], steps=8)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8, help="CIFAR ResNet depth 6n + 2")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n0", type=int, default=3, help="Procedure 1's joint-training epochs")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.01, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--png", default=None, help="per-class mean gate of one layer (the last seed)")
    parser.add_argument("--layer", type=int, default=-1, help="which gated layer the PNG shows")
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_digit_images(size=args.size)
    x_train, y_train = x_train[: args.train], y_train[: args.train]
    shape = (args.size, args.size, 3)
    rows = {}  # name -> list of (accuracy, realised madds, pruned madds, seconds)
    last = {}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        plain = resnet_baseline(args.depth, input_shape=shape, classes=10)
        seconds = train(plain, x_train, y_train, args.epochs)
        accuracy = float(np.mean(_predictions(plain, x_test).argmax(-1) == y_test))
        madds = keras_routing.profile(plain).madds
        rows.setdefault("plain", []).append((accuracy, madds, madds, madds, seconds))
        print(
            f"plain seed {seed}: accuracy {accuracy:.4f}, {madds / 1e6:.2f}M madds ({seconds:.0f} s)",
            flush=True,
        )
        for lam in args.lambdas:
            keras.utils.set_random_seed(seed)
            model = deepmoe_resnet(args.depth, wide=True, input_shape=shape, classes=10, gate_l1_weight=lam)
            seconds = train(model, x_train, y_train, args.epochs, [Procedure1(n0=args.n0)])
            predictions = _predictions(model, x_test)
            accuracy = float(np.mean(predictions.argmax(-1) == y_test))
            report = keras_routing.profile(model, data=x_test)
            pruned = keras_routing.prune_gated_channels(model, x_test, threshold=0.0)
            difference = float(np.max(np.abs(_predictions(pruned, x_test) - predictions)))
            pruned_madds = keras_routing.profile(pruned).madds
            name = f"wide-DeepMoE lambda {lam:g}"
            rows.setdefault(name, []).append(
                (accuracy, report.madds, report.expected_madds, pruned_madds, seconds)
            )
            zero = float(np.mean([np.mean(g == 0) for g in gate_values(model, x_test)]))
            print(
                f"{name} seed {seed}: accuracy {accuracy:.4f}, static {report.madds / 1e6:.2f}M, "
                f"realised {report.expected_madds / 1e6:.2f}M, pruned {pruned_madds / 1e6:.2f}M madds "
                f"(max |pruned - gated| {difference:.1e}), zero gates {zero:.3f} ({seconds:.0f} s)",
                flush=True,
            )
            last[lam] = model
    print("\n| model | accuracy (mean ± std) | static madds | realised madds | pruned madds | train s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in rows.items():
        accuracy = [v[0] for v in values]
        spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        means = [statistics.mean(v[i] for v in values) for i in range(1, 5)]
        print(
            f"| {name} | {100 * statistics.mean(accuracy):.2f} ± {100 * spread:.2f}% "
            f"(n={len(values)}) | {means[0] / 1e6:.2f}M | {means[1] / 1e6:.2f}M | {means[2] / 1e6:.2f}M "
            f"| {means[3]:.0f} |"
        )
    if args.save:
        last[max(last)].save(args.save)
        print(f"saved: {args.save}")
    if args.png:
        plot_gates(last, x_test, y_test, args.layer, args.png)


def plot_gates(models, x, y, layer, path):
    """Per-class mean gate of gated layer ``layer``, one panel per lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(models), 1, figsize=(8, 2.2 * len(models)), squeeze=False)
    for axis, (lam, model) in zip(axes[:, 0], sorted(models.items())):
        gates = gate_values(model, x)
        index = layer % len(gates)
        values = gates[index]
        heat = np.stack([values[y == c].mean(0) for c in range(10)])
        image = axis.imshow(heat, cmap="viridis", aspect="auto", interpolation="nearest")
        axis.set_title(
            f"lambda {lam:g}: gated layer {index + 1} of {len(gates)}, mean gate per class", fontsize=9
        )
        axis.set_ylabel("digit")
        axis.set_yticks(range(10))
        axis.set_xlabel("channel")
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"gate plot: {path}")


if __name__ == "__main__":
    main()
