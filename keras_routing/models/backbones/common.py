"""What every backbone shares: the checked image input, batch normalisation, the pooling of
``keras.applications`` without the top, and the backbone's arguments."""

import keras

from keras_routing.models.conditioners import Conditioner, Plain, Site
from keras_routing.validation import fraction, integer, is_integer, number

DOWNSAMPLE_PADDING = ("applications", "same")


def image_input(input_shape, default_size=224, min_size=32):
    """``keras.Input`` for ``input_shape`` (default ``(224, 224, 3)``), checked."""
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    input_shape = tuple(input_shape)
    if any(size is not None and (not is_integer(size) or size < min_size) for size in input_shape[:2]):
        raise ValueError(f"`input_shape` must be at least {min_size}x{min_size}, got {input_shape}.")
    if not is_integer(input_shape[2]) or input_shape[2] < 1:
        raise ValueError(f"`input_shape` must have a known number of channels >= 1, got {input_shape}.")
    return keras.Input(tuple(None if size is None else int(size) for size in input_shape))


def check_arguments(*, pooling, classes, dropout, bn_momentum, width=1.0, narrowest=None):
    """The arguments every backbone checks the same way. ``narrowest``: the channels of the
    narrowest layer at width 1.0 when ``width`` scales channels by truncation (MobileNetV1)."""
    number(width, "width", above=0)
    if narrowest is not None and int(narrowest * width) < 1:
        raise ValueError(
            f"`width` must leave every layer at least one channel (width >= 1/{narrowest} = "
            f"{1 / narrowest:g}: the narrowest layer has {narrowest} channels at width 1), got {width!r}."
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max', got {pooling!r}.")
    integer(classes, "classes")
    fraction(dropout, "dropout")
    number(bn_momentum, "bn_momentum", at_least=0, at_most=1)


def check_conditioner(conditioner):
    """``conditioner`` or, for ``None``, a ``Plain`` one."""
    if conditioner is None:
        return Plain()
    if not isinstance(conditioner, Conditioner):
        raise ValueError(
            f"`conditioner` must be a keras_routing.models.conditioners.Conditioner, got {conditioner!r}."
        )
    return conditioner


def check_downsample_padding(downsample_padding):
    if downsample_padding not in DOWNSAMPLE_PADDING:
        raise ValueError(
            f"`downsample_padding` must be one of {DOWNSAMPLE_PADDING}, got {downsample_padding!r}."
        )


def batch_norm(x, name, momentum, epsilon):
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)(x)


def pooling(x, pooling, pool_names=(None, None)):
    """``keras.applications``' pooling of the features when the top is left out."""
    average, maximum = pool_names
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=average)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=maximum)(x)
    return x


def dense_classifier(x, conditioner, classes, activation, dropout, index, stage, pool_name=None):
    """Global average pooling, dropout and the classifier ``predictions`` (MobileNetV2, ResNet)."""
    x = keras.layers.GlobalAveragePooling2D(name=pool_name)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    head = Site("block", "classifier", index, "predictions", stage)
    site = head.layer("dense", "classifier")
    conditioner.start_block(x, site=head.holding(site))
    return conditioner.dense(x, classes, name="predictions", site=site, activation=activation)
