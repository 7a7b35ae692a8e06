"""A conditional branch that runs a layer which may write its state: ``cond_with_state``.

A gated block or an early exit runs its function under ``keras.ops.cond`` at inference, so
that a closed gate skips it. That function may hold layers that write non-trainable
variables in inference (the routing statistics of ``keras_routing.metrics``, seed generators):
TensorFlow and PyTorch keep such writes in the branch taken, but JAX's ``lax.cond`` traces its
branches, and a write inside one leaks a tracer (``UnexpectedTracerError``). There the state is
threaded through the branches instead.
"""

import keras
from keras import ops


def cond_with_state(pred, true_fn, false_fn, layer):
    """``keras.ops.cond(pred, true_fn, false_fn)`` where ``true_fn`` runs ``layer``, which may write
    its non-trainable variables (statistics, seed generators) in inference.

    TensorFlow (``tf.cond``) and PyTorch (a Python ``if``) keep such writes in the branch taken;
    JAX's ``lax.cond`` traces its branches, and a write inside one would leak a tracer, so there
    the state is threaded through the branches (``threaded_cond``, the portable form; the test
    checks that the two agree)."""
    if keras.backend.backend() in ("tensorflow", "torch"):
        return ops.cond(pred, true_fn, false_fn)
    return threaded_cond(pred, true_fn, false_fn, layer)


def threaded_cond(pred, true_fn, false_fn, layer):
    """``cond_with_state`` on every backend: ``true_fn`` runs in a ``StatelessScope`` holding the
    current value of each of ``layer``'s variables, returns the new values of its non-trainable
    ones beside its outputs (``false_fn`` returns them unchanged), and they are assigned after."""
    variables = list(layer.variables)
    state = list(layer.non_trainable_variables)

    def run():
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in variables]) as scope:
            outputs = true_fn()
        return outputs, [scope.get_current_value(v) for v in state]

    def skip():
        return false_fn(), [ops.convert_to_tensor(v.value) for v in state]

    outputs, values = ops.cond(pred, run, skip)
    for variable, value in zip(state, values):
        variable.assign(value)
    return outputs
