"""Inference modes: how a trained layer behaves at inference, chosen without rebuilding the model.

A conditional layer can often run the same trained weights in more than one way: CondConv
layers compute their mixture by one of several equal formulations (``strategy``: ``"auto"``,
``"mixture"``, ``"grouped"``, ``"patches"``); a bypass gate can open by threshold, by sampling,
or always (``"threshold"``, ``"stochastic"``, ``"always_on"``); routed experts can dispatch
densely or sparsely. Such a layer mixes in ``InferenceModes``: it declares ``inference_modes``
and holds a validated, settable ``inference`` attribute, which is no weight but part of its
config, so a saved model reloads in the mode it was saved in. ``set_inference(model, mode)``
sets the mode on every sublayer that supports it.

How this relates to ``keras_routing.layers.deployment.exporting_for``: the inference mode is
the user's lasting choice, stored with the model and used by every call (``predict``,
``evaluate``, an export); ``exporting_for(runtime)`` is a context that only lasts while an
export traces the model, and tells the layers whose mode leaves the choice open (CondConv's
``"auto"``) which runtime they are traced for, so they take its fastest form. An explicit mode
wins over the export context: a layer set to ``"patches"`` exports as patches.
"""

import keras

# The trainer's cached step functions, traced with the mode in force when they were made.
_STEP_FUNCTIONS = ("predict_function", "test_function", "train_function")


class InferenceModes:
    """Mixin for a Keras layer with a choice of inference behaviour.

    A subclass sets ``inference_modes`` (the modes it supports, the first the default) and
    ``inference_argument`` (its constructor argument and config key: ``"inference"`` unless the
    layer already names it, as CondConv's ``strategy``), sets ``self.inference`` in its
    ``__init__`` and adds ``inference_config()`` to its ``get_config``. Read ``inference`` at
    call time (not in ``build``), so that a change takes effect in the next call.
    """

    inference_modes = ()
    inference_argument = "inference"

    @property
    def inference(self):
        return self._inference_mode

    @inference.setter
    def inference(self, mode):
        if mode not in self.inference_modes:
            raise ValueError(
                f"{self.__class__.__name__}: `{self.inference_argument}` must be one of "
                f"{self.inference_modes}, got {mode!r}."
            )
        self._inference_mode = mode

    def inference_config(self):
        return {self.inference_argument: self.inference}


def set_inference(model_or_layer, mode, layer_types=None):
    """Set inference mode ``mode`` on every layer of ``model_or_layer`` (itself included) that
    supports it; with ``layer_types`` (a class or tuple of classes), only on those.

    Layers without ``mode`` among their ``inference_modes`` are left as they are, so one call
    sets a mixed model (``set_inference(model, "threshold")`` reaches the gates, not the CondConv
    layers). A ``keras.Model``'s compiled ``predict`` / ``evaluate`` / ``fit`` functions, which
    traced the previous mode, are rebuilt so the next call uses the new one. (A function you
    traced yourself, e.g. a ``tf.function`` around the model, keeps the mode it traced.)

    Returns the number of layers set. Raises ``ValueError`` if no layer supports ``mode``.
    """
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise ValueError(f"`model_or_layer` must be a Keras model or layer, got {model_or_layer!r}.")
    layers = [
        layer
        for layer in model_or_layer._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, InferenceModes) and (layer_types is None or isinstance(layer, layer_types))
    ]
    chosen = [layer for layer in layers if mode in layer.inference_modes]
    if not chosen:
        available = sorted({m for layer in layers for m in layer.inference_modes})
        raise ValueError(
            f"`mode` {mode!r} is supported by no layer of {model_or_layer.name!r}"
            + (f" of types {layer_types}" if layer_types is not None else "")
            + (
                f"; its layers support {available}."
                if available
                else "; it has no layer with inference modes."
            )
        )
    for layer in chosen:
        layer.inference = mode
    if isinstance(model_or_layer, keras.Model):
        # The trainer caches traced (jit / tf.function / torch.compile) step functions, which
        # baked in the old mode: rebuild those that exist (they trace again on their next call).
        for name in _STEP_FUNCTIONS:
            if getattr(model_or_layer, name, None) is not None:
                getattr(model_or_layer, f"make_{name}")(force=True)
    return len(chosen)
