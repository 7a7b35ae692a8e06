"""The paper's expert types by name (Ramachandran & Le 2019, sections 4.2 and 4.2.2).

``make_expert("conv5x5", filters=48)`` builds one expert as a Keras layer:

- ``"conv3x3"``, ``"conv5x5"``, ``"conv7x7"``: two stacked square convolutions (``stacked=2``, the
  Omniglot model's "conv 3x3 -> conv 3x3"); ``"conv1x7_7x1"``: a 1x7 then a 7x1 convolution;
- ``"maxpool3x3"``, ``"avgpool3x3"``: 3x3 pooling at stride 1 (``same`` padding);
- ``"identity"``;
- ``"squeeze_excite"``: Hu et al.'s channel re-weighting (``SqueezeExcite``).

Each convolution is followed by GroupNorm and ReLU (``norm="group"``), as in the paper's
Omniglot model; ``norm=None`` leaves them out, for backbones whose own batch norm and ReLU follow
the routed layer (ResNet-50's 3x3 site). Convolution experts output ``filters`` channels; the
others keep their input's channels, so a routed layer mixing both needs input channels equal to
``filters`` (``RoutedExperts`` checks that the experts' output shapes agree).
"""

import keras
from keras import ops

EXPERT_TYPES = (
    "conv3x3",
    "conv5x5",
    "conv7x7",
    "conv1x7_7x1",
    "maxpool3x3",
    "avgpool3x3",
    "identity",
    "squeeze_excite",
)
# The Omniglot model's seven (section 4.2), and ResNet-50's five (section 4.2.2).
OMNIGLOT_EXPERTS = ("conv3x3", "conv5x5", "conv7x7", "conv1x7_7x1", "maxpool3x3", "avgpool3x3", "identity")
RESNET_EXPERTS = ("conv3x3", "conv5x5", "conv1x7_7x1", "maxpool3x3", "squeeze_excite")


@keras.saving.register_keras_serializable(package="keras_routing")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation (Hu et al. 2018): ``x * sigmoid(W2 relu(W1 mean(x)))`` with a
    bottleneck of ``channels // ratio`` units (at least 1)."""

    def __init__(self, ratio=4, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1:
            raise ValueError(f"SqueezeExcite: `ratio` must be an integer >= 1, got {ratio!r}.")
        self.ratio = ratio

    def build(self, input_shape):
        channels = input_shape[-1]
        self.reduce = keras.layers.Dense(
            max(1, channels // self.ratio), activation="relu", dtype=self.dtype_policy
        )
        self.expand = keras.layers.Dense(channels, activation="sigmoid", dtype=self.dtype_policy)
        self.reduce.build((input_shape[0], channels))
        self.expand.build((input_shape[0], max(1, channels // self.ratio)))

    def call(self, inputs):
        squeezed = ops.mean(inputs, axis=tuple(range(1, len(inputs.shape) - 1)))
        scale = self.expand(self.reduce(squeezed))
        return inputs * ops.reshape(scale, (-1,) + (1,) * (len(inputs.shape) - 2) + (inputs.shape[-1],))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


def _groups(filters, groups):
    """The largest divisor of ``filters`` that is at most ``groups`` (GroupNorm needs one)."""
    return max(g for g in range(1, min(groups, filters) + 1) if filters % g == 0)


def make_expert(expert_type, filters=None, *, stacked=2, norm="group", groups=8, name=None, dtype=None):
    """One expert of type ``expert_type`` (one of ``EXPERT_TYPES``) as a Keras layer.

    Args:
        filters: output channels of the convolution experts (the others keep their input's).
        stacked: how many square convolutions a ``convKxK`` expert stacks (2 in the Omniglot
            model, 1 for ResNet-50's 3x3 site).
        norm: ``"group"`` (GroupNorm then ReLU after every convolution) or ``None``.
        groups: GroupNorm's groups (the largest divisor of ``filters`` up to this).
    """
    if expert_type not in EXPERT_TYPES:
        raise ValueError(f"`expert_type` must be one of {EXPERT_TYPES}, got {expert_type!r}.")
    if norm not in ("group", None):
        raise ValueError(f"`norm` must be 'group' or None, got {norm!r}.")
    name = name or expert_type
    if isinstance(dtype, keras.DTypePolicy):
        dtype = dtype.name  # a name: layers without get_config (Identity) auto-serialize it
    if expert_type == "identity":
        return keras.layers.Identity(name=name, dtype=dtype)
    if expert_type == "squeeze_excite":
        return SqueezeExcite(name=name, dtype=dtype)
    if expert_type in ("maxpool3x3", "avgpool3x3"):
        pool = keras.layers.MaxPooling2D if expert_type == "maxpool3x3" else keras.layers.AveragePooling2D
        return pool(3, strides=1, padding="same", name=name, dtype=dtype)
    if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
        raise ValueError(
            f"`filters` must be an integer >= 1 for expert type {expert_type!r}, got {filters!r}."
        )
    if expert_type == "conv1x7_7x1":
        kernels = [(1, 7), (7, 1)]
    else:
        size = int(expert_type[len("conv")])
        kernels = [(size, size)] * stacked
    return ConvExpert(filters, kernels, norm=norm, groups=groups, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_routing")
class ConvExpert(keras.layers.Layer):
    """Convolutions of ``kernels`` (a list of ``(height, width)``), ``filters`` channels each,
    ``same`` padding, each followed by GroupNorm and ReLU when ``norm == "group"`` (then without
    bias, which GroupNorm's offset replaces)."""

    def __init__(self, filters, kernels, *, norm="group", groups=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernels = [tuple(int(v) for v in kernel) for kernel in kernels]
        self.norm = norm
        self.groups = groups
        self.convs, self.norms = [], []
        for i, kernel in enumerate(self.kernels):
            self.convs.append(
                keras.layers.Conv2D(
                    filters,
                    kernel,
                    padding="same",
                    use_bias=norm is None,
                    name=f"conv{i}",
                    dtype=self.dtype_policy,
                )
            )
            if norm == "group":
                self.norms.append(
                    keras.layers.GroupNormalization(
                        _groups(filters, groups), name=f"gn{i}", dtype=self.dtype_policy
                    )
                )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.norms:
                self.norms[i].build(shape)

    def call(self, inputs):
        x = inputs
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = ops.relu(self.norms[i](x))
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernels": [list(k) for k in self.kernels],
            "norm": self.norm,
            "groups": self.groups,
        }
