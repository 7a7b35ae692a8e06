"""How ``RoutedExperts`` runs its experts on the examples routed to them: dense or sparse dispatch.

``gates`` is ``(batch, n)`` with ``k`` non-zeros per row (top-k routing); each function returns
``sum_i gates[:, i] * expert_i(x)`` computed one way, and the gates actually used.

- ``dense``: every expert on every example, weighted (the reference; cost n experts).
- ``sparse_exact``: each expert on exactly the examples whose gate is non-zero (a gather, the
  expert, a scatter-add back). The number of examples per expert is data dependent, so this runs
  eagerly only (PyTorch, eager TensorFlow and JAX).
- ``sparse_capacity``: under a compiled function (``jax.jit``, ``tf.function``) shapes must be
  fixed, so each expert takes at most ``capacity`` examples (GShard / Switch Transformer):
  its examples with the largest gates. An example routed to an expert that is full loses that
  expert; its remaining gates are renormalised to sum to 1 ("falls back to the remaining
  experts"), and an example that lost all of them outputs zeros. The dropped assignments are
  counted (``keras_routing.metrics.dropped_fraction``). With ``capacity >= batch`` nothing is
  dropped and the result equals ``dense`` (to rounding), gradient included.

``is_traced(x)`` says which sparse form applies: the one backend-specific function here.
"""

import math

import keras
from keras import ops

from keras_routing.layers.conditional import cond_with_state


def is_traced(x):
    """Whether ``x`` is a tensor being traced into a compiled function (shapes must be static)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    return False  # PyTorch (and NumPy) run eagerly


def capacity(batch, k, num_experts, capacity_factor):
    """Examples per expert under ``jit``: ``ceil(capacity_factor * k * batch / num_experts)``, at
    most ``batch``. ``batch`` a Python int (static) or a scalar tensor (TensorFlow, unknown batch)."""
    if isinstance(batch, int):
        return max(1, min(batch, math.ceil(capacity_factor * k * batch / num_experts)))
    wanted = ops.cast(ops.ceil(capacity_factor * k * ops.cast(batch, "float32") / num_experts), "int32")
    return ops.maximum(ops.minimum(wanted, ops.cast(batch, "int32")), 1)


def _weighted(outputs, weights):
    """``outputs`` (examples, ...) scaled per example by ``weights`` (examples,)."""
    weights = ops.cast(weights, outputs.dtype)
    return outputs * ops.reshape(weights, (-1,) + (1,) * (len(outputs.shape) - 1))


def dense(experts, inputs, gates, call_expert):
    """Every expert on every example, weighted by its gates."""
    total = None
    for i, expert in enumerate(experts):
        term = _weighted(call_expert(expert, inputs), gates[:, i])
        total = term if total is None else total + term
    return total, gates


def _scatter_add(total, indices, values, shape):
    update = ops.scatter(ops.expand_dims(indices, -1), values, shape)
    return update if total is None else total + update


def sparse_exact(experts, inputs, gates, call_expert, output_shape):
    """Each expert on exactly its routed examples (eager only: the counts are data dependent)."""
    shape = (ops.shape(inputs)[0],) + tuple(output_shape[1:])
    total = None
    for i, expert in enumerate(experts):
        (indices,) = ops.nonzero(gates[:, i])
        if int(ops.shape(indices)[0]) == 0:
            continue  # no example chose this expert: it does not run
        indices = ops.cast(indices, "int32")
        outputs = call_expert(expert, ops.take(inputs, indices, axis=0))
        values = _weighted(outputs, ops.take(gates[:, i], indices, axis=0))
        total = _scatter_add(total, indices, values, shape)
    if total is None:  # an empty batch
        total = ops.zeros(shape, inputs.dtype)
    return total, gates


def sparse_capacity(
    experts, inputs, gates, call_expert, output_shape, capacity_per_expert, skip_unused=False
):
    """Each expert on at most ``capacity_per_expert`` examples, its largest gates (see the module
    docstring). Returns the output and the gates used (the kept, renormalised ones).

    ``skip_unused`` (inference): an expert that no example of the batch kept runs under a
    conditional (``keras.ops.cond``: one branch executed under XLA and TF graphs, LiteRT's ``IF``)
    that skips it, so that at batch 1 only the ``k`` chosen experts run, not all ``n`` at
    capacity 1. Not in training: every expert runs there anyway at realistic batches."""
    inputs, gates = ops.convert_to_tensor(inputs), ops.convert_to_tensor(gates)
    batch = ops.shape(inputs)[0]
    shape = (batch,) + tuple(output_shape[1:])
    routed = ops.cast(ops.not_equal(gates, 0), gates.dtype)
    chosen, kept_columns = [], []
    for i in range(len(experts)):
        values, indices = ops.top_k(gates[:, i], capacity_per_expert, sorted=False)
        in_capacity = ops.cast(ops.greater(values, 0), gates.dtype)  # a zero gate is no example
        kept = ops.scatter(ops.expand_dims(indices, -1), in_capacity, (batch,))
        chosen.append(indices)
        kept_columns.append(kept)
    kept_mask = ops.stack(kept_columns, axis=1) * routed
    kept_gates = gates * kept_mask
    # Renormalise only the rows that lost an expert, so that nothing dropped means dense's gates.
    lost = ops.any(ops.not_equal(kept_mask, routed), axis=1, keepdims=True)
    row_sum = ops.sum(kept_gates, axis=1, keepdims=True)
    renormalised = kept_gates / ops.maximum(row_sum, ops.cast(1e-9, gates.dtype))
    used = ops.where(lost, renormalised, gates)
    total = None
    for i, expert in enumerate(experts):
        indices = chosen[i]
        selected = ops.take(inputs, indices, axis=0)
        if skip_unused:
            outputs = _run_if_kept(expert, selected, kept_columns[i], call_expert, output_shape)
        else:
            outputs = call_expert(expert, selected)
        values = _weighted(outputs, ops.take(used[:, i], indices, axis=0))
        total = _scatter_add(total, indices, values, shape)
    return total, used


def _run_if_kept(expert, selected, kept, call_expert, output_shape):
    """``call_expert(expert, selected)`` when any example kept this expert, zeros otherwise (their
    weights are zero then: the zeros are never seen)."""
    zeros_shape = (ops.shape(selected)[0],) + tuple(output_shape[1:])
    return cond_with_state(
        ops.any(ops.greater(kept, 0)),
        lambda: call_expert(expert, selected),
        lambda: ops.zeros(zeros_shape, selected.dtype),
        expert,
    )
