"""Train MobileNetV1 and CC-MobileNetV1 of one width on the embedded digits, same budget.

    KERAS_BACKEND=tensorflow python benchmarks/zoo_digits.py --recipe zoo/cc_mobilenet_v1-digits.toml

Reads the hyper-parameters from the recipe, trains the baseline and the CondConv model with
``model.fit`` on the 8,000 embedded training digits (resized to 32x32, RGB, [-1, 1]) and
evaluates both on the 2,000 held-out ones. Prints held-out accuracy, training time and the
time ratio, the figures the recipe records under [measured].
"""

import argparse
import time
import tomllib

import keras
from keras_routing import zoo
from keras_routing.data import load_digit_images


def train_and_evaluate(model, data, epochs, batch_size, learning_rate, verbose):
    """Adam, ``model.fit`` on the training arrays, accuracy on the held-out ones."""
    (x_train, y_train), (x_test, y_test) = data
    model.compile(
        keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return {"accuracy": accuracy, "seconds": seconds, "params": model.count_params()}


def train(name, kwargs, train_config, data):
    keras.utils.set_random_seed(train_config["seed"])
    model = zoo.get(name, input_shape=data[0][0].shape[1:], classes=10, **kwargs)
    result = train_and_evaluate(
        model,
        data,
        train_config["epochs"],
        train_config["batch_size"],
        train_config["learning_rate"],
        verbose=2,
    )
    return result["accuracy"], result["seconds"], result["params"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True)
    args = parser.parse_args()
    with open(args.recipe, "rb") as f:
        recipe = tomllib.load(f)
    data = load_digit_images(recipe["data"]["image_size"])
    model = dict(recipe["model"])
    name, baseline = model.pop("name"), model.pop("baseline")
    baseline_kwargs = {k: v for k, v in model.items() if k in ("width", "dropout")}
    results = {
        baseline: train(baseline, baseline_kwargs, recipe["train"], data),
        name: train(name, model, recipe["train"], data),
    }
    print(f"backend: {keras.backend.backend()}")
    print("| model | params | held-out accuracy | training seconds |")
    print("| --- | --- | --- | --- |")
    for label, (accuracy, seconds, params) in results.items():
        print(f"| {label} | {params:,} | {accuracy:.2%} | {seconds:.1f} |")
    print(f"training-time ratio: {results[name][1] / results[baseline][1]:.2f}x")


if __name__ == "__main__":
    main()
