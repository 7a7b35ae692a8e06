"""Training beyond ``model.fit``'s defaults, for any model (several outputs, a dict of losses, a
task that owns its ``compute_loss``).

- ``resumable``: ``fit_resumable``, ``model.fit`` that resumes an interrupted run at the exact
  step, and its callback ``StepBackup``;
- ``distribution``: ``data_parallel``, data parallelism through Keras's distribution API.
"""

from keras_routing.training.deepmoe import Procedure1, freeze_embedding
from keras_routing.training.distribution import data_parallel
from keras_routing.training.resumable import StepBackup, fit_resumable

__all__ = ["Procedure1", "StepBackup", "freeze_embedding", "data_parallel", "fit_resumable"]
