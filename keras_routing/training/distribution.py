"""Data parallelism with Keras's own support: ``keras.distribution.DataParallel`` on JAX,
``tf.distribute.MirroredStrategy`` on TensorFlow. Keras's distribution API does not cover
PyTorch (there, wrap training in ``torchrun`` and PyTorch's DDP yourself)."""

import contextlib

import keras


def data_parallel():
    """Turn on data parallelism over every accelerator (or, without any, every CPU device).

    Returns ``(scope, replicas)``: build and compile the model inside ``with scope():`` (a
    ``MirroredStrategy`` scope on TensorFlow; nothing on JAX, where the distribution is global),
    then ``fit`` as usual with the global batch size.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext, len(devices)
    if backend == "tensorflow":
        import tensorflow as tf

        # MirroredStrategy's default ignores CPUs when there are no GPUs; name the devices.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        return strategy.scope, strategy.num_replicas_in_sync
    raise ValueError(
        f"Data parallelism through Keras needs the jax or tensorflow backend, not {backend!r}: Keras's "
        "distribution API does not cover PyTorch (use torchrun and PyTorch's DDP)."
    )
