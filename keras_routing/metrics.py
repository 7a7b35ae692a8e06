"""Routing statistics in ``fit``'s logs (progress bar, ``History``, TensorBoard, ``val_`` too).

The mechanism: a layer declares a statistic (``add_statistic(layer, "expert_load", (experts,))``
in ``__init__`` or ``build``), a non-trainable float32 variable, and writes the batch's value in
``call`` (``record_statistic(layer, "expert_load", expert_load(gates))``). A
``keras_routing.models.Task`` holds one ``StatisticMean`` per statistic of its layers and updates
it in ``compute_loss``; the metric's mean over the epoch's examples (each batch weighted by its
size) appears in the logs as ``<layer name>_<statistic>`` (vectors as ``..._0``, ``..._1``, ...).
A plain ``keras.Model`` records the statistics (the last batch's value, readable after
``predict``) but logs none: build the model as a ``Task`` (``Task(inputs, outputs)``) to log them.

Why this way (tried in Keras 3.15 on each backend, a mean over two batches expected 0.75):
- A ``keras.metrics.Mean`` held by the layer and updated in ``call`` logs 0.75 on TensorFlow and
  PyTorch, but on JAX ``stateless_call`` maps only the model's trainable and non-trainable
  variables: the metric's update is dropped (0.0 logged) or fails on its purged variables.
- A compiled metric (``compile(metrics=...)``) reading the layer's variable, or ``compute_metrics``,
  runs on JAX in a scope holding only the metrics' variables: it reads the values from before
  the step (stale).
- A non-trainable variable written in ``call`` is state every backend keeps (JAX's stateless call
  returns it, as for BatchNorm), and ``compute_loss`` runs on JAX in a scope holding the fresh
  non-trainable variables *and* the metrics' variables, whose updates it returns (Keras's own
  per-output loss trackers are updated there). Reading the statistic and updating a metric there
  logs 0.75 on all three backends.
So a statistic costs one small variable per layer; the logging is the Task's (``compute_loss``
is where a task model's own losses live anyway).

The statistics themselves are pure functions here: ``expert_load``, ``open_rate``,
``zero_fraction``, ``dropped_fraction``.
"""

import keras
from keras import ops

from keras_routing.layers import deployment
from keras_routing.schedules import _registry


def add_statistic(layer, name, shape=()):
    """Give ``layer`` a statistic ``name`` of ``shape``: ``layer.<name>``, a non-trainable float32
    variable that ``record_statistic`` sets in ``call``. Returns the variable."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"`name` must be a Python identifier, got {name!r}.")
    registry = _registry(layer, "_routing_statistics")
    if name in registry:
        raise ValueError(f"{layer.name} already has a statistic `{name}`.")
    variable = layer.add_weight(
        name=name,
        shape=tuple(shape),
        dtype="float32",
        initializer="zeros",
        trainable=False,
        autocast=False,
        aggregation="mean",  # replicas' batches are averaged, as BatchNorm's moving statistics
    )
    registry[name] = variable
    setattr(layer, name, variable)
    return variable


def record_statistic(layer, name, value):
    """Set ``layer``'s statistic ``name`` to this batch's ``value`` (in ``call``); returns ``value``.

    Not while exporting: a deployed graph writes no variables (LiteRT would keep them as
    ``VAR_HANDLE`` / ``ASSIGN_VARIABLE`` ops, which mobile delegates reject)."""
    if deployment.current() is None:
        _registry(layer, "_routing_statistics")[name].assign(ops.cast(value, "float32"))
    return value


def statistics(model):
    """``(layer, name, variable)`` for every statistic of ``model`` and its sublayers."""
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for name, variable in _registry(layer, "_routing_statistics").items():
            found.append((layer, name, variable))
    return found


class _Reference:
    """Holds a variable out of sight of Keras's tracking (a metric would adopt it as its own)."""

    def __init__(self, variable):
        self.variable = variable


class StatisticMean(keras.metrics.Metric):
    """The mean over examples of a statistic variable recorded once per batch: ``update_state``
    adds the variable's current value weighted by ``weight`` (the batch size). A vector
    statistic's result is one entry per element, ``<name>_<i>``."""

    def __init__(self, statistic, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self._statistic = _Reference(statistic)
        self._shape = tuple(statistic.shape)
        self.total = self.add_variable(shape=self._shape, initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, weight=1.0):
        weight = ops.cast(weight, self.dtype)
        value = ops.cast(ops.convert_to_tensor(self._statistic.variable), self.dtype)
        self.total.assign_add(value * weight)
        self.count.assign_add(weight)

    def result(self):
        mean = ops.divide_no_nan(ops.convert_to_tensor(self.total), ops.convert_to_tensor(self.count))
        if not self._shape:
            return mean
        flat = ops.reshape(mean, (-1,))
        return {f"{self.name}_{i}": flat[i] for i in range(flat.shape[0])}

    def get_config(self):
        raise NotImplementedError("A StatisticMean is made by its Task from the model's layers.")


def expert_load(gates):
    """The fraction of the batch's examples routed to each expert (a non-zero gate): ``gates``
    ``(batch, experts)`` gives ``(experts,)``, summing to ``k`` under top-k routing."""
    return ops.mean(ops.cast(ops.not_equal(gates, 0), "float32"), axis=0)


def open_rate(z):
    """The fraction of the batch for which each gate is open: the mean over the batch of ``z``
    (``(batch,)`` gives a scalar, ``(batch, n)`` one rate per gate)."""
    return ops.mean(ops.cast(z, "float32"), axis=0)


def zero_fraction(gates):
    """The fraction of gate entries that are exactly zero (channels a batch did not need)."""
    return ops.mean(ops.cast(ops.equal(gates, 0), "float32"))


def dropped_fraction(routed, kept):
    """The fraction of (example, expert) assignments dropped: ``routed`` the assignments routing
    chose, ``kept`` those that fit the experts' capacity (masks or gates of the same shape); 0
    when nothing was routed."""
    routed = ops.sum(ops.cast(ops.not_equal(routed, 0), "float32"))
    kept = ops.sum(ops.cast(ops.not_equal(kept, 0), "float32"))
    return ops.divide_no_nan(routed - kept, routed)
