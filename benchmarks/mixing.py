"""The part of a CondConv model's batch-1 inference that no formulation can skip: mixing.

At batch 1 every conditional layer computes ``sum_i r_i W_i`` and so reads every expert's
weights once (42 MB for CC-MobileNetV1 0.5x with 8 experts, against the plain model's 5 MB).
``mixing_alone(model)`` is a model that does only that, with the same kernel shapes and the
same contraction (``cond_conv_ops.mix_one``), fed routing weights of shape ``(1, num_experts)``.
``empty_model`` takes the same input and does nothing: its time, the cost of calling a model,
comes off. Timed beside the plain model, ``1 + mixing / plain`` is what mixing alone puts on the
CondConv model's ratio with this backend's contraction on this machine, before routing and the
extra multiply-adds. It is an estimate of a floor, not a proof: a runtime may overlap the mixing
with other work (TensorFlow's inter-op threads, XLA's fusion), and a faster contraction than the
backend's would lower it.
"""

import numpy as np

import keras
from keras import ops
from keras_routing.layers import cond_conv_ops
from keras_routing.layers.experts import StackedExperts
from timing import compare


class MixingAlone(keras.layers.Layer):
    """Mixes one kernel of each given shape with the routing weights, and nothing else."""

    def __init__(self, kernel_shapes, **kwargs):
        super().__init__(**kwargs)
        self.kernel_shapes = [tuple(shape) for shape in kernel_shapes]

    def build(self, input_shape):
        self.kernels = [
            self.add_weight(shape=shape, initializer="glorot_uniform", name=f"kernel_{index}")
            for index, shape in enumerate(self.kernel_shapes)
        ]

    def call(self, routing_weights):
        # One element of each mixed kernel: the output costs nothing, and graph runtimes run the
        # whole contraction for it (XLA could slice the contraction instead).
        firsts = [
            ops.reshape(cond_conv_ops.mix_one(routing_weights, kernel, cond_conv_ops.mix_kernels), (-1,))[:1]
            for kernel in self.kernels
        ]
        return ops.concatenate(firsts)[None]


def expert_kernel_shapes(model):
    """The kernel shapes of ``model``'s conditional layers, and their float32 megabytes."""
    shapes = [tuple(layer.kernel.shape) for layer in model.layers if isinstance(layer, StackedExperts)]
    return shapes, sum(4 * np.prod(shape) for shape in shapes) / 1e6


def _routing_input(model):
    shapes, _ = expert_kernel_shapes(model)
    experts = {shape[0] for shape in shapes}
    if len(experts) != 1:
        raise ValueError(f"expected one expert count across the model, got {sorted(experts)}")
    return keras.Input(shape=(experts.pop(),), batch_size=1), shapes


def mixing_alone(model):
    """A model that mixes every conditional layer's kernel of ``model`` at batch 1."""
    routing, shapes = _routing_input(model)
    return keras.Model(routing, MixingAlone(shapes)(routing), name="mixing_alone")


def empty_model(model):
    """A model with ``mixing_alone(model)``'s input and no work: the cost of a call."""
    routing, _ = _routing_input(model)
    return keras.Model(routing, ops.sum(routing, axis=1, keepdims=True), name="empty")


def mixing_seconds(model, repeats, min_seconds):
    """Median seconds of ``mixing_alone(model)``'s ``predict_on_batch``, ``empty_model``'s taken off."""
    mixer, empty = mixing_alone(model), empty_model(model)
    routing = np.full((1, mixer.input.shape[-1]), 0.5, "float32")
    mix_s, empty_s = compare(
        lambda: mixer.predict_on_batch(routing), lambda: empty.predict_on_batch(routing), repeats, min_seconds
    )
    return mix_s - empty_s
