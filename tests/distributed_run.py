"""Run by tests/test_distribution.py in a fresh process with two virtual CPU devices: losses of
the same training on one device and data parallel over two, as JSON on the last line."""

import json
import os
import sys

backend = os.environ["KERAS_BACKEND"]
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import numpy as np  # noqa: E402

if backend == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from keras_routing.training import data_parallel  # noqa: E402
from keras_routing.layers import CondConv2D  # noqa: E402


def losses(scope):
    keras.utils.set_random_seed(0)
    with scope():
        inputs = keras.Input((8, 8, 3))
        x = CondConv2D(4, 3, 4, activation="relu")(inputs)  # no BatchNorm: its statistics are per replica
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3)(x))
        model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 64)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return history.history["loss"]


import contextlib  # noqa: E402

single = losses(contextlib.nullcontext)
scope, replicas = data_parallel()
print(json.dumps({"replicas": replicas, "single": single, "parallel": losses(scope)}))
sys.stdout.flush()
