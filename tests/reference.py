"""Reference computations written independently of the code under test, and gradients on any backend."""

import numpy as np

import keras
from keras import ops


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def literal_condconv(x, kernel, bias, r, strides, padding, dilation_rate, depthwise=False):
    """The paper's mixture of experts, literally: ``sum_i r_i * (conv(x, W_i) + b_i)``.

    One plain Keras convolution per expert; ``r`` is (batch, n) or per-channel (batch, n, out).
    """
    conv = ops.depthwise_conv if depthwise else ops.conv
    x, kernel, r = (ops.convert_to_tensor(t) for t in (x, kernel, r))
    bias = None if bias is None else ops.convert_to_tensor(bias)
    total = 0.0
    for i in range(kernel.shape[0]):
        out = conv(x, kernel[i], strides=strides, padding=padding, dilation_rate=dilation_rate)
        if bias is not None:
            out = out + bias[i]
        weight = r[:, i, None, None, None] if len(r.shape) == 2 else r[:, i, None, None, :]
        total = total + weight * out
    return total


def literal_conddense(x, kernel, bias, r):
    x, kernel, bias, r = (ops.convert_to_tensor(t) for t in (x, kernel, bias, r))
    total = 0.0
    for i in range(kernel.shape[0]):
        out = ops.matmul(x, kernel[i]) + (0.0 if bias is None else bias[i])
        total = total + (r[:, i, None] if len(r.shape) == 2 else r[:, i, :]) * out
    return total


def gradients(fn, *args):
    """Gradients of the scalar ``fn(*args)`` with respect to every argument, as numpy arrays."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        return [g.numpy() for g in tape.gradient(value, tensors)]
    if name == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    import torch

    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
    fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]
