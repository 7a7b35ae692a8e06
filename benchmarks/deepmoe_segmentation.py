"""DeepMoE DRN-A-50 overfits real COCO pixels: mean IoU on coco128 images before and after a fixed
training budget (the issue's check that the segmentation pipeline and model learn; coco128 is
far too small to measure generalisation, and CityScapes, the paper's dataset, is not here).

    nice -n 15 .venv/bin/python benchmarks/deepmoe_segmentation.py --images 32 --size 64 --epochs 30

Prints the budget (images, size, epochs, batches, seconds) and the mean IoU over COCO's 81
classes (80 and the background; Keras's MeanIoU: classes that occur in the masks or the
predictions), the pixel accuracy and the background share (what predicting "background"
everywhere scores), all on the training images, in inference mode and with the batch
normalisations re-estimated on the training images (``recalibrate_batchnorm``) and on batch
statistics (as fit computes), and the fraction of zero gates.
"""

import argparse
import pathlib
import time

import keras
import numpy as np

import keras_routing
from keras_routing.data import CocoJson, coco_segmentation

ROOT = pathlib.Path(__file__).resolve().parents[1]
COCO128 = ROOT.parent / "shared" / "data" / "coco128"


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch that passes ``seconds``."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def scores(model, data, classes, training=False):
    """Mean IoU, pixel accuracy and background share over ``data``: in inference mode, or with
    ``training`` the batch normalisations on the batch's statistics (as ``fit`` sees them)."""
    iou = keras.metrics.MeanIoU(classes, sparse_y_pred=False)
    correct = total = background = 0
    for images, masks in data:
        if training:
            probabilities = model(images.numpy(), training=True)
        else:
            probabilities = model.predict_on_batch(images.numpy())
        masks = masks.numpy()
        iou.update_state(masks, probabilities)
        predicted = np.asarray(keras.ops.convert_to_numpy(probabilities)).argmax(-1)
        correct += int((predicted == masks).sum())
        background += int((masks == 0).sum())
        total += masks.size
    return float(iou.result()), correct / total, background / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(COCO128), help="a COCO-format folder (default coco128)")
    parser.add_argument("--split", default="train2017")
    parser.add_argument("--images", type=int, default=32, help="the first N images of the split")
    parser.add_argument("--size", type=int, default=64, help="input height and width (divisible by 8)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=300.0, help="stop after the epoch past this")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--gate-l1-weight", type=float, default=0.01, help="lambda")
    parser.add_argument("--narrow", action="store_true", help="narrow-DeepMoE (wide=False): 1/2.8 the work")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    split = f"{args.split}[:{args.images}]"
    classes = CocoJson(pathlib.Path(args.data) / "annotations" / f"instances_{args.split}.json").num_classes
    train = coco_segmentation(
        args.data, split, args.size, args.batch_size, shuffle=True, seed=args.seed, cache=True
    )
    evaluation = coco_segmentation(args.data, split, args.size, args.batch_size, shuffle=False, cache=True)
    model = keras_routing.zoo.deepmoe_drn_a50(
        wide=not args.narrow,
        input_shape=(args.size, args.size, 3),
        classes=classes,
        gate_l1_weight=args.gate_l1_weight,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    before = scores(model, evaluation, classes)

    start = time.perf_counter()
    history = model.fit(train, epochs=args.epochs, verbose=0, callbacks=[TimeBudget(args.seconds)])
    seconds = time.perf_counter() - start
    after = scores(model, evaluation, classes)
    # A few dozen steps leave BatchNorm's moving averages near their initial values (0.9 ** 28 of
    # them remain): re-estimate them on the training images, as the gates paper does.
    keras_routing.recalibrate_batchnorm(model, evaluation, steps=-(-args.images // args.batch_size))
    recalibrated = scores(model, evaluation, classes)
    batch_statistics = scores(model, evaluation, classes, training=True)  # moves BN's averages: last
    epochs = len(history.history["loss"])
    zero = [v[-1] for k, v in history.history.items() if k.endswith("_zero_fraction")]

    print(
        f"model: {model.name}, {model.count_params() / 1e6:.1f}M parameters, backend {keras.backend.backend()}"
    )
    print(
        f"budget: {args.images} images of {args.data} ({split}) at {args.size}x{args.size}, "
        f"{classes} classes, batch {args.batch_size}, Adam {args.learning_rate:g}, lambda "
        f"{args.gate_l1_weight:g}: {epochs} epochs ({epochs * -(-args.images // args.batch_size)} "
        f"steps) in {seconds:.0f} s"
    )
    print(f"loss: {history.history['loss'][0]:.3f} (epoch 1) -> {history.history['loss'][-1]:.3f}")
    rows = (
        ("before", before),
        ("after, inference mode", after),
        ("after, inference mode, BN re-estimated (recalibrate_batchnorm)", recalibrated),
        ("after, BN on batch statistics", batch_statistics),
    )
    for label, (iou, accuracy, background) in rows:
        print(
            f"{label}: mean IoU {iou:.3f}, pixel accuracy {accuracy:.3f} (background share {background:.3f})"
        )
    print(f"zero gates (last epoch, mean over {len(zero)} gated layers): {np.mean(zero):.3f}")


if __name__ == "__main__":
    main()
