"""Graph rewrites and weight transplants of trained models.

- ``fold_batch_normalization(model)``: batch normalization folded into the CondConv experts
  before it, for export (``folding``).
- ``upcycle(model, baseline)``: a CondConv model started from a trained plain model
  (``upcycle``).

Every layer a transform creates is registered with Keras's serialization, so a transformed
model saves and reloads with ``keras.saving.load_model(path, safe_mode=True)``. Private Keras
API (walking a functional graph, cloning it) is used only in ``_graph``.
"""

from keras_routing.transforms.folding import Offset, fold_batch_normalization
from keras_routing.transforms.prune_channels import prune_gated_channels
from keras_routing.transforms.upcycle import upcycle

__all__ = ["Offset", "fold_batch_normalization", "prune_gated_channels", "upcycle"]
