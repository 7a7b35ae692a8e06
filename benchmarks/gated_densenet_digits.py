"""Train a small early-exit DenseNet on the embedded digits; print the paper's Fig. 9 (the
fraction each classifier answers, its error on those and on all) and the mean batch-1 latency
over (part of) the held-out set with exits (``threshold``) against ``always_on``.

    KERAS_BACKEND=tensorflow python benchmarks/gated_densenet_digits.py --depth 28 --growth 12 --width 16
    KERAS_BACKEND=tensorflow python benchmarks/gated_densenet_digits.py --forced-exit-depth 100

The model is ``zoo.gated_densenet_cifar`` at 16x16 with the paper's targets (layers .9, exits
.3, per-gate const-quad), trained with Adam, batch norm re-estimated over 8 training batches.
Latency: each held-out example is predicted alone (``predict_on_batch``, compiled as the
backend compiles it) by the thresholded model and by a copy set ``always_on`` (never exits,
every layer runs), alternately, after warm-up calls; the mean over the examples of each is
printed with their ratio, beside the ratio of expected multiply-adds (``keras_routing.profile``).
"""

import argparse
import pathlib
import tempfile
import time

import keras
import numpy as np

import keras_routing
from keras_routing import zoo
from keras_routing.data import load_digit_images
from keras_routing.zoo.gated_densenet import exit_report, format_report


def batch1_latencies(models, x):
    """``{name: per-example seconds}`` of ``predict_on_batch`` at batch 1, models alternating."""
    for model in models.values():
        for _ in range(3):
            model.predict_on_batch(x[:1])
    times = {name: [] for name in models}
    for i in range(len(x)):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(x[i : i + 1])
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(values) for name, values in times.items()}


def forced_exit_latency(depth, runs):
    """Untrained, at CIFAR size with S2.4's widths (128): batch-1 latency with every example
    exiting at exit1 (its gate's kernel zeroed, bias far open) against ``always_on``: the bound
    on what an exit saves, where compute rather than per-call overhead dominates."""
    model = zoo.gated_densenet_cifar(depth=depth)
    exit1 = model.get_layer("exit1")
    kernel = exit1.gate.logits.kernel
    kernel.assign(np.zeros(kernel.shape, "float32"))
    exit1.gate.logits.bias.assign(np.array([-6.0, 6.0], "float32"))
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "model.keras"
        model.save(path)
        always = keras.saving.load_model(path)
    keras_routing.set_inference(always, "always_on")
    x = np.random.default_rng(0).normal(size=(runs, 32, 32, 3)).astype("float32")
    times = batch1_latencies({"exit1": model, "always_on": always}, x)
    madds = keras_routing.profile(model, data=x[:8]).expected_madds / keras_routing.profile(always).madds
    print(
        f"DenseNet-BC-{depth} at 32x32, untrained, every example exiting at exit1: batch-1 mean "
        f"{1e3 * times['exit1'].mean():.2f} ms against always_on {1e3 * times['always_on'].mean():.2f} ms, "
        f"ratio {times['exit1'].mean() / times['always_on'].mean():.3f} (multiply-adds ratio {madds:.3f})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forced-exit-depth", type=int, default=None, help="only the forced-exit bound")
    parser.add_argument("--depth", type=int, default=22)
    parser.add_argument("--growth", type=int, default=8)
    parser.add_argument("--width", type=int, default=32, help="exit gates' and classifiers' channels")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0, help="stop training after this long")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--latency-examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.forced_exit_depth:
        forced_exit_latency(args.forced_exit_depth, args.latency_examples)
        return
    (x_train, y_train), (x_test, y_test) = load_digit_images(size=args.size)
    x_train, y_train = x_train[: args.train], y_train[: args.train]
    keras.utils.set_random_seed(args.seed)
    model = zoo.gated_densenet_cifar(
        depth=args.depth,
        growth_rate=args.growth,
        exit_gate_width=args.width,
        exit_classifier_width=args.width,
        input_shape=(args.size, args.size, 3),
        classes=10,
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        logs = model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0).history
        fractions = [logs[f"exit_target_loss_exit_fraction_{i}"][0] for i in range(3)]
        print(
            f"epoch {epoch + 1}: loss {logs['loss'][0]:.3f}, exit fractions (training) "
            + " / ".join(f"{f:.3f}" for f in fractions)
            + f", layer open rate {logs['layer_target_loss_open_rate'][0]:.3f}",
            flush=True,
        )
        if time.perf_counter() - start > 60 * args.minutes:
            break
    seconds = time.perf_counter() - start
    keras_routing.recalibrate_batchnorm(model, x_train[:512], steps=8)
    print(f"trained {epoch + 1} epochs in {seconds:.0f} s ({keras.backend.backend()})")
    print("threshold inference (held-out set):")
    print(format_report(exit_report(model, x_test, y_test)))
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "model.keras"
        model.save(path)
        always = keras.saving.load_model(path)
    keras_routing.set_inference(always, "always_on")
    print("always_on:")
    print(format_report(exit_report(always, x_test, y_test)))
    subset = x_test[: args.latency_examples]
    times = batch1_latencies({"threshold": model, "always_on": always}, subset)
    sub = exit_report(model, subset, y_test[: args.latency_examples])
    fractions = " / ".join(f"{c['fraction']:.3f}" for c in sub["classifiers"])
    cost = keras_routing.profile(model, data=subset)
    full = keras_routing.profile(always, data=subset)
    print(
        f"multiply-adds per example (profile, exit rate of exit1 measured; the rest counted whole): "
        f"threshold {cost.expected_madds / 1e6:.2f} M, always_on {full.expected_madds / 1e6:.2f} M, "
        f"ratio {cost.expected_madds / full.expected_madds:.3f}"
    )
    print(
        f"batch-1 latency over {len(subset)} held-out examples: threshold mean "
        f"{1e3 * times['threshold'].mean():.2f} ms, always_on mean {1e3 * times['always_on'].mean():.2f} ms, "
        f"ratio {times['threshold'].mean() / times['always_on'].mean():.3f} "
        f"(exit fractions on them {fractions}, layers run {sub['layer_fraction']:.3f})"
    )


if __name__ == "__main__":
    main()
