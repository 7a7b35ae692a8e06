"""Schedules as pure functions of the training step, and the variables that follow them in ``fit``.

A schedule (``Constant``, ``Linear``, ``Piecewise``, or any Keras ``LearningRateSchedule``) maps
the optimizer's step ``n`` to a value: a loss weight annealed from 0.1 to 0, a target rate
lowered by 0.05 every few epochs, a stage switch. A layer holds the scheduled value in a
``ScheduledVariable`` (``add_scheduled_variable``): a non-trainable variable and a step counter,
both weights of the layer.

Why a counter in the layer, recomputed in ``call``, rather than a callback writing the variable:
a Python float is baked into a compiled step, and on JAX the trainer threads the variables
through the epoch as state, so a callback assigning a variable between steps is ignored until
the epoch ends (unless it reads ``self.model`` first, which copies the whole training state out
of the compiled step on every batch). An assignment made in ``call`` is a state update that
every backend keeps (on JAX, ``stateless_call`` returns it, as it does BatchNorm's moving mean),
so in training the layer reads ``schedule(counter)``, uses it, and advances the counter inside
the compiled step. Invariant after any number of training steps: ``counter == n`` and
``variable == schedule(n)``, the value the next step uses (and what inference reads).

The counters are weights, so ``save_weights`` / ``model.save`` and ``fit_resumable``'s backups
carry them and a resumed run continues at the exact step. ``ScheduleSync`` (or
``sync_schedules``) sets every counter from ``optimizer.iterations`` when training begins, for
when the two could differ: a layer also called in training outside ``fit``, weights loaded into
a model whose optimizer starts afresh, a layer called twice per step.
"""

import numbers

import numpy as np

import keras
from keras import ops

from keras_routing.validation import integer, number

_REGISTER = keras.saving.register_keras_serializable(package="keras_routing")


@_REGISTER
class Schedule:
    """A value as a function of the training step: ``schedule(step)`` is a float32 scalar tensor
    (``step`` an integer scalar, Python or tensor). Subclasses implement ``__call__`` and
    ``get_config``; ``from_config`` passes the config to the constructor."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@_REGISTER
class Constant(Schedule):
    """The same ``value`` at every step (what a plain number means wherever a schedule goes)."""

    def __init__(self, value):
        self.value = number(value, "value", owner="Constant")

    def __call__(self, step):
        return ops.convert_to_tensor(self.value, "float32")

    def get_config(self):
        return {"value": self.value}


@_REGISTER
class Linear(Schedule):
    """``start`` until step ``begin``, then linearly to ``end`` over ``steps`` steps, then ``end``:
    ``start + (end - start) * clip((step - begin) / steps, 0, 1)``."""

    def __init__(self, start, end, steps, begin=0):
        self.start = number(start, "start", owner="Linear")
        self.end = number(end, "end", owner="Linear")
        self.steps = integer(steps, "steps", owner="Linear")
        self.begin = integer(begin, "begin", minimum=0, owner="Linear")

    def __call__(self, step):
        progress = (ops.cast(step, "float32") - self.begin) / self.steps
        return self.start + (self.end - self.start) * ops.clip(progress, 0.0, 1.0)

    def get_config(self):
        return {"start": self.start, "end": self.end, "steps": self.steps, "begin": self.begin}


@_REGISTER
class Piecewise(Schedule):
    """``values[i]`` for ``boundaries[i - 1] <= step < boundaries[i]``: a boundary is the first
    step of the next value (epoch ``e`` starts at step ``e * steps_per_epoch``). Note Keras's
    ``PiecewiseConstantDecay`` switches one step later (at ``step > boundary``)."""

    def __init__(self, boundaries, values):
        boundaries, values = list(boundaries), list(values)
        for i, b in enumerate(boundaries):
            integer(b, f"boundaries[{i}]", minimum=1, owner="Piecewise")
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"Piecewise: `boundaries` must be strictly increasing, got {boundaries}.")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"Piecewise: `values` must have one more entry than `boundaries` ({len(boundaries)}), "
                f"got {len(values)}."
            )
        self.boundaries = [int(b) for b in boundaries]
        self.values = [number(v, f"values[{i}]", owner="Piecewise") for i, v in enumerate(values)]

    @classmethod
    def staircase(cls, start, end, delta, every, begin=0):
        """From ``start`` towards ``end`` by ``delta`` every ``every`` steps from step ``begin``,
        stopping at ``end`` (e.g. a target rate 1.0 -> 0.5 by 0.05 every 5 epochs:
        ``staircase(1.0, 0.5, 0.05, 5 * steps_per_epoch)``)."""
        start = number(start, "start", owner="Piecewise.staircase")
        end = number(end, "end", owner="Piecewise.staircase")
        delta = number(delta, "delta", above=0, owner="Piecewise.staircase")
        every = integer(every, "every", owner="Piecewise.staircase")
        begin = integer(begin, "begin", minimum=0, owner="Piecewise.staircase")
        sign = 1.0 if end >= start else -1.0
        count = int(np.floor(abs(end - start) / delta + 1e-9))  # whole steps of delta that fit
        values = [start + sign * delta * i for i in range(count + 1)]
        if abs(values[-1] - end) > 1e-9:
            values.append(end)
        values[-1] = end  # exactly, not end up to rounding
        boundaries = [begin + every * i for i in range(1, len(values))]
        return cls(boundaries, values)

    def __call__(self, step):
        if not self.boundaries:
            return ops.convert_to_tensor(self.values[0], "float32")
        # Integer comparison: exact at any step; `take` returns the listed value itself.
        passed = ops.cast(ops.convert_to_tensor(step), "int32") >= ops.array(self.boundaries, "int32")
        index = ops.sum(ops.cast(passed, "int32"))
        return ops.take(ops.array(self.values, "float32"), index)

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


def get(identifier):
    """A schedule from a number (``Constant``), a ``Schedule`` or Keras ``LearningRateSchedule``
    (returned as is), or a serialized one (a config dict); anything else is a ``ValueError``."""
    if isinstance(identifier, (Schedule, keras.optimizers.schedules.LearningRateSchedule)):
        return identifier
    if isinstance(identifier, numbers.Real) and not isinstance(identifier, bool):
        return Constant(identifier)
    if isinstance(identifier, dict):
        return get(keras.saving.deserialize_keras_object(identifier))
    raise ValueError(f"A schedule must be a number, a Schedule or a serialized one, got {identifier!r}.")


def serialize(schedule):
    """For a layer's ``get_config``: a ``Constant`` as its plain number, others as Keras configs."""
    if isinstance(schedule, Constant):
        return schedule.value
    return keras.saving.serialize_keras_object(schedule)


def _scalar(value):
    return np.asarray(keras.ops.convert_to_numpy(value)).item()


class ScheduledVariable:
    """The value of ``schedule`` at the training step, held by ``layer`` (see the module's doc).

    ``variable`` (float32 unless ``dtype`` says otherwise) and ``step`` (the counter) are
    non-trainable weights of ``layer``, named ``name`` and ``name + "_step"``.
    """

    def __init__(self, layer, name, schedule, dtype="float32"):
        self.name = name
        self.schedule = get(schedule)
        self.dtype = dtype
        self.variable = layer.add_weight(
            name=name,
            shape=(),
            dtype=dtype,
            initializer=keras.initializers.Constant(_scalar(self.schedule(0))),
            trainable=False,
            autocast=False,  # a float32 weight stays float32 under a mixed precision policy
            aggregation="only_first_replica",  # every replica computes the same value
        )
        self.step = layer.add_weight(
            name=f"{name}_step",
            shape=(),
            dtype="int",  # as the optimizer's `iterations`
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def value(self, training=None):
        """The value for this call. In training (call once per training step): the schedule at
        the counter, which then advances, with the variable set to the next step's value.
        Otherwise the variable (the schedule at the steps trained so far)."""
        if not training:
            return ops.convert_to_tensor(self.variable)
        step = ops.convert_to_tensor(self.step)
        current = ops.cast(self.schedule(step), self.dtype)
        following = step + ops.ones_like(step)
        self.step.assign(following)
        self.variable.assign(ops.cast(self.schedule(following), self.dtype))
        return current

    def sync(self, step):
        """Set the counter to ``step`` and the variable to the schedule there (eagerly)."""
        step = int(_scalar(step))
        self.step.assign(step)
        self.variable.assign(ops.cast(self.schedule(step), self.dtype))


class _Registry:
    """A layer's named entries, held out of sight of Keras's tracking (which would copy a dict)."""

    def __init__(self):
        self.entries = {}


def _registry(layer, attribute):
    """The dict of ``layer``'s entries under ``attribute`` (created empty on first use)."""
    registry = layer.__dict__.get(attribute)
    if registry is None:
        registry = _Registry()
        setattr(layer, attribute, registry)
    return registry.entries


def add_scheduled_variable(layer, name, schedule, *, dtype="float32"):
    """Give ``layer`` a ``ScheduledVariable`` ``name`` following ``schedule`` (a number or a
    schedule): ``layer.<name>`` is its variable; returns the ``ScheduledVariable``. In ``call``,
    read it with ``scheduled_value(layer, name, training)`` once per call."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"`name` must be a Python identifier, got {name!r}.")
    registry = _registry(layer, "_scheduled_variables")
    if name in registry:
        raise ValueError(f"{layer.name} already has a scheduled variable `{name}`.")
    scheduled = ScheduledVariable(layer, name, schedule, dtype=dtype)
    registry[name] = scheduled
    setattr(layer, name, scheduled.variable)
    return scheduled


def scheduled_value(layer, name, training=None):
    """The value of ``layer``'s scheduled variable ``name`` for this call (see ``ScheduledVariable.value``)."""
    return _registry(layer, "_scheduled_variables")[name].value(training)


def scheduled_variables(model):
    """Every ``ScheduledVariable`` of ``model`` and its sublayers, in layer order."""
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        found.extend(_registry(layer, "_scheduled_variables").values())
    return found


def sync_schedules(model, step=None):
    """Set every scheduled variable of ``model`` to ``step`` (default: its optimizer's
    iterations, or 0 without an optimizer)."""
    if step is None:
        optimizer = getattr(model, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
    for scheduled in scheduled_variables(model):
        scheduled.sync(step)


class ScheduleSync(keras.callbacks.Callback):
    """Sets every scheduled variable from ``optimizer.iterations`` when ``fit`` begins (on JAX the
    first step reads the variables afresh, so the assignment reaches the compiled step)."""

    def on_train_begin(self, logs=None):
        sync_schedules(self.model)
