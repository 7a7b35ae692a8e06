"""Model factories in the style of ``keras.applications``, plain and CondConv, and their registry.

import keras_routing
model = keras_routing.zoo.cc_mobilenet_v1(width=0.5, experts=8)
keras_routing.zoo.list_models(family="condconv")
keras_routing.zoo.info("cc_resnet50").paper
keras_routing.zoo.get("cc_resnet50", experts=2)

The factories are backbones (``keras_routing.models.backbones``) whose layers a conditioner
(``keras_routing.models.conditioners``) builds: plain or CondConv.
"""

from keras_routing.transforms.upcycle import upcycle
from keras_routing.zoo.deepmoe import (
    DeepMoETask,
    deepmoe_resnet,
    deepmoe_vgg16,
    resnet_baseline,
    vgg16_baseline,
)
from keras_routing.zoo.deepmoe_segmentation import (
    DeepMoESegmentationTask,
    SegmentationTask,
    deepmoe_drn_a50,
    drn_a50,
)
from keras_routing.zoo.gated import gated_resnet, gated_resnet_cifar
from keras_routing.zoo.gated_densenet import exit_report, gated_densenet_cifar
from keras_routing.zoo.mobilenet_v1 import cc_mobilenet_v1, mobilenet_v1
from keras_routing.zoo.mobilenet_v2 import cc_mobilenet_v2, mobilenet_v2
from keras_routing.zoo.registry import (
    FAMILIES,
    TASKS,
    ModelInfo,
    factory,
    families,
    get,
    info,
    list_models,
    preprocessing,
    register,
)
from keras_routing.zoo.resnet import cc_resnet50, resnet50
from keras_routing.zoo.routing import routing_convnet, routing_mlp_mnist

__all__ = [
    "DeepMoETask",
    "deepmoe_resnet",
    "deepmoe_vgg16",
    "resnet_baseline",
    "vgg16_baseline",
    "DeepMoESegmentationTask",
    "SegmentationTask",
    "deepmoe_drn_a50",
    "drn_a50",
    "FAMILIES",
    "ModelInfo",
    "TASKS",
    "cc_mobilenet_v1",
    "cc_mobilenet_v2",
    "cc_resnet50",
    "factory",
    "families",
    "exit_report",
    "gated_densenet_cifar",
    "gated_resnet",
    "gated_resnet_cifar",
    "get",
    "info",
    "list_models",
    "mobilenet_v1",
    "mobilenet_v2",
    "preprocessing",
    "register",
    "resnet50",
    "routing_convnet",
    "routing_mlp_mnist",
    "upcycle",
]
