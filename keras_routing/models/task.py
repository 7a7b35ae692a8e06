"""``Task``: the base of models that own their loss, as KerasCV's and keras-hub's tasks do.

A task is a ``keras.Model`` (usually functional: built in its ``__init__`` from a backbone, as
keras-hub's tasks are) for what a compiled loss cannot express: more than one output, a loss that
needs the labels together with intermediate outputs (DeepMoE's embedding cross-entropy, early-exit
classifiers, SSD), or every gate of the model at once (the per-batch target rate). It

- owns its loss: override ``compute_loss(x, y, y_pred, sample_weight, training)`` (Keras 3's
  hook, called in ``fit`` and ``evaluate`` on every backend) and add to
  ``super().compute_loss(...)``, which is the compiled loss (if any) plus the layers' ``add_loss``
  terms (0 when there are none) and updates the routing statistics. Tensors the loss needs
  (intermediate features, gates) are outputs of the model, so they reach ``y_pred`` on every
  backend; plain ``model.fit(x, y)`` works with ``y`` the labels alone.
- compiles with defaults: ``compile()`` with no arguments takes ``default_optimizer()``,
  ``default_loss()`` and ``default_metrics()`` (a subclass overrides them); any argument given
  replaces its default. The saved compile config holds the resolved values.
- logs its layers' routing statistics (``keras_routing.metrics``): one ``StatisticMean`` per
  statistic, updated in ``compute_loss`` (why there: see ``keras_routing.metrics``).
- saves and reloads with ``safe_mode=True``: a ``Task(inputs, outputs)`` built directly has the
  functional config; a subclass with its own constructor returns its arguments from
  ``get_config`` (a ``backbone`` as a serialized model: ``from_config`` deserializes it).
"""

import keras
from keras import ops

from keras_routing import metrics as routing_metrics


class _Untracked:
    """The statistics' metrics, out of sight of Keras's tracking and saving: ``Task.metrics``
    lists them (tracked, Keras would list them twice), and their running totals are not worth
    saving."""

    def __init__(self):
        self.metrics = {}


@keras.saving.register_keras_serializable(package="keras_routing")
class Task(keras.Model):
    """A model that owns its loss and its default compile arguments (see the module's doc).

    ``Task(inputs, outputs, name=...)`` as a functional model, or subclass it and call
    ``super().__init__(inputs=..., outputs=..., **kwargs)`` at the end of ``__init__``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._statistics = _Untracked()
        self.track_statistics()

    # -- compile -------------------------------------------------------------------------------
    def default_optimizer(self):
        """The optimizer ``compile()`` uses when given none."""
        return keras.optimizers.Adam()

    def default_loss(self):
        """The compiled loss ``compile()`` uses when given none (``None``: ``compute_loss`` owns it)."""
        return None

    def default_metrics(self):
        """The metrics ``compile()`` uses when given none."""
        return None

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """``keras.Model.compile`` where ``"auto"`` (the default of each) means the task's default."""

        def auto(value):
            return isinstance(value, str) and value == "auto"

        super().compile(
            optimizer=self.default_optimizer() if auto(optimizer) else optimizer,
            loss=self.default_loss() if auto(loss) else loss,
            metrics=self.default_metrics() if auto(metrics) else metrics,
            **kwargs,
        )
        # Keras saves what jit_compile="auto" resolved to on this backend (False on TensorFlow's
        # CPU and on PyTorch): a model trained there and loaded on JAX would then run op by op,
        # its conditionals recompiled at every call (the early-exit DenseNet: 20x slower). Save
        # the argument, so that the loading backend resolves it.
        self._compile_config.config["jit_compile"] = kwargs.get("jit_compile", "auto")
        self.track_statistics()

    def compile_from_config(self, config):
        """What ``load_model`` calls: compile with the saved (resolved) arguments. (Keras skips
        models whose ``compile`` is overridden unless they define this.)"""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)  # so the saved optimizer state loads

    # -- loss and statistics -------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus the ``add_loss`` terms (0 if neither), updating the routing
        statistics. Subclasses add their own terms to ``super().compute_loss(...)``."""
        if self.loss is None and not self.losses:
            total = ops.zeros((), "float32")
        else:
            total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        self.update_statistics(x)
        return total

    def track_statistics(self):
        """Create a ``StatisticMean`` for each statistic of the layers not tracked yet (done at
        construction and by ``compile``; call it after building a subclassed task's layers)."""
        for layer, name, variable in routing_metrics.statistics(self):
            key = (id(layer), name)
            if key not in self._statistics.metrics:
                metric = routing_metrics.StatisticMean(variable, name=f"{layer.name}_{name}")
                self._statistics.metrics[key] = metric

    def update_statistics(self, x=None):
        """Add the statistics of this batch (each weighted by the batch size of ``x``)."""
        if not self._statistics.metrics:
            return
        leaves = [leaf for leaf in keras.tree.flatten(x) if leaf is not None] if x is not None else []
        batch = ops.cast(ops.shape(leaves[0])[0], "float32") if leaves else 1.0
        for metric in self._statistics.metrics.values():
            metric.update_state(batch)

    @property
    def metrics(self):
        statistics = getattr(self, "_statistics", None)
        return [*super().metrics, *(statistics.metrics.values() if statistics else ())]

    # -- serialization -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.saving.deserialize_keras_object(
                config["backbone"], custom_objects=custom_objects
            )
        return super().from_config(config, custom_objects=custom_objects)
