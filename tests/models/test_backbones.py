"""Backbones with conditioner hooks: every site reaches the conditioner, plain backbones are
``keras.applications``' networks, and the multi-scale feature maps have SSD300's sizes."""

import math

import keras
import numpy as np
import pytest

from keras_routing.layers import CondConv2D
from keras_routing.models import backbones
from keras_routing.models.conditioners import CondConvConditioner, Plain

SMALL = dict(input_shape=(32, 32, 3), classes=10)


class Recorder(Plain):
    """Plain layers, and a log of every call a backbone makes: (call, site, layer name)."""

    def __init__(self):
        self.calls = []

    def start_block(self, x, *, site):
        self.calls.append(("start_block", site, site.block))

    def conv(self, x, filters, kernel_size, *, name, site, **kwargs):
        self.calls.append(("conv", site, name))
        return super().conv(x, filters, kernel_size, name=name, site=site, **kwargs)

    def depthwise(self, x, *, name, site, **kwargs):
        self.calls.append(("depthwise", site, name))
        return super().depthwise(x, name=name, site=site, **kwargs)

    def dense(self, x, units, *, name, site, **kwargs):
        self.calls.append(("dense", site, name))
        return super().dense(x, units, name=name, site=site, **kwargs)

    def block(self, x, residual, *, shortcut, name, site):
        self.calls.append(("block", site, name))
        return super().block(x, residual, shortcut=shortcut, name=name, site=site)

    def count(self, call):
        return sum(1 for c, _, _ in self.calls if c == call)

    def sites(self, role):
        return [site for call, site, _ in self.calls if call != "start_block" and site.role == role]


def _count(model, layer_type):
    return sum(1 for layer in model.layers if type(layer) is layer_type)


BACKBONES = [
    ("mobilenet_v1", backbones.mobilenet_v1_backbone, dict(width=0.5), "MobileNet", dict(alpha=0.5)),
    ("mobilenet_v2", backbones.mobilenet_v2_backbone, dict(width=0.5), "MobileNetV2", dict(alpha=0.5)),
    ("resnet50", backbones.resnet_backbone, {}, "ResNet50", {}),
    ("resnet101", backbones.resnet_backbone, dict(depth=101), "ResNet101", {}),
]


@pytest.mark.parametrize(
    "name,backbone,kwargs,application,app_kwargs", BACKBONES, ids=[b[0] for b in BACKBONES]
)
def test_every_layer_and_block_reaches_the_conditioner(name, backbone, kwargs, application, app_kwargs):
    recorder = Recorder()
    backbone(conditioner=recorder, **kwargs, **SMALL)
    reference = getattr(keras.applications, application)(weights=None, **SMALL, **app_kwargs)
    # One call per conv / depthwise / dense layer of keras.applications' network, one block() per
    # skip connection (its Add layers), one start_block per block: stem, blocks, head, classifier.
    assert recorder.count("conv") == _count(reference, keras.layers.Conv2D)
    assert recorder.count("depthwise") == _count(reference, keras.layers.DepthwiseConv2D)
    assert recorder.count("dense") == _count(reference, keras.layers.Dense)
    assert recorder.count("block") == _count(reference, keras.layers.Add)
    expected_blocks = {"mobilenet_v1": 1 + 13 + 1, "mobilenet_v2": 1 + 17 + 2, "resnet50": 1 + 16 + 1}
    expected_blocks["resnet101"] = 1 + (3 + 4 + 23 + 3) + 1
    starts = [site for call, site, _ in recorder.calls if call == "start_block"]
    assert len(starts) == expected_blocks[name]
    assert [site.index for site in starts] == list(range(1, len(starts) + 1))
    assert starts[0].role == "stem" and starts[-1].role == "classifier"
    # Each block announces exactly the layers it then builds, in order; the layers carry its index.
    announced = [layer for site in starts for layer in site.layers]
    built = [site for call, site, _ in recorder.calls if call in ("conv", "depthwise", "dense")]
    assert announced == built
    # Output stride 2 ** stage: 32 at the last block, 2 at the stem.
    assert starts[0].stage == 1 and starts[-1].stage == 5
    assert sum(site.downsamples for site in starts[1:]) == (3 if name.startswith("resnet") else 4)


def test_mobilenet_v1_sites_follow_the_papers_numbering():
    recorder = Recorder()
    backbones.mobilenet_v1_backbone(width=0.25, conditioner=recorder, **SMALL)
    layers = [
        (call, site.index, site.role, name) for call, site, name in recorder.calls if call != "start_block"
    ]
    assert layers[0] == ("conv", 1, "stem", "conv1")
    assert layers[1:3] == [("depthwise", 2, "depthwise", "conv_dw_1"), ("conv", 2, "pointwise", "conv_pw_1")]
    assert layers[-1] == ("conv", 15, "classifier", "conv_preds")
    # keras.applications' stride-2 blocks are 2, 4, 6 and 12 (paper layers 3, 5, 7, 13).
    assert [site.index for site in recorder.sites("depthwise") if site.downsamples] == [3, 5, 7, 13]


def test_resnet_sites_name_the_bottleneck_roles():
    for stride_on, downsampling_3x3 in (("1x1", 0), ("3x3", 3)):
        recorder = Recorder()
        backbones.resnet_backbone(conditioner=recorder, stride_on=stride_on, **SMALL)
        three = recorder.sites("bottleneck_3x3")
        assert len(three) == 16 and sum(site.downsamples for site in three) == downsampling_3x3
        assert len(recorder.sites("shortcut")) == 4  # the first block of each stage projects
        assert [s.block for s in recorder.sites("shortcut")] == [f"conv{n}_block1" for n in (2, 3, 4, 5)]


def test_a_predicate_of_sites_chooses_the_condconv_layers():
    # The routing family's choice: the 3x3 convolutions that keep the resolution.
    def which(site):
        return site.role == "bottleneck_3x3" and not site.downsamples

    conditioner = CondConvConditioner(2, which=which)
    model = backbones.resnet_backbone(conditioner=conditioner, stride_on="3x3", **SMALL)
    cond = [layer.name for layer in model.layers if isinstance(layer, CondConv2D)]
    blocks = [(2, 3), (3, 4), (4, 6), (5, 3)]
    expected = [f"conv{s}_block{b}_2_conv" for s, n in blocks for b in range(1, n + 1) if s == 2 or b > 1]
    assert sorted(cond) == sorted(expected)
    routings = [layer.name for layer in model.layers if type(layer).__name__ == "Routing"]
    assert sorted(routings) == sorted(name.rsplit("_", 2)[0] + "_routing" for name in expected)


@pytest.mark.parametrize(
    "backbone,kwargs,application,app_kwargs",
    [
        (backbones.mobilenet_v1_backbone, dict(width=0.5), "MobileNet", dict(alpha=0.5)),
        (backbones.mobilenet_v2_backbone, dict(width=0.75), "MobileNetV2", dict(alpha=0.75)),
        (backbones.resnet_backbone, {}, "ResNet50", {}),
        (backbones.resnet_backbone, dict(depth=152), "ResNet152", {}),
    ],
)
@pytest.mark.parametrize("include_top", [True, False])
def test_plain_backbone_is_keras_applications_network(backbone, kwargs, application, app_kwargs, include_top):
    ours = backbone(include_top=include_top, **kwargs, **SMALL)
    reference = getattr(keras.applications, application)(
        weights=None, include_top=include_top, **SMALL, **app_kwargs
    )

    def layers(model):
        # Unnamed layers (Keras numbers them) and the input are left out.
        auto = ("input_layer", "global_average_pooling2d", "global_max_pooling2d")
        return [
            (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers
            if not layer.name.startswith(auto)
        ]

    assert layers(ours) == layers(reference)
    assert ours.output.shape == reference.output.shape


def _after(size, stride, padding):
    """Output size of a 3x3 stride-2 convolution: keras.applications pads bottom/right by 1."""
    return (size + 1 - 3) // stride + 1 if padding == "applications" else math.ceil(size / stride)


@pytest.mark.parametrize("padding", ["same", "applications"])
def test_mobilenet_v1_feature_maps_at_300(padding):
    width = 0.25
    model = backbones.mobilenet_v1_backbone(
        width=width, include_top=False, input_shape=(300, 300, 3), downsample_padding=padding
    )
    size = math.ceil(300 / 2)  # the first convolution pads "same"
    sizes = {2: size}
    for stride in (4, 8, 16, 32):
        size = _after(size, 2, padding)
        sizes[stride] = size
    maps = backbones.feature_maps(model)
    assert {s: tuple(t.shape) for s, t in maps.items()} == {
        2: (None, sizes[2], sizes[2], 16),
        4: (None, sizes[4], sizes[4], 32),
        8: (None, sizes[8], sizes[8], 64),
        16: (None, sizes[16], sizes[16], 128),
        32: (None, sizes[32], sizes[32], 256),
    }
    if padding == "same":
        assert (sizes[16], sizes[32]) == (19, 10)  # SSD300's maps
    else:
        # keras.applications' own MobileNet at 300x300 has the same (smaller) maps.
        reference = keras.applications.MobileNet(
            weights=None, include_top=False, input_shape=(300, 300, 3), alpha=width
        )
        assert reference.get_layer("conv_pw_11_relu").output.shape[1:3] == (sizes[16], sizes[16])
    assert maps[16] is model.get_layer("conv_pw_11_relu").output
    assert maps[32] is model.get_layer("conv_pw_13_relu").output


def test_pyramid_runs_at_300():
    model = backbones.mobilenet_v1_backbone(
        width=0.25, include_top=False, input_shape=(300, 300, 3), downsample_padding="same"
    )
    pyramid = backbones.pyramid(model, strides=(16, 32))
    c4, c5 = pyramid(np.zeros((1, 300, 300, 3), "float32"))
    assert tuple(c4.shape) == (1, 19, 19, 128) and tuple(c5.shape) == (1, 10, 10, 256)
    assert len(pyramid.weights) == len(model.weights)  # the backbone's layers, shared


@pytest.mark.parametrize(
    "backbone,kwargs,channels",
    [
        (backbones.mobilenet_v2_backbone, dict(width=1.0), (96, 1280)),
        (backbones.resnet_backbone, {}, (1024, 2048)),
        (
            backbones.resnet_backbone,
            dict(depth=101, conditioner=CondConvConditioner(2, which=lambda site: site.stage == 5)),
            (1024, 2048),
        ),
    ],
)
def test_other_backbones_feature_maps_at_300(backbone, kwargs, channels):
    model = backbone(include_top=False, input_shape=(300, 300, 3), **kwargs)
    maps = backbones.feature_maps(model, strides=(16, 32))
    assert tuple(maps[16].shape) == (None, 19, 19, channels[0])  # ceil(300 / 16)
    assert tuple(maps[32].shape) == (None, 10, 10, channels[1])  # ceil(300 / 32)


def test_feature_maps_of_keras_applications_models():
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    maps = backbones.feature_maps(reference, strides=(4, 8, 16, 32))
    assert [tuple(t.shape[1:3]) for t in maps.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert backbones.feature_layers(reference)[16] == "conv4_block6_out"


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="`conditioner`"):
        backbones.mobilenet_v1_backbone(conditioner="condconv", **SMALL)
    with pytest.raises(ValueError, match="`downsample_padding`"):
        backbones.mobilenet_v2_backbone(downsample_padding="valid", **SMALL)
    with pytest.raises(ValueError, match="`depth`"):
        backbones.resnet_backbone(depth=34, **SMALL)
    with pytest.raises(ValueError, match="`stride_on`"):
        backbones.resnet_backbone(stride_on="7x7", **SMALL)
    with pytest.raises(ValueError, match="`experts`"):
        CondConvConditioner(0)
    with pytest.raises(ValueError, match="`strides`"):
        backbones.feature_maps(backbones.mobilenet_v1_backbone(width=0.25, **SMALL), strides=(64,))
    with pytest.raises(ValueError, match="`model`"):
        backbones.feature_maps(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    with pytest.raises(TypeError):  # keyword-only
        backbones.mobilenet_v1_backbone(0.5)
