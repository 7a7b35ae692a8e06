"""Start a CondConv model from a trained plain model ("upcycling").

Every layer the two models share by name gets the baseline's weights. Each CondConv layer's
experts start from the baseline's kernel, and its routing function starts constant (logits
kernel and bias zero, so ``r_i = sigmoid(0) = 1/2`` or ``softmax = 1/n`` for every input).
Scaling the experts by ``1 / sum_i r_i`` then makes the mixed kernel equal the baseline's, so
before any training the CondConv model computes exactly what the baseline computes.

Identical experts would stay identical under gradient descent (each receives the same gradient
while the routing is constant), so each expert gets a little noise, zero-mean across experts so
that the mixture is still exactly the baseline's kernel.

The model is changed in place and no layer is created, so it saves and reloads as it was built.
"""

import numpy as np

import keras

from keras_routing.layers.experts import StackedExperts
from keras_routing.layers.routing import Routing
from keras_routing.transforms import _graph


def _routing_feeding(layer):
    """The Routing layer whose weights ``layer`` mixes its experts with."""
    if layer.routing is not None:
        return layer.routing
    source = _graph.argument_producer(layer, "routing_weights", 1)
    if not isinstance(source, Routing):
        raise ValueError(
            f"upcycle: cannot tell which routing function drives layer '{layer.name}'; "
            "it must take its `routing_weights` from a Routing layer."
        )
    return source


def _constant_routing_sum(routing):
    """``sum_i r_i`` of a routing function whose logits are all zero."""
    return 0.5 * routing.num_experts if routing.activation == "sigmoid" else 1.0


def _load_baseline(baseline):
    if isinstance(baseline, keras.Model):
        return baseline
    return keras.saving.load_model(baseline, safe_mode=True)


def upcycle(model, baseline, noise=0.1, seed=0):
    """Copy ``baseline``'s weights into the CondConv ``model``, experts included; returns ``model``.

    Args:
        model: a CondConv model (e.g. ``cc_mobilenet_v1(width=0.5)``).
        baseline: the trained plain model of the same architecture and width (e.g.
            ``mobilenet_v1(width=0.5)``, or weights from ``keras.applications.MobileNet``
            loaded into it), or the path of one saved as ``.keras``.
        noise: standard deviation of the per-expert noise, relative to the kernel's.
        seed: seed of that noise.
    """
    baseline = _load_baseline(baseline)
    source = {layer.name: layer for layer in baseline.layers}
    rng = np.random.default_rng(seed)
    routings = [layer for layer in model.layers if isinstance(layer, Routing)]
    for routing in routings:
        routing.logits.kernel.assign(np.zeros(routing.logits.kernel.shape, "float32"))
        routing.logits.bias.assign(np.zeros(routing.logits.bias.shape, "float32"))
    for layer in model.layers:
        if not layer.weights or isinstance(layer, Routing):
            continue
        if layer.name not in source:
            raise ValueError(
                f"upcycle: the baseline '{baseline.name}' has no layer named '{layer.name}'; "
                "pass the plain model of the same architecture (e.g. mobilenet_v1 for cc_mobilenet_v1)."
            )
        weights = source[layer.name].get_weights()
        if isinstance(layer, StackedExperts):
            _upcycle_experts(layer, weights, rng, noise)
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        if [w.shape for w in weights] != expected:
            raise ValueError(
                f"upcycle: layer '{layer.name}' has weights of shapes {expected} but the baseline's "
                f"are {[w.shape for w in weights]}: the baseline must have the same width and classes."
            )
        layer.set_weights(weights)
    return model


def _upcycle_experts(layer, weights, rng, noise):
    n = layer.num_experts
    expert_shape = tuple(layer.kernel.shape[1:])
    kernel = weights[0]
    if kernel.size != int(np.prod(expert_shape)):
        raise ValueError(
            f"upcycle: layer '{layer.name}' has experts of shape {expert_shape} but the baseline's "
            f"kernel has shape {kernel.shape}: the baseline must have the same width and classes."
        )
    scale = 1.0 / _constant_routing_sum(_routing_feeding(layer))
    kernel = kernel.reshape(expert_shape) * scale
    perturbation = rng.normal(size=(n,) + expert_shape) * noise * kernel.std()
    perturbation -= perturbation.mean(axis=0, keepdims=True)  # the mixture stays the baseline's
    layer.kernel.assign((kernel[None] + perturbation).astype("float32"))
    if layer.use_bias:
        bias = weights[1] if len(weights) > 1 else np.zeros(layer.bias.shape[1:], "float32")
        layer.bias.assign(np.broadcast_to(bias * scale, layer.bias.shape).astype("float32"))
