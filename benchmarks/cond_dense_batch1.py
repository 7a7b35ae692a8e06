"""The CondConv classifier at batch 1: mixing the kernel first against all experts in one matmul.

    KERAS_BACKEND=torch python benchmarks/cond_dense_batch1.py

``CondDense(1000, 8)`` on 512 features (CC-MobileNetV1 (0.5x)'s classifier). ``mixed`` is what
the layer does at batch 1 (mix the kernel, one matmul); ``all experts`` is its formulation for
larger batches, which first copies the transposed expert stack. Medians of interleaved
repetitions in one process; both are checked to agree first.
"""

import numpy as np

import keras
from keras import ops
from keras_routing.layers import CondDense, cond_conv_ops
from timing import compare

layer = CondDense(1000, 8, routing=None)
layer.build((1, 512))
x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(1, 512)).astype("float32"))
r = ops.convert_to_tensor(np.random.default_rng(1).uniform(size=(1, 8)).astype("float32"))


def all_experts():
    n, features, units = layer.kernel.shape
    stacked = ops.reshape(ops.transpose(layer.kernel, (1, 0, 2)), (features, n * units))
    return cond_conv_ops.weighted_sum_of_experts(ops.reshape(ops.matmul(x, stacked), (-1, n, units)), r)


def mixed():
    return ops.matmul(x, cond_conv_ops.mix_one(r, layer.kernel, cond_conv_ops.mix_kernels))


np.testing.assert_allclose(
    ops.convert_to_numpy(mixed()), ops.convert_to_numpy(all_experts()), rtol=1e-4, atol=1e-4
)
new, old = compare(mixed, all_experts, repeats=7, min_seconds=0.5)
print(
    f"{keras.backend.backend()}: mixed {new * 1e3:.2f} ms, all experts {old * 1e3:.2f} ms ({old / new:.1f}x)"
)
