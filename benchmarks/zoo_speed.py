"""Whole-model speed of CC-MobileNetV1 as a ratio to MobileNetV1 of the same width, same process.

    KERAS_BACKEND=jax python benchmarks/zoo_speed.py [--width 0.5] [--experts 8]

Times a training step (``train_on_batch``: forward, backward, SGD update) at batch 32 and
``--train-size`` pixels, and inference (``predict_on_batch``) at batch 1 and 224x224, the
paper's resolution (at small resolutions the fixed cost of mixing kernels weighs more).
Repetitions alternate between the two models; the ratio is of the medians. Targets (issue 3):
training within 1.5x, batch-1 inference within 1.2x (the profiler's multiply-add ratio beside them).
With inference, the mixing of every expert kernel is also timed alone (``benchmarks/mixing.py``):
what reading all experts puts on the inference ratio.
"""

import argparse
import os

import numpy as np

import keras
import keras_routing
from keras_routing import zoo
from mixing import expert_kernel_shapes, mixing_seconds
from timing import compare_models

TRAIN_TARGET, INFER_TARGET = 1.5, 1.2


def compiled(model):
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=224)
    parser.add_argument("--infer-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", default="train,infer", help="comma-separated, of train,infer")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per timed repetition")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(
        f"backend: {keras.backend.backend()}, cores: {os.cpu_count()}, width {args.width}, {args.experts} experts"
    )
    rows = []
    for phase, size, batch in (("train", args.train_size, 32), ("infer", args.infer_size, 1)):
        if phase not in args.phases.split(","):
            continue
        shape = (size, size, 3)
        plain = compiled(zoo.mobilenet_v1(args.width, input_shape=shape))
        cond = compiled(zoo.cc_mobilenet_v1(args.width, args.experts, input_shape=shape))
        madds = keras_routing.profile(cond).madds / keras_routing.profile(plain).madds
        x = rng.uniform(-1, 1, (batch, *shape)).astype("float32")
        y = rng.integers(0, 1000, (batch,))
        timed = compare_models(phase, cond, plain, x, y, args.repeats, args.min_seconds)
        if phase != "train":
            floor = (
                mixing_seconds(cond, args.repeats, args.min_seconds),
                timed[1],
                expert_kernel_shapes(cond)[1],
            )
        rows.append((phase, size, batch, timed, madds))
        del plain, cond
        keras.backend.clear_session()
    print("| phase | input | batch | plain ms | CC ms | ratio (target) | MAdds ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for phase, size, batch, (cond_s, plain_s), madds in rows:
        target = TRAIN_TARGET if phase == "train" else INFER_TARGET
        ratio = cond_s / plain_s
        verdict = "ok" if ratio <= target else "over"
        print(
            f"| {phase} | {size}x{size} | {batch} | {plain_s * 1e3:.1f} | {cond_s * 1e3:.1f} | "
            f"{ratio:.2f}x ({verdict} <= {target}) | {madds:.2f} |"
        )
    if "infer" in args.phases.split(","):
        mix_s, plain_s, megabytes = floor
        print(
            f"batch-1 mixing alone (benchmarks/mixing.py): {mix_s * 1e3:.2f} ms for {megabytes:.1f} MB of "
            f"experts ({megabytes / 1e3 / mix_s:.1f} GB/s); its share of the inference "
            f"ratio, 1 + mixing / plain = {1 + mix_s / plain_s:.2f}"
        )


if __name__ == "__main__":
    main()
