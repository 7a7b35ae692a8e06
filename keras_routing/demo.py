"""The README's main job: train a small CondConv network and its plain twin on real digits.

    python -m keras_routing.demo [--epochs 5] [--experts 4] [--output outputs/demo]

Both networks share one layout (a stem convolution, two separable blocks, a classifier); the
CondConv one replaces the block convolutions and the classifier with CondConv layers and one
routing function per block, as CC-MobileNetV1 does. Each is trained with ``model.fit`` on the
8,000 embedded MNIST training digits and evaluated on the 2,000 held-out ones. The CondConv
model is saved as ``.keras`` and exported as a TensorFlow SavedModel, whose outputs are checked
against the Keras model. The zoo's MobileNets and the ``keras-routing`` command replace this
demo's network and flags as they land (issues 3 and 4).
"""

import argparse
import pathlib
import time

import numpy as np

import keras
from rich.console import Console
from rich.table import Table

from keras_routing.data import load_digits
from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D, Routing

BLOCKS = ((32, 2), (64, 2))  # (pointwise filters, stride) of each separable block


def digit_classifier(experts=None, classes=10, name=None):
    """A small MobileNet-style classifier; CondConv blocks and classifier when ``experts``."""
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    for filters, stride in BLOCKS:
        if experts:
            routing = Routing(experts)(x)  # one routing function per block, from its input
            x = CondDepthwiseConv2D(3, experts, strides=stride, padding="same", use_bias=False, routing=None)(
                x, routing_weights=routing
            )
        else:
            x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
        if experts:
            x = CondConv2D(filters, 1, experts, use_bias=False, routing=None)(x, routing_weights=routing)
        else:
            x = keras.layers.Conv2D(filters, 1, use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    if experts:
        outputs = CondDense(classes, experts, activation="softmax")(x)
    else:
        outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name or ("cc_digits" if experts else "digits"))


def train_and_evaluate(model, data, epochs, batch_size, learning_rate=3e-3, verbose=1):
    """Adam, ``model.fit`` on the training split, evaluation on the held-out split."""
    (x_train, y_train), (x_test, y_test) = data
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return {"accuracy": accuracy, "loss": loss, "seconds": seconds, "params": model.count_params()}


def max_difference(outputs, reference):
    return float(np.abs(keras.ops.convert_to_numpy(outputs) - reference).max())


def export_saved_model(model, path, images):
    """Export, reload with TensorFlow alone, and return its outputs on ``images``."""
    import tensorflow as tf

    model.export(str(path), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(path))
    return reloaded.serve(tf.constant(images)).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_routing.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("outputs/demo"))
    args = parser.parse_args(argv)
    console = Console()
    keras.utils.set_random_seed(0)
    args.output.mkdir(parents=True, exist_ok=True)
    data = load_digits()
    console.print(
        f"[bold]keras-routing demo[/] on {keras.backend.backend()}: embedded MNIST digits, "
        f"{len(data[0][0])} train / {len(data[1][0])} held out, {args.epochs} epochs"
    )

    results, models = {}, {}
    for label, experts in (("plain", None), (f"CondConv ({args.experts} experts)", args.experts)):
        console.rule(label)
        models[label] = digit_classifier(experts)
        results[label] = train_and_evaluate(models[label], data, args.epochs, args.batch_size)
    cc_model = models[label]

    sample = data[1][0][:8].astype("float32")
    reference = keras.ops.convert_to_numpy(cc_model(sample))
    keras_path = args.output / "cc_digits.keras"
    cc_model.save(keras_path)
    reload_diff = max_difference(keras.saving.load_model(keras_path, safe_mode=True)(sample), reference)
    saved_model_path = args.output / "cc_digits_saved_model"
    export_diff = max_difference(export_saved_model(cc_model, saved_model_path, sample), reference)

    table = Table(title="Held-out accuracy (2,000 real MNIST digits)")
    for column in ("model", "params", "test accuracy", "test loss", "train time"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for label, r in results.items():
        table.add_row(label, f"{r['params']:,}", f"{r['accuracy']:.2%}", f"{r['loss']:.3f}", f"{r['seconds']:.1f} s")
    console.print(table)
    plain, cc = results.values()
    console.print(f"training-time ratio CondConv / plain: {cc['seconds'] / plain['seconds']:.2f}x")
    console.print(f"Keras model:  {keras_path.resolve()}  (reloaded, max |diff| {reload_diff:.1e})")
    console.print(f"SavedModel:   {saved_model_path.resolve()}  (max |diff| to Keras {export_diff:.1e})")
    return results


if __name__ == "__main__":
    main()
