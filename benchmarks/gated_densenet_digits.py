"""Train a small early-exit DenseNet on the embedded digits; print the paper's Fig. 9 (the
fraction each classifier answers, its error on those and on all) and the mean batch-1 latency
over (part of) the held-out set with exits (``threshold``) against ``always_on``.

    KERAS_BACKEND=tensorflow python benchmarks/gated_densenet_digits.py --depth 40 --growth 12 \
        --width 16 --size 32 --save /tmp/early_exit.keras
    KERAS_BACKEND=jax python benchmarks/gated_densenet_digits.py --size 32 --load /tmp/early_exit.keras \
        --timed ratio    # then --timed paths: five compiled copies in one JAX process exhaust XLA
    KERAS_BACKEND=tensorflow python benchmarks/gated_densenet_digits.py --forced-exit-depth 100

The model is ``zoo.gated_densenet_cifar`` (default 16x16) with the paper's targets (layers .9,
exits .3, per-gate const-quad) and deep supervision, trained with Adam, batch norm re-estimated
over 8 training batches (``--load`` takes a model trained on another backend instead).
Latency: each held-out example is predicted alone (``predict_on_batch``, compiled as the
backend compiles it) by the thresholded model and by a copy set ``always_on`` (never exits,
every layer runs), alternately, after warm-up calls, and the mean over the examples of each
printed with their ratio; then by three copies that send every example down one path (exit 1,
exit 2, the end, gates running), whose latencies weighted by the exit fractions predict the
thresholded mean.
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
from keras_routing.models.backbones.densenet_cifar import densenet_cifar_backbone
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
    plain = densenet_cifar_backbone(depth=depth, input_shape=(32, 32, 3))
    madds = (
        keras_routing.profile(model, rates={"exit1": 1.0}).expected_madds / keras_routing.profile(plain).madds
    )
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
    parser.add_argument("--path-examples", type=int, default=100, help="examples timed per forced path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="save the trained model here (.keras)")
    parser.add_argument("--load", help="skip training: load this model (.keras), e.g. from another backend")
    parser.add_argument(
        "--timed",
        default="all",
        choices=["all", "ratio", "paths"],
        help="time threshold and always_on (ratio), the three forced paths (paths), or both (all; "
        "on JAX five compiled copies can exhaust XLA's memory, so run ratio and paths apart)",
    )
    args = parser.parse_args()
    if args.forced_exit_depth:
        forced_exit_latency(args.forced_exit_depth, args.latency_examples)
        return
    (x_train, y_train), (x_test, y_test) = load_digit_images(size=args.size)
    x_train, y_train = x_train[: args.train], y_train[: args.train]
    keras.utils.set_random_seed(args.seed)
    if args.load:
        model = keras.saving.load_model(args.load)
    else:
        model = zoo.gated_densenet_cifar(
            depth=args.depth,
            growth_rate=args.growth,
            exit_gate_width=args.width,
            exit_classifier_width=args.width,
            input_shape=(args.size, args.size, 3),
            classes=10,
        )
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        train(model, x_train, y_train, args)
        keras_routing.recalibrate_batchnorm(model, x_train[:512], steps=8)
        if args.save:
            model.save(args.save)
    print("threshold inference (held-out set):")
    print(format_report(exit_report(model, x_test, y_test)))
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "model.keras"
        model.save(path)
        if args.timed != "paths":
            always = copy(path, inference="always_on")
            print("always_on:")
            print(format_report(exit_report(always, x_test, y_test)))
        # Every example forced down one path: exits at 1, at 2, or at none (gates run, thresholds
        # 0 and 1), to predict the mean latency from the exit fractions.
        paths = {}
        if args.timed != "ratio":
            paths = {
                "exit1": copy(path, thresholds=(0.0, 0.0)),
                "exit2": copy(path, thresholds=(1.0, 0.0)),
                "final": copy(path, thresholds=(1.0, 1.0)),
            }
    subset = x_test[: args.latency_examples]
    sub = exit_report(model, subset, y_test[: args.latency_examples])
    fractions = [c["fraction"] for c in sub["classifiers"]]
    print(
        f"exit fractions on the {len(subset)} timed examples "
        + " / ".join(f"{f:.3f}" for f in fractions)
        + f", layers run {sub['layer_fraction']:.3f}"
    )
    if args.timed != "paths":
        times = batch1_latencies({"threshold": model, "always_on": always}, subset)
        threshold, always_on = times["threshold"].mean(), times["always_on"].mean()
        print(
            f"batch-1 latency over {len(subset)} held-out examples ({keras.backend.backend()}): threshold "
            f"mean {1e3 * threshold:.2f} ms, always_on {1e3 * always_on:.2f} ms, ratio "
            f"{threshold / always_on:.3f}"
        )
    if paths:
        forced = {name: t.mean() for name, t in batch1_latencies(paths, subset[: args.path_examples]).items()}
        predicted = sum(f * forced[name] for f, name in zip(fractions, paths))
        print(
            "forced down one path (every example): "
            + ", ".join(f"{name} {1e3 * t:.2f} ms" for name, t in forced.items())
            + f"; predicted from the fractions {1e3 * predicted:.2f} ms"
        )


def train(model, x_train, y_train, args):
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
    print(f"trained {epoch + 1} epochs in {time.perf_counter() - start:.0f} s ({keras.backend.backend()})")


def copy(path, inference="threshold", thresholds=None):
    """The saved model, in ``inference`` mode, with the exits' thresholds set (before any call:
    the compiled predict function keeps them)."""
    model = keras.saving.load_model(path)
    keras_routing.set_inference(model, inference)
    if thresholds is not None:
        exit1 = model.get_layer("exit1")
        exit1.threshold = thresholds[0]
        exit1.rest.get_layer("exit2").threshold = thresholds[1]
    return model


if __name__ == "__main__":
    main()
