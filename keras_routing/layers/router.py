"""The base of every router: a function of the input that says how much of what runs.

CondConv's soft ``Routing`` (a weight per expert), noisy top-k routing (``k`` of ``n`` experts),
a shallow embedding's per-layer channel gates and a residual block's bypass gate are all
routers. What they share, and all this base holds:

- ``num_experts``: how many things it routes over (experts, channels, branches);
- input-rank handling: rank > 2 inputs (images) reduce to global features by averaging every
  axis but the batch and the channels; rank 2 inputs already are global features;
- the dtype-policy rule below;
- ``get_config``.

What a router returns (dense weights, ``(indices, gates)``, a list of gates) and the losses it
adds are its own.

The dtype-policy rule. A router that drives another layer (``StackedExperts(routing=router)``)
computes in that layer's policy, so that a ``mixed_bfloat16`` CondConv layer routes in
bfloat16 as Keras's own sublayers do:

- a router given by name or as a config adopts the owning layer's policy: a config saved with
  the default policy (what ``get_config`` writes) is no request for float32;
- a router instance constructed without a ``dtype`` (or with the global default policy,
  ``keras.config.dtype_policy()``) adopts it too;
- a router constructed with an explicit non-default policy keeps its own (a user asked for
  it), and the owning layer casts its outputs to its own compute dtype.

A router's configuration holds the policy it ends with, so a saved layer reloads the same:
the adopted policy is the owner's (adopted again, or kept as its own, it is the same), and a
kept policy is non-default (kept again).
"""

import keras
from keras import ops

from keras_routing.validation import integer


class Router(keras.layers.Layer):
    """Base of layers that compute, from an input, how much of each of ``num_experts`` runs."""

    def __init__(self, num_experts, **kwargs):
        dtype = kwargs.get("dtype")
        super().__init__(**kwargs)
        self.num_experts = integer(num_experts, "num_experts", owner=self.__class__.__name__)
        # Decided now, against the global default at construction: what "default" meant here.
        self._follows_owner_dtype = (
            dtype is None or self.dtype_policy.name == keras.config.dtype_policy().name
        )

    def adopt_dtype_policy(self, policy):
        """Take ``policy`` (the owning layer's) unless this router keeps its own; see the module
        docstring. Sublayers that share this router's policy follow it; a sublayer given its own
        policy keeps it. Returns whether the router now computes in ``policy``."""
        policy = keras.dtype_policies.get(policy)
        if self.dtype_policy.name == policy.name:
            return True
        if not self._follows_owner_dtype:
            return False
        if self.built and self.variable_dtype != policy.variable_dtype:
            return False  # its weights exist in another dtype: keep them, cast the outputs
        old = self.dtype_policy.name
        for layer in self._flatten_layers(include_self=True):
            if layer.dtype_policy.name == old:
                layer.dtype_policy = policy
        return True

    def check_input_shape(self, input_shape, min_rank=2):
        """A ``ValueError`` unless ``input_shape`` has rank >= ``min_rank`` and known channels."""
        if len(input_shape) < min_rank or input_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__}: expected an input of rank >= {min_rank} with a known "
                f"last (channels) axis, got shape {tuple(input_shape)}."
            )

    def global_features_shape(self, input_shape):
        """``(batch, channels)``: the shape of ``global_features`` of an input of this shape."""
        return (input_shape[0], input_shape[-1])

    def global_features(self, inputs):
        """Rank > 2 inputs averaged over every axis but the batch and the channels (global
        average pooling, channels last); rank 2 inputs as they are."""
        if len(inputs.shape) > 2:
            return ops.mean(inputs, axis=tuple(range(1, len(inputs.shape) - 1)))
        return inputs

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}
