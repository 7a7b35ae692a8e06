"""Stands in for a kill in the resumption tests: training stops abruptly at a global step."""

import keras


class Interrupt(Exception):
    pass


class KillAt(keras.callbacks.Callback):
    """Raises ``Interrupt`` after the ``step``-th training batch (counted across epochs)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise Interrupt
