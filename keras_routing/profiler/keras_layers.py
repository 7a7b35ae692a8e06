"""Cost rules of Keras's own layers, counted as the MobileNet and CondConv papers count them.

Convolutions and fully-connected layers cost one multiply-add per weight use; batch
normalization (folded into the convolution at inference), activations, additions, reshapes and
pooling count nothing.
"""

import keras

from keras_routing.profiler.rules import cost_rule, prod

# Layers with no multiply-adds by the papers' convention.
FREE_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in (
        "InputLayer",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "Activation",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "Dropout",
        "SpatialDropout2D",
        "GaussianNoise",
        "Reshape",
        "Flatten",
        "Permute",
        "RepeatVector",
        "Identity",
        "ZeroPadding2D",
        "Cropping2D",
        "UpSampling2D",
        "Resizing",
        "Rescaling",
        "Normalization",
        "CenterCrop",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "MaxPooling2D",
        "AveragePooling2D",
        "MaxPooling1D",
        "AveragePooling1D",
    )
)


@cost_rule(*FREE_LAYERS)
def free(layer, call):
    return 0


def conv_madds(layer, input_shape, output_shape, depthwise=False):
    """Multiply-adds of a (grouped or depthwise) convolution for one example: one per kernel tap
    per output value, over the input channels of its group."""
    kernel = prod(layer.kernel_size)
    if depthwise:
        return prod(output_shape[1:]) * kernel
    return prod(output_shape[1:]) * kernel * input_shape[-1] // getattr(layer, "groups", 1)


@cost_rule(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
def convolution(layer, call):
    return conv_madds(layer, call.input_shapes[0], call.output_shape)


@cost_rule(keras.layers.DepthwiseConv2D)
def depthwise_convolution(layer, call):
    return conv_madds(layer, call.input_shapes[0], call.output_shape, depthwise=True)


@cost_rule(keras.layers.SeparableConv2D)
def separable_convolution(layer, call):
    x, out = call.input_shapes[0], call.output_shape
    depthwise = prod(out[1:3]) * x[-1] * layer.depth_multiplier * prod(layer.kernel_size)
    return depthwise + prod(out[1:]) * x[-1] * layer.depth_multiplier


def dense_madds(input_shape, units):
    return prod(input_shape[1:]) * units


@cost_rule(keras.layers.Dense)
def dense(layer, call):
    return dense_madds(call.input_shapes[0], layer.units)
