"""Multi-scale feature maps of a backbone, by output stride (what detection and segmentation heads
take): found by ``keras.applications`` layer names, so they work on our plain and conditioned
backbones and on ``keras.applications``' own models alike."""

import keras

from keras_routing.models.backbones import mobilenet_v1, mobilenet_v2, resnet

_FINDERS = (mobilenet_v1.feature_layers, mobilenet_v2.feature_layers, resnet.feature_layers)


def feature_layers(model):
    """``{output stride: layer name}``: the last layer of ``model`` at strides 2, 4, 8, 16, 32."""
    names = [layer.name for layer in model.layers]
    for find in _FINDERS:
        layers = find(names)
        if layers is not None:
            return layers
    raise ValueError(
        f"`model` {model.name!r} is not a MobileNetV1, MobileNetV2 or ResNet backbone: its feature maps "
        "are found by keras.applications layer names."
    )


def feature_maps(model, strides=(2, 4, 8, 16, 32)):
    """``{stride: symbolic tensor}``: the feature maps of ``model`` at each output stride in
    ``strides`` (at 300x300, MobileNetV1's stride-16 and -32 maps are ``conv_pw_11_relu`` and
    ``conv_pw_13_relu``), to build a multi-output model from."""
    layers = feature_layers(model)
    unknown = [stride for stride in strides if stride not in layers]
    if unknown:
        raise ValueError(f"`strides` must be among {tuple(layers)}, got {tuple(strides)!r}.")
    return {stride: model.get_layer(layers[stride]).output for stride in strides}


def pyramid(model, strides=(16, 32), name=None):
    """A model from ``model``'s input to its feature maps at ``strides`` (a list, in that order)."""
    maps = feature_maps(model, strides)
    return keras.Model(
        model.input, [maps[stride] for stride in strides], name=name or f"{model.name}_pyramid"
    )
