"""Early exit with probabilistic gates ("Deep networks with probabilistic gates", section 5 and
S2.4): at the end of a stage an exit gate decides, per example, whether the stage's own
classifier answers or the rest of the network runs.

- ``ExitGate`` (a ``GumbelGate``, as ``BypassGate``): S2.4's gate on the stage's feature map:
  a 3x3 convolution to ``width`` (128 in the paper), batch normalization, a second 3x3
  convolution to ``width``, batch normalization, 4x4 average pooling, a linear layer to two
  logits (stay, exit) and, in training, a hard Gumbel-softmax sample with straight-through
  gradients (``gumbel_softmax_open``). The paper lists no activation; ``activation`` (ReLU by
  default) follows each normalization, since without one the two convolutions compose into a
  single linear map.
- ``EarlyExit``: wraps the stage's ``classifier`` and the ``rest`` of the network (a layer or model
  of the same input that returns its prediction, or ``[prediction, *extras]``: the later gates).
  Training: ``e * classifier(x) + (1 - e) * rest(x)`` with the hard straight-through ``e``,
  exactly the prediction the hard decision chooses and differentiable in the gate, so the whole
  network trains end to end. Inference (``threshold`` / ``stochastic`` / ``always_on``, as
  ``GatedResidual``): an example takes the classifier if its gate is open, else the rest; the
  classifier and the rest each run under ``keras.ops.cond`` on "some example of the batch needs
  it", so at batch 1 an example that exits runs nothing after its exit (a batch that all exits
  skips the rest too). ``always_on`` never exits: the classifier does not run.
- Deep supervision (MSDNet's and BranchyNet's training, which the paper's exits follow): with the
  hard mix a classifier learns only from the examples it answers, so from scratch the early,
  faster-learning classifiers take every example and the later ones starve. In training each
  ``EarlyExit`` therefore keeps what its classifier and its rest predicted for every example
  (``training_predictions``), and ``EarlyExitTask`` adds every classifier's cross-entropy on every
  example to the loss. They are kept on the layer for the one training step that traced them
  (the loss reads them in the same trace on every backend, as Keras's own ``add_loss`` terms), a
  slot per thread (TensorFlow's replicas trace in threads of their own).
- ``ExitTargetLoss``: after the model's output, with every exit gate in order: the fraction of
  examples answered by each classifier (the first open exit, the final classifier where none is)
  as the statistic ``exit_fraction``, and in training the const-quad per-gate exit target: the
  mean over exits of ``max(t - mean over the batch of e_i, 0)^2`` (the paper's .3: more early
  exits than the target cost nothing).
"""

import threading

import keras
from keras import ops

from keras_routing import losses as routing_losses
from keras_routing import metrics as routing_metrics
from keras_routing import schedules
from keras_routing.layers.conditional import cond_with_state
from keras_routing.layers.gated_residual import GumbelGate
from keras_routing.layers.inference import InferenceModes
from keras_routing.validation import integer, number

GATE_WIDTH = 128  # S2.4
GATE_POOL = 4  # S2.4's 4x4 average pooling


@keras.saving.register_keras_serializable(package="keras_routing")
class ExitGate(GumbelGate):
    """S2.4's exit gate on a feature map ``(batch, height, width, channels)``: ``call`` returns
    the logits ``(batch, 1, 2)`` of (stay, exit); ``open_probability`` and ``sample`` turn them
    into the exit probability and hard Gumbel-softmax gates, as ``BypassGate``'s.

    Args:
        width: the channels of its two 3x3 convolutions (the paper: 128).
        pool_size: the average pooling (the paper: 4; smaller maps pool whole).
        activation: after each batch normalization (``None``: the paper's literal listing).
        temperature: the Gumbel-softmax temperature (> 0).
        seed: seed of its Gumbel noise.
    """

    def __init__(
        self, width=GATE_WIDTH, pool_size=GATE_POOL, activation="relu", temperature=1.0, seed=None, **kwargs
    ):
        kwargs.pop("num_experts", None)
        super().__init__(1, **kwargs)
        self.width = integer(width, "width", owner="ExitGate")
        self.pool_size = integer(pool_size, "pool_size", owner="ExitGate")
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.temperature = number(temperature, "temperature", above=0, owner="ExitGate")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        policy = self.dtype_policy
        self.conv1 = keras.layers.Conv2D(self.width, 3, padding="same", name="conv1", dtype=policy)
        self.norm1 = keras.layers.BatchNormalization(name="norm1", dtype=policy)
        self.conv2 = keras.layers.Conv2D(self.width, 3, padding="same", name="conv2", dtype=policy)
        self.norm2 = keras.layers.BatchNormalization(name="norm2", dtype=policy)
        self.logits = keras.layers.Dense(2, name="logits", dtype=policy)

    def _pool(self, input_shape):
        return min(self.pool_size, input_shape[1]), min(self.pool_size, input_shape[2])

    def build(self, input_shape):
        self.check_input_shape(input_shape, min_rank=4)
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                f"ExitGate: expected a feature map (batch, height, width, channels) of known size, "
                f"got shape {tuple(input_shape)}."
            )
        self.conv1.build(input_shape)
        hidden = (input_shape[0], input_shape[1], input_shape[2], self.width)
        self.norm1.build(hidden)
        self.conv2.build(hidden)
        self.norm2.build(hidden)
        ph, pw = self._pool(input_shape)
        self.logits.build((input_shape[0], (input_shape[1] // ph) * (input_shape[2] // pw) * self.width))

    def call(self, inputs, training=None):
        h = self.activation(self.norm1(self.conv1(inputs), training=training))
        h = self.activation(self.norm2(self.conv2(h), training=training))
        pool = self._pool(inputs.shape)
        h = ops.average_pool(h, pool, strides=pool, padding="valid")
        logits = self.logits(ops.reshape(h, (ops.shape(h)[0], -1)))
        return ops.reshape(logits, (-1, 1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 2)

    def get_config(self):
        config = super().get_config()
        config.pop("num_experts")
        return {
            **config,
            "width": self.width,
            "pool_size": self.pool_size,
            "activation": self._activation_name,
            "temperature": self.temperature,
            "seed": self.seed,
        }


class _PerThread:
    """Tensors of one training step, out of Keras's attribute tracking, a slot per thread."""

    def __init__(self):
        self.slots = {}


def _deserialize(value, what):
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, keras.layers.Layer):
        raise ValueError(f"EarlyExit: `{what}` must be a Keras layer or model, got {value!r}.")  # noqa: TRY004 (the project's convention)
    return value


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@keras.saving.register_keras_serializable(package="keras_routing")
class EarlyExit(InferenceModes, keras.layers.Layer):
    """An exit point: an example whose exit gate is open takes ``classifier(x)``, the others
    ``rest(x)`` (see the module docstring).

    Args:
        classifier: the intermediate classifier, a layer or model of ``x``.
        rest: the rest of the network, a layer or model of ``x`` returning the final prediction
            (the shape of the classifier's) or ``[prediction, *extras]``.
        gate: an ``ExitGate`` (or its config); ``None`` builds one with ``gate_width``,
            ``temperature`` and ``seed``.
        threshold: the exit probability above which an example exits under ``"threshold"``.
        inference: ``"threshold"`` (default), ``"stochastic"`` (sampled exits) or ``"always_on"``
            (never exit: every example runs the whole network).

    Call: ``layer(x, training=None, return_gates=False)``: the prediction; with ``return_gates``,
    ``[prediction, exit_gate, *extras]``, ``exit_gate`` ``(batch, 1)`` (1: exits here; hard,
    straight-through in training) and the rest's extras (zeros where the rest did not run).
    """

    inference_modes = ("threshold", "stochastic", "always_on")

    def __init__(
        self,
        classifier,
        rest,
        gate=None,
        threshold=0.5,
        inference="threshold",
        gate_width=GATE_WIDTH,
        temperature=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.classifier = _deserialize(classifier, "classifier")
        self.rest = _deserialize(rest, "rest")
        for function in (self.classifier, self.rest):
            _adopt_policy(self, function)
        self.threshold = number(threshold, "threshold", at_least=0, at_most=1, owner="EarlyExit")
        self.inference = inference
        if isinstance(gate, dict):
            gate = keras.saving.deserialize_keras_object(gate)
        if gate is None:
            gate = ExitGate(
                gate_width,
                temperature=temperature,
                seed=seed,
                name=f"{self.name}_gate",
                dtype=self.dtype_policy,
            )
        if not isinstance(gate, ExitGate):
            raise ValueError(f"EarlyExit: `gate` must be None or an ExitGate, got {gate!r}.")  # noqa: TRY004 (the project's convention)
        self.gate = gate
        if self.gate.dtype_policy.name != self.dtype_policy.name:
            self.gate.adopt_dtype_policy(self.dtype_policy)
        self._training_predictions = _PerThread()

    def training_predictions(self):
        """``(classifier, rest)``: what the classifier and the rest predicted for every example in
        this thread's last training call, removed as they are read (``None`` if there was none)."""
        return self._training_predictions.slots.pop(threading.get_ident(), None)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for layer in (self.gate, self.classifier, self.rest):
            if not layer.built:
                layer.build(input_shape)
        here = tuple(self.classifier.compute_output_shape(input_shape))
        final = tuple(self._rest_spec(input_shape)[0].shape)
        if here[1:] != final[1:]:
            raise ValueError(
                f"EarlyExit: the `classifier`'s output shape {here} must equal the `rest`'s "
                f"prediction shape {final}."
            )

    def _rest_spec(self, input_shape):
        return _as_list(
            self.rest.compute_output_spec(keras.KerasTensor(tuple(input_shape), self.compute_dtype))
        )

    def compute_output_shape(self, input_shape, return_gates=False):
        shapes = [tuple(spec.shape) for spec in self._rest_spec(input_shape)]
        if not return_gates:
            return shapes[0]
        return [shapes[0], (input_shape[0], 1), *shapes[1:]]

    def compute_output_spec(self, inputs, training=None, return_gates=False):
        specs = [keras.KerasTensor(s.shape, self.compute_dtype) for s in self._rest_spec(inputs.shape)]
        if not return_gates:
            return specs[0]
        return [specs[0], keras.KerasTensor((inputs.shape[0], 1), self.compute_dtype), *specs[1:]]

    def exits(self, inputs, training=None):
        """The exit gates ``(batch, 1)`` this call uses: Gumbel-softmax samples in training; in
        inference by the mode (``always_on``: zeros)."""
        logits = self.gate(inputs, training=training)
        if training:
            return self.gate.sample(logits)
        if self.inference == "always_on":
            return ops.zeros_like(logits[..., 1])
        if self.inference == "stochastic":
            return ops.stop_gradient(self.gate.sample(logits))
        return ops.cast(self.gate.open_probability(logits) > self.threshold, logits.dtype)

    def call(self, inputs, training=None, return_gates=False):
        dtype = self.compute_dtype
        if training:
            e = self.exits(inputs, training=True)
            here = ops.cast(self.classifier(inputs, training=True), dtype)
            rest = [ops.cast(t, dtype) for t in _as_list(self.rest(inputs, training=True))]
            mix = ops.reshape(e, (-1,) + (1,) * (len(here.shape) - 1))
            prediction = mix * here + (1.0 - mix) * rest[0]
            self._training_predictions.slots[threading.get_ident()] = (here, rest[0])
        elif self.inference == "always_on":
            e = ops.zeros((ops.shape(inputs)[0], 1), dtype)  # the gate does not run either
            rest = [ops.cast(t, dtype) for t in _as_list(self.rest(inputs, training=False))]
            prediction = rest[0]
        else:
            e = self.exits(inputs)
            exiting = e[:, 0] > 0
            specs = self._rest_spec(inputs.shape)
            batch = ops.shape(inputs)[0]

            def zeros(spec):
                return ops.zeros((batch,) + tuple(spec.shape[1:]), dtype)

            # One branch runs each: the classifier where some example exits, the rest where some
            # example stays (at batch 1, exactly one of the two).
            here = cond_with_state(
                ops.any(exiting),
                lambda: ops.cast(self.classifier(inputs, training=False), dtype),
                lambda: zeros(specs[0]),
                self.classifier,
            )
            rest = cond_with_state(
                ops.logical_not(ops.all(exiting)),
                lambda: [ops.cast(t, dtype) for t in _as_list(self.rest(inputs, training=False))],
                lambda: [zeros(spec) for spec in specs],
                self.rest,
            )
            rest = _as_list(rest)
            mask = ops.reshape(exiting, (-1,) + (1,) * (len(here.shape) - 1))
            prediction = ops.where(mask, here, rest[0])
        if not return_gates:
            return prediction
        return [prediction, ops.cast(e, dtype), *rest[1:]]

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "rest": keras.saving.serialize_keras_object(self.rest),
            "gate": keras.saving.serialize_keras_object(self.gate),
            "threshold": self.threshold,
            **self.inference_config(),
        }


def _adopt_policy(owner, function):
    """A function built at the default policy computes in ``owner``'s (as ``GatedResidual``'s
    residual function does); an explicit policy, or a built function, is kept."""
    default = keras.config.dtype_policy().name
    if owner.dtype_policy.name == default or function.built:
        return
    for layer in function._flatten_layers(include_self=True, recursive=True):
        if layer.dtype_policy.name == default:
            layer.dtype_policy = owner.dtype_policy


def first_exit(exits):
    """Which classifier answers each example: ``exits`` ``(batch, n)`` hard exit gates in order
    gives ``(batch, n + 1)`` one-hot rows, the first open exit, or the final classifier (column
    ``n``) where none is open: ``e_i * prod_{j < i} (1 - e_j)`` and ``prod_j (1 - e_j)``."""
    exits = ops.cast(exits, "float32")
    stay = ops.cumprod(1.0 - exits, axis=1)
    before = ops.concatenate([ops.ones_like(stay[:, :1]), stay[:, :-1]], axis=1)
    return ops.concatenate([exits * before, stay[:, -1:]], axis=1)


def exit_target_loss(exits, target):
    """The const-quad per-gate exit target: the mean over exits of ``max(t - r_i, 0)^2``, ``r_i``
    the mean over the batch of exit gate ``i`` (``exits``: ``(batch, n)`` or a list). The
    library's per-gate const-quad loss on the stay gates ``1 - e`` at ``1 - t``."""
    z = routing_losses._gates_matrix(exits)
    return routing_losses.target_rate_per_gate(1.0 - z, 1.0 - ops.cast(target, "float32"), const_quad=True)


@keras.saving.register_keras_serializable(package="keras_routing")
class ExitTargetLoss(keras.layers.Layer):
    """``ExitTargetLoss(target_rate=0.3)([predictions, e_1, ..., e_n])`` returns ``predictions``;
    records ``exit_fraction`` ``(n + 1,)`` (the fraction of the batch each classifier answers,
    the final one last) and, in training, adds ``weight * exit_target_loss(e, target_rate)``.
    ``target_rate`` and ``weight`` are numbers or ``keras_routing.schedules`` schedules."""

    def __init__(self, target_rate=0.3, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_rate, (int, float)):
            number(target_rate, "target_rate", at_least=0, at_most=1, owner="ExitTargetLoss")
        self._target_schedule = schedules.get(target_rate)
        self._weight_schedule = schedules.get(weight)
        schedules.add_scheduled_variable(self, "target_rate", self._target_schedule)
        routing_losses.add_loss_weight(self, "loss_weight", self._weight_schedule)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError("ExitTargetLoss: call it on [outputs, exit_1, ..., exit_n].")
        if not hasattr(self, "exit_fraction"):
            routing_metrics.add_statistic(self, "exit_fraction", (len(input_shape),))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def call(self, inputs, training=None):
        outputs, exits = inputs[0], list(inputs[1:])
        z = routing_losses._gates_matrix(exits)
        routing_metrics.record_statistic(self, "exit_fraction", ops.mean(first_exit(ops.stop_gradient(z)), 0))
        target = schedules.scheduled_value(self, "target_rate", training)
        if training:
            routing_losses.add_weighted_loss(self, "loss_weight", exit_target_loss(z, target), training)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "target_rate": schedules.serialize(self._target_schedule),
            "weight": schedules.serialize(self._weight_schedule),
        }
