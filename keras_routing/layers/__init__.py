"""Conditional-computation layers. Every layer here runs on TensorFlow, JAX and PyTorch."""

from keras_routing.layers.cond_conv import CondConv2D, CondDense, CondDepthwiseConv2D
from keras_routing.layers.routing import Routing

__all__ = ["CondConv2D", "CondDense", "CondDepthwiseConv2D", "Routing"]
