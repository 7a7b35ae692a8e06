"""Backbones: networks laid out with ``keras.applications``' layer names whose convolutions, dense
layers and blocks a conditioner builds (``keras_routing.models.conditioners``).

from keras_routing.models import backbones, conditioners
features = backbones.mobilenet_v1_backbone(width=0.5, include_top=False, input_shape=(300, 300, 3),
                                           downsample_padding="same")
c4, c5 = backbones.pyramid(features, strides=(16, 32)).outputs  # 19x19 and 10x10
cc = backbones.resnet_backbone(depth=50, conditioner=conditioners.CondConvConditioner(8))
"""

from keras_routing.models.backbones.features import feature_layers, feature_maps, pyramid
from keras_routing.models.backbones.mobilenet_v1 import mobilenet_v1_backbone
from keras_routing.models.backbones.mobilenet_v2 import mobilenet_v2_backbone
from keras_routing.models.backbones.resnet import resnet_backbone

__all__ = [
    "feature_layers",
    "feature_maps",
    "mobilenet_v1_backbone",
    "mobilenet_v2_backbone",
    "pyramid",
    "resnet_backbone",
]
