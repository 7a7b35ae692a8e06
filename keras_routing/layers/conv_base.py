"""The base of conditional 2D convolutions, as Keras's ``BaseConv`` is of its convolutions.

``ConditionalConv`` owns what every conditional convolution shares: the arguments
(``kernel_size``, ``strides``, ``padding``, ``dilation_rate``) and their validation, ``build``
(expert weights, the router, the input spec), ``compute_output_shape`` (with Keras's check that
the output is not empty), ``get_config``, the bias and the activation. A concrete layer
overrides one operation, the mixture op::

    def mixture_op(self, inputs, kernel, routing_weights):
        # sum_i r_i * conv(inputs, kernel[i]), bias excluded

and, when its kernel is not a full convolution's ``(kh, kw, in_channels, filters)`` per
expert, the two geometry declarations ``expert_kernel_shape`` and ``output_channels`` (a
depthwise convolution's output channels follow from its input).

The way the mixture is computed is the layer's inference mode (``strategy``, see
``keras_routing.layers.inference``): read at every call, so it can change on a built model.
"""

import keras

from keras_routing.layers.cond_conv_ops import conv_output_size, mix_bias
from keras_routing.layers.experts import StackedExperts
from keras_routing.layers.inference import InferenceModes
from keras_routing.validation import integer, is_integer

PADDINGS = ("valid", "same")


def _tuple(value, name, layer):
    pair = (value, value) if is_integer(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_integer(v) and v >= 1 for v in pair)
    ):
        raise ValueError(f"{layer}: `{name}` must be an integer >= 1 or a pair of them, got {value!r}.")
    return tuple(int(v) for v in pair)


class ConditionalConv(InferenceModes, StackedExperts):
    """Base of 2D convolutions (channels last) whose kernel and bias are mixtures of experts.

    ``filters`` is the number of output channels, or ``None`` for a layer whose output channels
    follow from its input (it then overrides ``expert_kernel_shape`` and ``output_channels``).
    ``strategy`` is the layer's inference mode: ``"auto"`` here; subclasses list theirs in
    ``inference_modes``. Other arguments as ``StackedExperts``.
    """

    inference_modes = ("auto",)
    inference_argument = "strategy"

    def __init__(
        self,
        filters,
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
        self.filters = integer(filters, "filters", optional=True, owner=name)
        self.kernel_size = _tuple(kernel_size, "kernel_size", name)
        self.strides = _tuple(strides, "strides", name)
        self.dilation_rate = _tuple(dilation_rate, "dilation_rate", name)
        if padding not in PADDINGS:
            raise ValueError(f"{name}: `padding` must be one of {PADDINGS}, got {padding!r}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{name}: `strides` > 1 is not supported together with `dilation_rate` > 1.")
        self.padding = padding
        self.strategy = strategy

    @property
    def strategy(self):
        """How the mixture is computed: this layer's inference mode (an alias of ``inference``)."""
        return self.inference

    @strategy.setter
    def strategy(self, value):
        self.inference = value

    # --- the geometry a subclass declares (defaults: a full convolution) ---------------------

    def expert_kernel_shape(self, in_channels):
        """One expert's kernel shape."""
        return (*self.kernel_size, in_channels, self.filters)

    def output_channels(self, in_channels):
        return self.filters

    # --- the one operation a subclass overrides ----------------------------------------------

    def mixture_op(self, inputs, kernel, routing_weights):
        """``sum_i r_i * conv(inputs, kernel[i])`` (bias excluded): ``inputs`` (batch, h, w, c),
        ``kernel`` (num_experts, *expert_kernel_shape), ``routing_weights`` (batch, n) or
        (batch, n, out_channels). Uses ``self.strides``, ``padding`` and ``dilation_rate``."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement `mixture_op`.")

    # --- shared ---------------------------------------------------------------------------------

    def output_spatial_shape(self, input_shape):
        """The output's height and width (``None`` where the input's is unknown); a
        ``ValueError`` where the input is too small for the kernel, as Keras's ``Conv2D``."""
        spatial = tuple(
            None if size is None else conv_output_size(size, k, s, d, self.padding)
            for size, k, s, d in zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate)
        )
        if any(size is not None and size <= 0 for size in spatial):
            raise ValueError(
                f"{self.__class__.__name__}: Computed output size would be zero or negative. "
                f"Received inputs shape={tuple(input_shape)}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, dilation_rate={self.dilation_rate}, padding={self.padding!r}."
            )
        return spatial

    def build(self, input_shape):
        name = self.__class__.__name__
        if len(input_shape) != 4:
            raise ValueError(
                f"{name}: expected input of rank 4 (batch, height, width, channels), got shape "
                f"{tuple(input_shape)}."
            )
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{name}: the channel dimension must be known.")
        self.output_spatial_shape(input_shape)  # validates, as Keras's BaseConv.build does
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: in_channels})
        self.add_expert_weights(self.expert_kernel_shape(in_channels), self.output_channels(in_channels))
        self.build_routing(input_shape)

    def call(self, inputs, routing_weights=None, training=None):
        # A layer built for unknown sizes meets the concrete ones here (a Python check).
        self.output_spatial_shape(inputs.shape)
        out_channels = self.output_channels(inputs.shape[-1])
        r = self.resolve_routing_weights(inputs, routing_weights, out_channels, training=training)
        outputs = self.mixture_op(inputs, self.kernel, r)
        if self.use_bias:
            outputs = outputs + mix_bias(r, self.bias)[:, None, None, :]
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, inputs_shape, routing_weights_shape=None):
        spatial = self.output_spatial_shape(inputs_shape)
        return (inputs_shape[0], *spatial, self.output_channels(inputs_shape[-1]))

    def get_config(self):
        config = super().get_config()
        if self.filters is not None:
            config["filters"] = self.filters
        config.update(
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            **self.inference_config(),
        )
        return config
