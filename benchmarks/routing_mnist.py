"""The routing paper's section 4.1 on the embedded digits: train ``zoo.routing_mlp_mnist`` (3
shared dense layers of 64 with LayerNorm and ReLU, one routed layer of 5 dense experts, k = 2),
aggregate the expert choices over the held-out split (Fig. 4) and print how concentrated each
class's choices are.

    KERAS_BACKEND=tensorflow python benchmarks/routing_mnist.py --epochs 10 --seeds 0 1 2 \
        --png docs/figures/routing_mnist_specialization.png

Digits scaled to [0, 1] (the factory's "unit" preprocessing), the 8,000 training images, Adam
1e-3, batch 128, balancing weights 0.1 (importance and load, constant). Concentration: mean over
classes of the share of a class's choices that go to its 2 most chosen experts (1: every class
always uses the same pair; 0.4: choices that ignore the class). The PNG is the first seed's.
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_routing import zoo
from keras_routing.analysis import routing_weights
from keras_routing.data import load_digits
from keras_routing.specialization import expert_choices, plot_expert_choices


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--png", default=None)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_digits()
    x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    results = []
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        model = zoo.routing_mlp_mnist()
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)["accuracy"]
        batches = [(x_test[i : i + 256], y_test[i : i + 256]) for i in range(0, len(x_test), 256)]
        weights, labels = routing_weights(model, batches)
        ((name, gates),) = weights.items()  # the one routed layer
        choices = expert_choices(gates, labels)
        results.append((accuracy, choices.concentration))
        pairs = ", ".join(
            f"{c}:{''.join(str(e) for e in sorted(np.argsort(row)[::-1][: choices.k]))}"
            for c, row in zip(choices.classes, choices.per_class)
        )
        print(
            f"seed {seed}: held-out accuracy {accuracy:.4f}, concentration {choices.concentration:.3f} "
            f"(uniform {choices.uniform_concentration:.3f}), each class's top pair {pairs} ({seconds:.0f} s)",
            flush=True,
        )
        if args.png and seed == args.seeds[0]:
            print(f"Fig. 4: {plot_expert_choices(choices, args.png)}")
    accuracy, concentration = zip(*results)
    spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    print(
        f"over {len(results)} seeds: accuracy {100 * statistics.mean(accuracy):.2f} ± {100 * spread(accuracy):.2f}%, "
        f"concentration {statistics.mean(concentration):.3f} ± {spread(concentration):.3f}"
    )


if __name__ == "__main__":
    main()
