"""Target rates of probabilistic bypass gates during training (S2.1, S2.2).

- Annealing (S2.1): the target falls by ``delta`` every ``every_epochs`` epochs from ``start``
  to ``end``: ``annealing_schedule(...)`` is a step schedule (``schedules.Piecewise``) for
  ``GateTargetLoss(target_rate=...)`` / a zoo factory's ``target_rate=``; evaluated inside the
  train step, so it holds on every backend and resumes with the weights.
- Variable target (S2.2): ``GateTargetLoss(target_momentum=m)`` moves the target towards the
  batches' open rate (an exponential moving average, inside the step); ``VariableTargetReset``
  sets it back to its starting value at the start of every epoch, as the paper describes
  ("for each epoch, the target rate starts at a specific hyperparameter").
"""

import keras

from keras_routing import schedules
from keras_routing.layers.gated_residual import GateTargetLoss
from keras_routing.validation import integer, number


def annealing_schedule(end, steps_per_epoch, *, start=1.0, delta=0.05, every_epochs=5):
    """The step schedule of a target annealed from ``start`` to ``end`` by ``delta`` every
    ``every_epochs`` epochs of ``steps_per_epoch`` steps (the paper: a = 0.05, k = 5)."""
    number(end, "end", at_least=0, at_most=1)
    number(start, "start", at_least=0, at_most=1)
    steps_per_epoch = integer(steps_per_epoch, "steps_per_epoch")
    every_epochs = integer(every_epochs, "every_epochs")
    return schedules.Piecewise.staircase(start, end, delta, every_epochs * steps_per_epoch)


class VariableTargetReset(keras.callbacks.Callback):
    """At the start of every epoch, sets each ``GateTargetLoss`` with a variable target back to
    ``start`` (default: its scheduled target at that point)."""

    def __init__(self, start=None):
        super().__init__()
        self.start = None if start is None else number(start, "start", at_least=0, at_most=1)

    def on_epoch_begin(self, epoch, logs=None):
        found = False
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            if isinstance(layer, GateTargetLoss) and layer.target_momentum is not None:
                found = True
                value = (
                    self.start if self.start is not None else keras.ops.convert_to_numpy(layer.target_rate)
                )
                layer.moving_target.assign(value)
        if not found:
            raise ValueError("VariableTargetReset: the model has no GateTargetLoss with `target_momentum`.")
