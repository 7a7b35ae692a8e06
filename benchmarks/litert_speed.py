"""Mobile speed: CC-MobileNetV1 against MobileNetV1 of the same width, exported to LiteRT.

    python benchmarks/litert_speed.py [--width 0.5] [--experts 8] [--threads 2]

Both models go through ``keras_routing.export(..., format="litert", batch_size=1)`` (float32,
dynamic-range, then int8 calibrated on 64 embedded digit images) and run in the
``ai-edge-litert`` interpreter (XNNPACK) at batch 1, 224x224. Dynamic-range quantization stores
weights in int8 and keeps float activations. ``unfolded`` is the CC model converted the same way
but without inference-time folding: the layers' own batch-1 form, a CONV_2D whose kernel is a
run-time tensor. Repetitions alternate between the models; ratios are of the medians. Target
(issue 5): CC within 1.3x of the plain model, float32 and int8. The float32 mixing of every
expert kernel is also timed alone (``benchmarks/mixing.py``): what reading all experts puts on
the float32 ratio. Exporting runs on the TensorFlow backend.
"""

import argparse
import os
import pathlib
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
from keras_routing import deploy, zoo  # noqa: E402
from keras_routing.data import load_digits  # noqa: E402
from mixing import empty_model, expert_kernel_shapes, mixing_alone  # noqa: E402
from timing import compare, litert_invoker  # noqa: E402

TARGET = 1.3


def export_unfolded(model, path):
    """What a plain ``model.export`` gives with builtin ops: no folding."""
    signature = [keras.InputSpec(shape=(1, *model.input_shape[1:]), dtype="float32")]
    supported = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    model.export(str(path), format="litert", input_signature=signature, verbose=False, target_spec=supported)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.5, help="per timed repetition")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    plain = zoo.mobilenet_v1(width=args.width)
    cc = zoo.cc_mobilenet_v1(width=args.width, experts=args.experts)
    (digits, _), _ = load_digits()
    calibration = np.repeat(tf.image.resize(digits[:64], (224, 224)).numpy() / 127.5 - 1.0, 3, axis=-1)
    image = calibration[:1]
    scratch = pathlib.Path(tempfile.mkdtemp())
    rows = []
    for quantize in (None, "dynamic", "int8"):
        paths = {}
        for name, model in (("plain", plain), ("cc", cc)):
            paths[name] = scratch / f"{name}_{quantize}.tflite"
            deploy.export(
                model,
                paths[name],
                "litert",
                quantize=quantize,
                batch_size=1,
                representative_dataset=calibration,
            )
        plain_call = litert_invoker(paths["plain"], args.threads, image)
        cc_time, plain_time = compare(
            litert_invoker(paths["cc"], args.threads, image),
            plain_call,
            repeats=args.repeats,
            min_seconds=args.min_seconds,
        )
        label = "float32" if quantize is None else quantize
        rows.append((f"cc {label}", cc_time, plain_time, paths))
        if quantize is None:
            paths["unfolded"] = scratch / "cc_unfolded.tflite"
            export_unfolded(cc, paths["unfolded"])
            unfolded_time, plain_again = compare(
                litert_invoker(paths["unfolded"], args.threads, image),
                plain_call,
                repeats=args.repeats,
                min_seconds=args.min_seconds,
            )
            rows.append(
                (
                    "cc float32 unfolded",
                    unfolded_time,
                    plain_again,
                    {"cc": paths["unfolded"], "plain": paths["plain"]},
                )
            )
            floor = mixing_floor(cc, scratch, args)

    print(
        f"cc_mobilenet_v1({args.width}, {args.experts}) vs mobilenet_v1({args.width}), LiteRT, batch 1, "
        f"224x224, {args.threads} threads; target {TARGET}x"
    )
    for label, cc_time, plain_time, paths in rows:
        sizes = f"{paths['cc'].stat().st_size / 1e6:.1f} MB vs {paths['plain'].stat().st_size / 1e6:.1f} MB"
        print(
            f"{label:<20} {cc_time * 1e3:7.2f} ms vs {plain_time * 1e3:6.2f} ms  "
            f"ratio {cc_time / plain_time:.2f}  ({sizes})"
        )
    mix_time, megabytes = floor
    plain_time = rows[0][2]
    print(
        f"float32 mixing alone (benchmarks/mixing.py): {mix_time * 1e3:.2f} ms for {megabytes:.1f} MB of experts "
        f"({megabytes / 1e3 / mix_time:.1f} GB/s); its share of the float32 ratio, 1 + mixing / plain = "
        f"{1 + mix_time / plain_time:.2f}"
    )


def mixing_floor(cc, scratch, args):
    """Seconds that mixing all of ``cc``'s experts takes in LiteRT alone (an empty model's
    invoke time taken off), and their megabytes."""
    paths = {name: scratch / f"{name}.tflite" for name in ("mixing", "empty")}
    deploy.export(mixing_alone(cc), paths["mixing"], "litert", batch_size=1)
    deploy.export(empty_model(cc), paths["empty"], "litert", batch_size=1)
    routing = np.full((1, args.experts), 0.5, "float32")
    mix_time, empty_time = compare(
        litert_invoker(paths["mixing"], args.threads, routing),
        litert_invoker(paths["empty"], args.threads, routing),
        repeats=args.repeats,
        min_seconds=args.min_seconds,
    )
    return mix_time - empty_time, expert_kernel_shapes(cc)[1]


if __name__ == "__main__":
    main()
