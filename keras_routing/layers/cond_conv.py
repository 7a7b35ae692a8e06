"""CondConv layers (Yang et al., 2019): per-example kernels ``sum_i r_i(x) W_i``, one convolution.

Each layer equals the mixture of experts ``sum_i r_i * (conv(x, W_i) + b_i)`` exactly; how it is
computed (``strategy``) is a matter of speed only, see ``cond_conv_ops``.
"""

import keras
from keras import ops

from keras_routing.layers import cond_conv_ops, deployment
from keras_routing.layers.conv_base import ConditionalConv
from keras_routing.layers.experts import StackedExperts
from keras_routing.validation import integer

USER_STRATEGIES = ("auto", "mixture", "grouped", "patches")


def _formulation(layer, kind, batch_size):
    """The function of ``cond_conv_ops`` that computes ``layer``'s call: its ``strategy``, or
    for ``"auto"`` the fastest for the backend, the batch size and the export being traced."""
    strategy = layer.strategy
    if strategy == "auto":
        strategy = cond_conv_ops.choose_strategy(
            kind, layer.kernel_size, batch_size, strides=layer.strides, deployment=deployment.current()
        )
    return (cond_conv_ops.FULL if kind == "full" else cond_conv_ops.DEPTHWISE)[strategy]


@keras.saving.register_keras_serializable(package="keras_routing")
class CondConv2D(ConditionalConv):
    """A 2D convolution whose kernel and bias are example-dependent mixtures of experts.

    ``CondConv2D(filters, kernel_size, num_experts)`` holds ``kernel`` of shape
    ``(num_experts, kh, kw, in_channels, filters)`` and ``bias`` ``(num_experts, filters)``, and
    computes ``activation(sum_i r_i * (conv(x, W_i) + b_i))`` with ``r = routing(x)``, or with
    ``routing_weights`` passed to ``call`` (shape ``(batch, num_experts)``, or
    ``(batch, num_experts, filters)`` for per-channel routing).

    ``routing``: ``"sigmoid"`` (the paper's default), ``"softmax"``, a ``Router`` (e.g. a
    ``Routing`` layer) or its config, or ``None`` when the routing weights always come from
    outside.
    ``strategy``: how to compute it, ``"auto"`` (fastest for the backend and batch size),
    ``"mixture"``, ``"grouped"`` or ``"patches"``; all give the same result. It is the layer's
    inference mode: settable on a built model (``layer.strategy = "patches"`` or
    ``keras_routing.layers.set_inference(model, "patches")``).
    """

    inference_modes = USER_STRATEGIES

    def __init__(self, filters, kernel_size, num_experts, **kwargs):
        filters = integer(filters, "filters", owner="CondConv2D")
        super().__init__(filters, kernel_size, num_experts, **kwargs)

    def mixture_op(self, inputs, kernel, routing_weights):
        compute = _formulation(self, "full", inputs.shape[0])
        return compute(inputs, kernel, routing_weights, self.strides, self.padding, self.dilation_rate)


@keras.saving.register_keras_serializable(package="keras_routing")
class CondDepthwiseConv2D(ConditionalConv):
    """A depthwise convolution whose kernel and bias are example-dependent mixtures of experts.

    ``kernel``: ``(num_experts, kh, kw, in_channels, depth_multiplier)``; ``bias``:
    ``(num_experts, in_channels * depth_multiplier)``. Otherwise as ``CondConv2D``.
    """

    inference_modes = USER_STRATEGIES

    def __init__(self, kernel_size, num_experts, depth_multiplier=1, **kwargs):
        self.depth_multiplier = integer(depth_multiplier, "depth_multiplier", owner="CondDepthwiseConv2D")
        super().__init__(None, kernel_size, num_experts, **kwargs)

    def expert_kernel_shape(self, in_channels):
        return (*self.kernel_size, in_channels, self.depth_multiplier)

    def output_channels(self, in_channels):
        return in_channels * self.depth_multiplier

    def mixture_op(self, inputs, kernel, routing_weights):
        compute = _formulation(self, "depthwise", inputs.shape[0])
        return compute(inputs, kernel, routing_weights, self.strides, self.padding, self.dilation_rate)

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier}


@keras.saving.register_keras_serializable(package="keras_routing")
class CondDense(StackedExperts):
    """A dense layer whose kernel and bias are example-dependent mixtures of experts.

    The CondConv paper's 1x1 CondConv classifier. ``kernel``: ``(num_experts, in_features,
    units)``; ``bias``: ``(num_experts, units)``. Inputs of rank > 2 are mixed per example and
    applied to the last axis, like ``keras.layers.Dense``.
    """

    def __init__(self, units, num_experts, **kwargs):
        self.units = integer(units, "units", owner="CondDense")
        super().__init__(num_experts, **kwargs)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"CondDense: expected input of rank >= 2 with a known last axis, got shape {tuple(input_shape)}."
            )
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_shape[-1]})
        self.add_expert_weights((input_shape[-1], self.units), self.units)
        self.build_routing(input_shape)

    def call(self, inputs, routing_weights=None, training=None):
        r = self.resolve_routing_weights(inputs, routing_weights, self.units, training=training)
        n, features, units = self.kernel.shape
        target = deployment.current()
        if len(inputs.shape) == 2 and inputs.shape[0] == 1 and not (target and target.freezes_weights):
            # One example: mix the kernel (streams the experts once), one matmul. The all-experts
            # matmul below would first copy the whole transposed expert stack (16 MB for an
            # 8-expert ImageNet classifier) on every call.
            outputs = ops.matmul(inputs, cond_conv_ops.mix_one(r, self.kernel, cond_conv_ops.mix_kernels))
        elif len(inputs.shape) == 2:
            # All experts in one matmul: as cheap as mixing the kernel, with no (batch, in, out)
            # tensor. Exported, the transposed stack is one constant: static weights that the
            # runtime packs once, where a mixed kernel would be a run-time tensor.
            stacked = ops.reshape(ops.transpose(self.kernel, (1, 0, 2)), (features, n * units))
            per_expert = ops.reshape(ops.matmul(inputs, stacked), (-1, n, units))
            outputs = cond_conv_ops.weighted_sum_of_experts(per_expert, r)
        else:
            mixed = cond_conv_ops.mix_kernels(r, self.kernel)  # (batch, in, units)
            flat = ops.reshape(inputs, (ops.shape(inputs)[0], -1, features))
            outputs = ops.reshape(ops.matmul(flat, mixed), tuple(ops.shape(inputs)[:-1]) + (units,))
        if self.use_bias:
            bias = cond_conv_ops.mix_bias(r, self.bias)
            outputs = outputs + ops.reshape(bias, (-1,) + (1,) * (len(inputs.shape) - 2) + (units,))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, inputs_shape, routing_weights_shape=None):
        return tuple(inputs_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
