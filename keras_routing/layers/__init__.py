"""Conditional-computation layers. Every layer here runs on TensorFlow, JAX and PyTorch.

The shared bases: ``Router`` (a function of the input that says how much of what runs),
``StackedExperts`` (weights stacked along an expert axis, mixed by routing weights),
``ConditionalConv`` (a conditional 2D convolution that overrides one mixture op) and
``InferenceModes`` / ``set_inference`` (inference behaviour chosen on a trained model).
"""

from keras_routing.layers.channel_gates import ChannelGate, ShallowEmbeddingGate
from keras_routing.layers.cond_conv import CondConv2D, CondDense, CondDepthwiseConv2D
from keras_routing.layers.conv_base import ConditionalConv
from keras_routing.layers.early_exit import EarlyExit, ExitGate, ExitTargetLoss
from keras_routing.layers.experts import StackedExperts
from keras_routing.layers.gated_residual import BypassGate, GatedResidual, GateTargetLoss
from keras_routing.layers.inference import InferenceModes, set_inference
from keras_routing.layers.routed_experts import NoisyTopKRouter, RoutedExperts
from keras_routing.layers.router import Router
from keras_routing.layers.routing import Routing

__all__ = [
    "ChannelGate",
    "ShallowEmbeddingGate",
    "BypassGate",
    "GateTargetLoss",
    "EarlyExit",
    "ExitGate",
    "ExitTargetLoss",
    "GatedResidual",
    "CondConv2D",
    "CondDense",
    "CondDepthwiseConv2D",
    "ConditionalConv",
    "InferenceModes",
    "NoisyTopKRouter",
    "RoutedExperts",
    "Router",
    "Routing",
    "StackedExperts",
    "set_inference",
]
