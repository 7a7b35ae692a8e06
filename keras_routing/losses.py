"""Auxiliary objectives of the routing families, as pure functions of tensors (``keras.ops``
only), and the way a layer adds one with a weight a schedule can change during ``fit``.

- Balancing (Shazeer et al. 2017, noisy top-k): ``cv_squared``, ``importance_loss``,
  ``load_loss``.
- Target rates of probabilistic bypass gates (AIG's per-gate loss, the per-batch loss of
  "probabilistic gates", and their const-quad forms, which penalise only rates above the target):
  ``target_rate_per_gate``, ``target_rate_per_batch``, ``target_rate_loss(name)``.
- DeepMoE's gate sparsity: ``gate_l1``, the elementwise L1 of every gate (not a matrix norm).

Gates ``z`` for the target rates are either one tensor whose first axis is the batch and whose
other axes are gates (``(batch,)`` is one gate, ``(batch, n)`` n gates), or a list of such
tensors (one per gated layer), concatenated along the gates.

A weighted loss: ``add_loss_weight(layer, "importance_weight", 0.1)`` in the layer's
``__init__`` (a number or a ``keras_routing.schedules`` schedule) creates
``layer.importance_weight``, a non-trainable float32 variable following the schedule; in
``call``, ``add_weighted_loss(layer, "importance_weight", importance_loss(gates), training)``
adds ``weight * loss`` through ``layer.add_loss``.
"""

import numbers

from keras import ops

from keras_routing import schedules
from keras_routing.validation import number

EPSILON = 1e-10


def cv_squared(x, epsilon=EPSILON):
    """The squared coefficient of variation of the elements of ``x``: population variance over
    squared mean (plus ``epsilon``, so that all-zero ``x`` gives 0). 0 for a single element."""
    x = ops.cast(x, "float32")
    mean = ops.mean(x)
    variance = ops.mean(ops.square(x - mean))
    return variance / (ops.square(mean) + epsilon)


def importance_loss(gates, epsilon=EPSILON):
    """``cv_squared`` of each expert's importance, the sum over the batch of its gates
    (``gates``: ``(batch, experts)``)."""
    return cv_squared(ops.sum(ops.cast(gates, "float32"), axis=0), epsilon)


def load_loss(probabilities, epsilon=EPSILON):
    """``cv_squared`` of each expert's load, the sum over the batch of ``probabilities``
    ``(batch, experts)``: the smooth probability that the expert is among an example's top k."""
    return cv_squared(ops.sum(ops.cast(probabilities, "float32"), axis=0), epsilon)


def _gates_matrix(z):
    """``z`` (a tensor or a list of tensors, batch first) as one ``(batch, gates)`` float32 tensor."""
    parts = list(z) if isinstance(z, (list, tuple)) else [z]
    if not parts:
        raise ValueError("`z` must hold at least one gate, got an empty list.")
    flat = []
    for part in parts:
        part = ops.cast(part, "float32")
        flat.append(ops.reshape(part, (ops.shape(part)[0], -1)) if len(part.shape) != 2 else part)
    return flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=1)


def _check_target(target):
    if isinstance(target, numbers.Real):
        number(target, "target", at_least=0, at_most=1)
    return ops.cast(target, "float32")


def target_rate_per_gate(z, target, *, const_quad=False):
    """AIG's per-gate loss: the mean over gates of ``(t - mean over the batch of z_g)^2``.
    ``target`` is a number in [0, 1] or one per gate. ``const_quad``: only rates above the
    target count, ``max(rate - t, 0)^2``."""
    rates = ops.mean(_gates_matrix(z), axis=0)
    excess = rates - _check_target(target)
    if const_quad:
        excess = ops.maximum(excess, 0.0)
    return ops.mean(ops.square(excess))


def target_rate_per_batch(z, target, *, const_quad=False):
    """The per-batch loss: ``(t - mean over gates and batch of z)^2``; ``const_quad``: zero
    while that mean is at most ``t`` (the paper's L_CQ,B)."""
    excess = ops.mean(_gates_matrix(z)) - _check_target(target)
    if const_quad:
        excess = ops.maximum(excess, 0.0)
    return ops.square(excess)


TARGET_RATE_LOSSES = ("per_gate", "per_batch", "per_gate_const_quad", "per_batch_const_quad")


def target_rate_loss(name):
    """The target-rate loss ``f(z, target)`` called ``name`` (one of ``TARGET_RATE_LOSSES``),
    what a factory's ``loss=`` argument chooses."""
    if name not in TARGET_RATE_LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(TARGET_RATE_LOSSES)}, got {name!r}.")
    base = target_rate_per_gate if name.startswith("per_gate") else target_rate_per_batch
    const_quad = name.endswith("const_quad")
    return lambda z, target: base(z, target, const_quad=const_quad)


def gate_l1(gates):
    """DeepMoE's L_g: the mean over the batch of ``sum over layers of ||g_l||_1``, the elementwise
    L1 of each example's gates (``gates``: a tensor or a list of tensors, batch first)."""
    parts = list(gates) if isinstance(gates, (list, tuple)) else [gates]
    if not parts:
        raise ValueError("`gates` must hold at least one gate tensor, got an empty list.")
    per_example = 0.0
    for part in parts:
        part = ops.abs(ops.cast(part, "float32"))
        per_example = per_example + ops.sum(ops.reshape(part, (ops.shape(part)[0], -1)), axis=1)
    return ops.mean(per_example)


def add_loss_weight(layer, name, initial):
    """Give ``layer`` a loss weight ``layer.<name>``: a non-trainable float32 variable that
    follows ``initial`` (a non-negative number, or a schedule of the training step). Call in the
    layer's ``__init__``; returns the variable."""
    if isinstance(initial, numbers.Real):
        number(initial, name, at_least=0, owner=type(layer).__name__)
    return schedules.add_scheduled_variable(layer, name, initial).variable


def add_weighted_loss(layer, name, value, training):
    """``layer.add_loss(weight * value)`` with the loss weight ``name`` (see ``add_loss_weight``)
    at this step; call once per ``call``, passing its ``training``. Returns the weighted loss."""
    weight = schedules.scheduled_value(layer, name, training)
    weighted = ops.cast(weight, "float32") * ops.cast(value, "float32")
    layer.add_loss(weighted)
    return weighted
