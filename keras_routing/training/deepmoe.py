"""DeepMoE's Procedure 1 as a callback: after ``n0`` epochs of joint training, freeze the
embedding network and the gate heads, set lambda and mu to 0, and keep training the base network
(the paper's fine-tuning, ``n1`` more epochs: as many as ``fit`` runs).

How the switch works inside one ``fit`` on every backend. Setting ``trainable = False`` on a layer
mid-``fit`` is not seen by a compiled step (TensorFlow traced the trainable list; JAX's optimizer
state is one-to-one with the trainable variables it was built with), so the freeze is a variable
the compiled step reads: the ``ShallowEmbeddingGate``'s ``frozen``, 1 from the switch on. With it
the gates are the same values without gradient to the embedding and heads, and both loss terms
are multiplied by 0. A zero gradient alone still moves a variable under momentum or Adam (their
slots remember earlier gradients), so the callback also zeroes those variables' optimizer slots:
from then on their update is exactly 0 (SGD with momentum, Adam, RMSprop...). Decoupled weight
decay (``weight_decay=``, AdamW) would still shrink them: the callback refuses it. The loss
weights' variables are set to 0 too, and their schedules replaced by 0, so the logs, a later
``fit`` and a reloaded model agree. The layers stay ``trainable`` (a changed trainable list
mid-training breaks JAX's optimizer state); ``frozen`` keeps them fixed in later ``fit`` calls too.
"""

import keras
from keras import ops

from keras_routing import schedules
from keras_routing.layers.channel_gates import ShallowEmbeddingGate
from keras_routing.validation import integer


def _gates(model):
    found = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, ShallowEmbeddingGate)
    ]
    if not found:
        raise ValueError(f"Procedure1: '{model.name}' has no ShallowEmbeddingGate to freeze.")
    return found


def _slot_variables(optimizer, variable):
    """The optimizer's variables made from ``variable`` (``add_variable_from_reference``: named
    ``<variable path with _>_<slot>``, of its shape)."""
    prefix = variable.path.replace("/", "_") + "_"
    return [
        slot
        for slot in optimizer.variables
        if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape)
    ]


def _zero_loss_weights(model):
    # A step traced before the switch still writes its old schedule's value; what it adds is
    # multiplied by 0 (`frozen`), and the variables read 0 between epochs.
    for gate in _gates(model):
        gate.gate_l1_weight.assign(0.0)
        gate.embedding_loss_weight.assign(0.0)


def freeze_embedding(model):
    """Procedure 1, line 10, now: freeze every ``ShallowEmbeddingGate`` of ``model`` (embedding,
    gate heads, embedding classifier) and set lambda and mu to 0. Returns the frozen variables."""
    frozen = []
    for gate in _gates(model):
        gate.frozen.assign(1.0)
        for name in ("gate_l1_weight", "embedding_loss_weight"):
            scheduled = schedules._registry(gate, "_scheduled_variables")[name]
            scheduled.schedule = schedules.Constant(0.0)
            scheduled.variable.assign(0.0)
        for layer in gate.embedding_layers:
            frozen.extend(layer.trainable_variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        for variable in frozen:
            for slot in _slot_variables(optimizer, variable):
                slot.assign(ops.zeros(slot.shape, slot.dtype))
    return frozen


@keras.saving.register_keras_serializable(package="keras_routing")
class Procedure1(keras.callbacks.Callback):
    """After ``n0`` epochs (counted from epoch 0 of the run, so a resumed ``fit`` with
    ``initial_epoch`` switches at the same epoch), freeze the embedding network and gate heads and
    set lambda and mu to 0; the following epochs fine-tune the base network.

    ``n0``: joint-training epochs (the paper: 270 of 350 on CIFAR). ``switched_at``: the epoch at
    whose end the switch happened (None before).
    """

    def __init__(self, n0):
        super().__init__()
        self.n0 = integer(n0, "n0", minimum=0, owner="Procedure1")
        self.switched_at = None

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if getattr(optimizer, "weight_decay", None):
            raise ValueError(
                "Procedure1: the optimizer's decoupled `weight_decay` would still change the frozen "
                "embedding and gate heads; use an L2 kernel regulariser instead."
            )
        _gates(self.model)
        if self.n0 == 0:
            self._switch(-1)

    def on_epoch_begin(self, epoch, logs=None):
        # Resumed past n0 (fit(initial_epoch=...)): switch before training on.
        if self.switched_at is None and epoch >= self.n0:
            self._switch(epoch - 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.switched_at is None and epoch + 1 >= self.n0:
            self._switch(epoch)
        elif self.switched_at is not None:
            _zero_loss_weights(self.model)

    def on_train_end(self, logs=None):
        if self.switched_at is not None:
            _zero_loss_weights(self.model)

    def _switch(self, epoch):
        # Trainability is left as it is: a changed trainable list breaks JAX's optimizer state
        # (and is not seen by a traced TensorFlow step); the frozen switch is what holds.
        freeze_embedding(self.model)
        self.switched_at = epoch

    def get_config(self):
        return {"n0": self.n0}
