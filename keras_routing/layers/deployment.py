"""Inference-time folding: which form a conditional layer takes while it is exported.

Exporting traces the model once for a runtime that will run it many times, so the layers can
take the form that suits that runtime rather than the training backend. Inside
``exporting_for(runtime)``, every conditional layer asks ``current()`` and folds itself:

- CondConv layers compute each example's mixed kernel and run one convolution (the paper's
  inference path), in ops the runtime runs with builtin kernels (see ``choose_strategy``);
  int8 models keep the experts' kernels static instead, so each is quantized per channel;
- the CondConv classifier runs all experts in one matmul over weights that the converter
  folds into one constant (no kernel copy at run time);
- gated residuals export in their inference mode (``"threshold"`` by default): one ``IF``
  per block whose branch not taken never runs, on LiteRT as in TensorFlow graphs;
- no layer writes its routing statistics (``keras_routing.metrics.record_statistic``): a
  deployed graph holds no variable writes.

This is the export-time form of the inference modes of ``keras_routing.layers.inference``: a
layer's mode (``set_inference``) is the lasting choice; only a mode that leaves the form open
(CondConv's ``"auto"``) consults ``current()``.

Before tracing, ``keras_routing.transforms.folding`` folds each batch normalization that follows a CondConv
layer into its experts, as a converter does for a static convolution. Outside the context
(training, evaluation, ``predict``) nothing changes.
"""

import contextlib
import contextvars
import dataclasses

from keras_routing.deploy.formats import FORMATS as RUNTIMES  # the one list (no Keras import)


@dataclasses.dataclass(frozen=True)
class Deployment:
    runtime: str  # one of RUNTIMES
    quantize: str | None = None  # None, "dynamic" or "int8"

    @property
    def freezes_weights(self):
        """Whether the converter turns the weights into constants (LiteRT and ONNX do, a
        SavedModel keeps variables): then layouts fold away and static weights get packed once."""
        return self.runtime in ("litert", "onnx")


_current = contextvars.ContextVar("keras_routing_deployment", default=None)


def current():
    """The ``Deployment`` being exported for, or ``None`` outside an export."""
    return _current.get()


@contextlib.contextmanager
def exporting_for(runtime, quantize=None):
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}, got {runtime!r}.")
    token = _current.set(Deployment(runtime, quantize))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
