"""CondConv layers (Yang et al., 2019): per-example kernels ``sum_i r_i(x) W_i``, one convolution.

Each layer equals the mixture of experts ``sum_i r_i * (conv(x, W_i) + b_i)`` exactly; how it is
computed (``strategy``) is a matter of speed only, see ``cond_conv_ops``.
"""

import keras
from keras import ops

from keras_routing.layers import cond_conv_ops, deployment
from keras_routing.layers.base import ExpertLayer
from keras_routing.validation import integer, is_integer

USER_STRATEGIES = ("auto", "mixture", "grouped", "patches")


def _tuple(value, name, layer):
    pair = (value, value) if is_integer(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_integer(v) and v >= 1 for v in pair)
    ):
        raise ValueError(f"{layer}: `{name}` must be an integer >= 1 or a pair of them, got {value!r}.")
    return tuple(int(v) for v in pair)


class _CondConvBase(ExpertLayer):
    """What CondConv2D and CondDepthwiseConv2D share: geometry, strategy, the call."""

    kind = None  # "full" or "depthwise": which formulations in cond_conv_ops apply

    def __init__(
        self,
        kernel_size,
        num_experts,
        strides=1,
        padding="valid",
        dilation_rate=1,
        strategy="auto",
        **kwargs,
    ):
        super().__init__(num_experts, **kwargs)
        name = self.__class__.__name__
        self.kernel_size = _tuple(kernel_size, "kernel_size", name)
        self.strides = _tuple(strides, "strides", name)
        self.dilation_rate = _tuple(dilation_rate, "dilation_rate", name)
        if padding not in ("valid", "same"):
            raise ValueError(f"{name}: `padding` must be 'valid' or 'same', got {padding!r}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{name}: `strides` > 1 is not supported together with `dilation_rate` > 1.")
        if strategy not in USER_STRATEGIES:
            raise ValueError(f"{name}: `strategy` must be one of {USER_STRATEGIES}, got {strategy!r}.")
        self.padding = padding
        self.strategy = strategy

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.__class__.__name__}: expected input of rank 4 (batch, height, width, "
                f"channels), got shape {tuple(input_shape)}."
            )
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.__class__.__name__}: the channel dimension must be known.")
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: in_channels})
        self.add_expert_weights(self.expert_kernel_shape(in_channels), self.output_channels(in_channels))
        self.build_routing(input_shape)

    def formulation(self, batch_size):
        """The function of ``cond_conv_ops`` that computes this call."""
        strategy = self.strategy
        if strategy == "auto":
            strategy = cond_conv_ops.choose_strategy(
                self.kind, self.kernel_size, batch_size, strides=self.strides, deployment=deployment.current()
            )
        table = cond_conv_ops.FULL if self.kind == "full" else cond_conv_ops.DEPTHWISE
        return table[strategy]

    def call(self, inputs, routing_weights=None, training=None):
        out_channels = self.output_channels(inputs.shape[-1])
        r = self.resolve_routing_weights(inputs, routing_weights, out_channels, training=training)
        compute = self.formulation(inputs.shape[0])
        outputs = compute(inputs, self.kernel, r, self.strides, self.padding, self.dilation_rate)
        if self.use_bias:
            outputs = outputs + cond_conv_ops.mix_bias(r, self.bias)[:, None, None, :]
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, inputs_shape, routing_weights_shape=None):
        spatial = [
            None if size is None else cond_conv_ops.conv_output_size(size, k, s, d, self.padding)
            for size, k, s, d in zip(inputs_shape[1:3], self.kernel_size, self.strides, self.dilation_rate)
        ]
        return (inputs_shape[0], *spatial, self.output_channels(inputs_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            strategy=self.strategy,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_routing")
class CondConv2D(_CondConvBase):
    """A 2D convolution whose kernel and bias are example-dependent mixtures of experts.

    ``CondConv2D(filters, kernel_size, num_experts)`` holds ``kernel`` of shape
    ``(num_experts, kh, kw, in_channels, filters)`` and ``bias`` ``(num_experts, filters)``, and
    computes ``activation(sum_i r_i * (conv(x, W_i) + b_i))`` with ``r = routing(x)``, or with
    ``routing_weights`` passed to ``call`` (shape ``(batch, num_experts)``, or
    ``(batch, num_experts, filters)`` for per-channel routing).

    ``routing``: ``"sigmoid"`` (the paper's default), ``"softmax"``, a ``Routing`` layer, or
    ``None`` when the routing weights always come from outside.
    ``strategy``: how to compute it, ``"auto"`` (fastest for the backend and batch size),
    ``"mixture"``, ``"grouped"`` or ``"patches"``; all give the same result.
    """

    kind = "full"

    def __init__(self, filters, kernel_size, num_experts, **kwargs):
        self.filters = integer(filters, "filters", owner="CondConv2D")
        super().__init__(kernel_size, num_experts, **kwargs)

    def expert_kernel_shape(self, in_channels):
        return (*self.kernel_size, in_channels, self.filters)

    def output_channels(self, in_channels):
        return self.filters

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="keras_routing")
class CondDepthwiseConv2D(_CondConvBase):
    """A depthwise convolution whose kernel and bias are example-dependent mixtures of experts.

    ``kernel``: ``(num_experts, kh, kw, in_channels, depth_multiplier)``; ``bias``:
    ``(num_experts, in_channels * depth_multiplier)``. Otherwise as ``CondConv2D``.
    """

    kind = "depthwise"

    def __init__(self, kernel_size, num_experts, depth_multiplier=1, **kwargs):
        self.depth_multiplier = integer(depth_multiplier, "depth_multiplier", owner="CondDepthwiseConv2D")
        super().__init__(kernel_size, num_experts, **kwargs)

    def expert_kernel_shape(self, in_channels):
        return (*self.kernel_size, in_channels, self.depth_multiplier)

    def output_channels(self, in_channels):
        return in_channels * self.depth_multiplier

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier}


@keras.saving.register_keras_serializable(package="keras_routing")
class CondDense(ExpertLayer):
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
