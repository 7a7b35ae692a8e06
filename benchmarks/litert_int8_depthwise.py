"""Why int8 exports run a CondConv depthwise layer as separate experts: speed and error of its forms.

    python benchmarks/litert_int8_depthwise.py [--threads 2]

One block as CC-MobileNetV1 has it (routing, CondDepthwiseConv2D with 8 experts, batch
normalization with per-channel scales far apart, ReLU6), 14x14x256, exported to LiteRT int8 at
batch 1 with each form of ``cond_conv_ops.DEPTHWISE`` forced, and run in the ``ai-edge-litert``
interpreter, timed against the plain block (DepthwiseConv2D) in alternation. Error: mean
absolute difference from the Keras model over 8 inputs, relative to the mean absolute output.
``single`` mixes the kernel at run time (one range for all its channels); ``separate`` and
``mixture`` keep every expert's kernel static (quantized per channel).
Exporting runs on the TensorFlow backend.
"""

import argparse
import os
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402

import keras  # noqa: E402
from keras_routing import deploy  # noqa: E402
from keras_routing.layers import CondDepthwiseConv2D, Routing, cond_conv_ops  # noqa: E402
from timing import compare, litert_invoker  # noqa: E402

FORMS = ("single", "separate", "mixture")


def block(rng, conditional=True):
    inputs = keras.Input((14, 14, 256))
    if conditional:
        r = Routing(8)(inputs)
        x = CondDepthwiseConv2D(3, 8, padding="same", use_bias=False, routing=None)(inputs, routing_weights=r)
    else:
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(inputs)
    norm = keras.layers.BatchNormalization()
    x = keras.layers.ReLU(6.0)(norm(x))
    norm.set_weights(
        [rng.uniform(0.5, 2, 256), rng.normal(size=256), rng.normal(size=256), rng.uniform(0.01, 10, 256)]
    )
    return keras.Model(inputs, x)


def export_with_form(model, form, path, calibration):
    choose = cond_conv_ops.choose_strategy
    cond_conv_ops.choose_strategy = lambda kind, *args, deployment=None, **kwargs: form
    try:
        deploy.export(
            model, path, "litert", quantize="int8", batch_size=1, representative_dataset=calibration
        )
    finally:
        cond_conv_ops.choose_strategy = choose


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="per timed repetition")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = block(rng)
    images = np.maximum(rng.normal(size=(64, 14, 14, 256)), 0).astype("float32")
    expected = model.predict(images[:8], verbose=0)
    scratch = tempfile.mkdtemp()
    plain_path = os.path.join(scratch, "plain.tflite")
    deploy.export(
        block(rng, conditional=False),
        plain_path,
        "litert",
        quantize="int8",
        batch_size=1,
        representative_dataset=images,
    )
    plain = litert_invoker(plain_path, args.threads, images[:1])
    print(
        f"CondDepthwiseConv2D(3, 8 experts) + BN + ReLU6, 14x14x256, LiteRT int8, batch 1, {args.threads} threads"
    )
    for form in FORMS:
        path = os.path.join(scratch, f"{form}.tflite")
        export_with_form(model, form, path, images)
        outputs = deploy.run_litert(path, images[:8], threads=args.threads)
        error = np.abs(outputs - expected).mean() / np.abs(expected).mean()
        form_time, plain_time = compare(
            litert_invoker(path, args.threads, images[:1]),
            plain,
            repeats=args.repeats,
            min_seconds=args.min_seconds,
        )
        print(
            f"{form:<10} {form_time * 1e6:8.1f} us vs plain {plain_time * 1e6:6.1f} us  "
            f"ratio {form_time / plain_time:5.2f}   error {error:6.2%}"
        )


if __name__ == "__main__":
    main()
