"""Probabilistic bypass gates (Veit & Belongie's ConvNet-AIG; "Deep networks with probabilistic
gates"): a residual function ``F`` that runs for an example only when its gate is open.

- ``BypassGate`` (a ``Router``): the gate. ``"dependent"`` is AIG's gate on the block input
  (global average pooling, a 1x1 convolution to 16 -- a dense layer on the pooled features --,
  batch normalization, ReLU, a 1x1 convolution to 2 logits per gate); ``"independent"`` is one
  learned logit pair per gate, the same for every example. Training samples hard 0/1 gates with
  Gumbel-softmax at ``temperature`` and passes gradients straight through the soft sample.
- ``GatedResidual``: ``shortcut + z * F(x)`` (``residual=True``; ``shortcut`` defaults to
  ``x``) or ``z * F(x)``; ``granularity=n`` gates ``n`` equal groups of ``F``'s filters (S2.3).
  Inference modes (``layer.inference = ...`` or ``keras_routing.set_inference``): ``"threshold"``
  (open where the learned open probability exceeds ``threshold``), ``"stochastic"`` (sampled),
  ``"always_on"``. Outside training, ``F`` is computed under ``keras.ops.cond``: a batch whose
  gates are all closed (a closed gate at batch 1) does not run ``F`` at all.
- ``GateTargetLoss``: the target-rate loss over every gate of a model at once (per gate, per
  batch, const-quad), placed after the model's output with the gates as inputs, so that a model
  built with it needs nothing else to train with the loss in ``fit`` on every backend.
"""

import keras
from keras import ops

from keras_routing import losses as routing_losses
from keras_routing import metrics as routing_metrics
from keras_routing import schedules
from keras_routing.layers.conditional import cond_with_state
from keras_routing.layers.inference import InferenceModes
from keras_routing.layers.router import Router
from keras_routing.validation import integer, number

GATES = ("dependent", "independent")
HIDDEN = 16  # AIG's gate width
# AIG's initial biases of the (closed, open) logits: the gates start mostly open (p ~ 0.87).
INITIAL_BIAS = (0.1, 2.0)


def gumbel_softmax_open(logits, temperature, seed_generator, hard=True):
    """The open component of a Gumbel-softmax sample of ``logits`` ``(..., 2)`` (closed, open):
    hard 0/1 values whose gradient is that of the soft sample at ``temperature`` (straight
    through) when ``hard``, else the soft sample itself."""
    logits = ops.convert_to_tensor(logits)
    uniform = keras.random.uniform(ops.shape(logits), minval=1e-10, maxval=1.0, seed=seed_generator)
    gumbel = -ops.log(-ops.log(uniform) + 1e-10)
    soft = ops.softmax((logits + ops.cast(gumbel, logits.dtype)) / temperature, axis=-1)[..., 1]
    if not hard:
        return soft
    sample = ops.cast(soft > 0.5, soft.dtype)  # argmax of the two components
    return soft + ops.stop_gradient(sample - soft)


class GumbelGate(Router):
    """A router whose ``call`` returns two logits per gate, ``(..., 2)``: (closed, open), or
    (stay, exit) for an exit; subclasses set ``temperature`` and ``seed_generator``."""

    @staticmethod
    def open_probability(logits):
        """The learned probability that each gate is open (or exits), ``(batch, n)``."""
        return ops.softmax(logits, axis=-1)[..., 1]

    def sample(self, logits, hard=True):
        """Gumbel-softmax gates ``(batch, n)`` at this gate's temperature (see ``gumbel_softmax_open``)."""
        return gumbel_softmax_open(logits, self.temperature, self.seed_generator, hard=hard)


@keras.saving.register_keras_serializable(package="keras_routing")
class BypassGate(GumbelGate):
    """The bypass gate of ``num_experts`` gates (the granularity): ``call`` returns the logits
    ``(batch, n, 2)`` of (closed, open); ``open_probability`` and ``sample`` turn them into gates.

    Args:
        num_experts: the number of gates (filter groups) it decides.
        gate: ``"dependent"`` (AIG's gate on the input) or ``"independent"`` (one learned logit
            pair per gate).
        temperature: the Gumbel-softmax temperature (> 0).
        hidden_units: the dependent gate's width (AIG: 16).
        seed: seed of its Gumbel noise.
    """

    def __init__(
        self, num_experts=1, gate="dependent", temperature=1.0, hidden_units=HIDDEN, seed=None, **kwargs
    ):
        super().__init__(num_experts, **kwargs)
        if gate not in GATES:
            raise ValueError(f"BypassGate: `gate` must be one of {GATES}, got {gate!r}.")
        self.gate = gate
        self.temperature = number(temperature, "temperature", above=0, owner="BypassGate")
        self.hidden_units = integer(hidden_units, "hidden_units", owner="BypassGate")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        bias = keras.initializers.Constant(list(INITIAL_BIAS) * self.num_experts)
        if gate == "dependent":
            self.hidden = keras.layers.Dense(
                self.hidden_units, use_bias=False, name="hidden", dtype=self.dtype_policy
            )
            self.norm = keras.layers.BatchNormalization(name="norm", dtype=self.dtype_policy)
            self.logits = keras.layers.Dense(
                2 * self.num_experts, bias_initializer=bias, name="logits", dtype=self.dtype_policy
            )
        else:
            self._bias_initializer = bias

    def build(self, input_shape):
        self.check_input_shape(input_shape)
        if self.gate == "dependent":
            features = self.global_features_shape(input_shape)
            self.hidden.build(features)
            self.norm.build((features[0], self.hidden_units))
            self.logits.build((features[0], self.hidden_units))
        else:
            self.independent_logits = self.add_weight(
                name="independent_logits", shape=(2 * self.num_experts,), initializer=self._bias_initializer
            )

    def call(self, inputs, training=None):
        if self.gate == "dependent":
            h = self.hidden(self.global_features(inputs))
            h = ops.relu(self.norm(h, training=training))
            logits = self.logits(h)
        else:
            batch = ops.shape(inputs)[0]
            logits = ops.broadcast_to(
                ops.cast(self.independent_logits, self.compute_dtype)[None], (batch, 2 * self.num_experts)
            )
        return ops.reshape(logits, (-1, self.num_experts, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts, 2)

    def get_config(self):
        return {
            **super().get_config(),
            "gate": self.gate,
            "temperature": self.temperature,
            "hidden_units": self.hidden_units,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_routing")
class GatedResidual(InferenceModes, keras.layers.Layer):
    """``shortcut + z * F(x)`` with a probabilistic bypass gate ``z`` in {0, 1} per example.

    Args:
        residual_function: ``F``, a layer or model of the block input.
        gate: ``"dependent"``, ``"independent"``, or a ``BypassGate`` (or its config).
        granularity: gate ``n`` equal groups of ``F``'s output channels separately (S2.3).
        temperature: the Gumbel-softmax temperature of the gate (when ``gate`` is a name).
        threshold: the open probability above which a gate opens under ``"threshold"``.
        inference: ``"threshold"`` (default), ``"stochastic"`` or ``"always_on"``.
        residual: ``True``: ``shortcut + z * F(x)``; ``False``: ``z * F(x)``.
        seed: seed of the gate's noise (when ``gate`` is a name).

    Call: ``layer(x, shortcut=None, training=None, return_gates=False)``; ``shortcut`` (a
    projection of ``x`` with ``F``'s output shape) replaces ``x`` in the sum; ``return_gates``
    also returns the gates ``(batch, granularity)`` (hard, with straight-through gradients in
    training), which a ``GateTargetLoss`` takes. The statistic ``open_rate`` (per gate group) is
    logged by a ``Task``.
    """

    inference_modes = ("threshold", "stochastic", "always_on")

    def __init__(
        self,
        residual_function,
        gate="dependent",
        granularity=1,
        temperature=1.0,
        threshold=0.5,
        inference="threshold",
        residual=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(residual_function, dict):
            residual_function = keras.saving.deserialize_keras_object(residual_function)
        if not isinstance(residual_function, keras.layers.Layer):
            raise ValueError(  # noqa: TRY004 (the project's convention: a ValueError naming it)
                f"GatedResidual: `residual_function` must be a Keras layer or model, got {residual_function!r}."
            )
        self.residual_function = residual_function
        self._adopt_policy(residual_function)
        self.granularity = integer(granularity, "granularity", owner="GatedResidual")
        self.threshold = number(threshold, "threshold", at_least=0, at_most=1, owner="GatedResidual")
        if not isinstance(residual, bool):
            raise ValueError(f"GatedResidual: `residual` must be True or False, got {residual!r}.")  # noqa: TRY004 (the project's convention)
        self.residual = residual
        self.inference = inference
        if isinstance(gate, dict):
            gate = keras.saving.deserialize_keras_object(gate)
        if isinstance(gate, BypassGate):
            if gate.num_experts != self.granularity:
                raise ValueError(
                    f"GatedResidual: the gate decides {gate.num_experts} gates, `granularity` is {self.granularity}."
                )
            self.gate = gate
        elif gate in GATES:
            self.gate = BypassGate(
                self.granularity,
                gate=gate,
                temperature=temperature,
                seed=seed,
                name=f"{self.name}_gate",
                dtype=self.dtype_policy,
            )
        else:
            raise ValueError(f"GatedResidual: `gate` must be one of {GATES} or a BypassGate, got {gate!r}.")
        if self.gate.dtype_policy.name != self.dtype_policy.name:
            self.gate.adopt_dtype_policy(self.dtype_policy)
        routing_metrics.add_statistic(self, "open_rate", () if self.granularity == 1 else (self.granularity,))

    def _adopt_policy(self, function):
        """``F`` built at the default policy computes in this layer's (a mixed-precision block
        computes its residual in it too), as a router does; an explicit policy is kept."""
        default = keras.config.dtype_policy().name
        if self.dtype_policy.name == default or function.built:
            return
        for layer in function._flatten_layers(include_self=True, recursive=True):
            if layer.dtype_policy.name == default:
                layer.dtype_policy = self.dtype_policy

    def build(self, inputs_shape, shortcut_shape=None):
        input_shape = tuple(inputs_shape)
        if not self.gate.built:
            self.gate.build(input_shape)
        if not self.residual_function.built:
            self.residual_function.build(input_shape)
        out = tuple(self.residual_function.compute_output_shape(input_shape))
        expected = tuple(shortcut_shape) if shortcut_shape is not None else input_shape
        if self.residual and out[1:] != expected[1:]:
            raise ValueError(
                f"GatedResidual: with `residual=True` the residual function's output shape {out} must "
                f"equal its input's {expected}"
                + (" (the shortcut's)" if shortcut_shape is not None else "")
                + "; pass `shortcut=` a projection, or `residual=False`."
            )
        if out[-1] is None or out[-1] % self.granularity:
            raise ValueError(
                f"GatedResidual: `granularity` {self.granularity} must divide the residual function's "
                f"{out[-1]} output channels."
            )

    def compute_output_shape(self, inputs_shape, shortcut_shape=None, return_gates=False):
        out = tuple(self.residual_function.compute_output_shape(tuple(inputs_shape)))
        if return_gates:
            return out, (inputs_shape[0], self.granularity)
        return out

    def compute_output_spec(self, inputs, shortcut=None, training=None, return_gates=False):
        shape = self.compute_output_shape(inputs.shape, return_gates=return_gates)
        dtype = self.compute_dtype
        if return_gates:
            return keras.KerasTensor(shape[0], dtype), keras.KerasTensor(shape[1], dtype)
        return keras.KerasTensor(shape, dtype)

    def gates(self, inputs, training=None):
        """The gates ``(batch, granularity)`` this call uses: Gumbel-softmax samples in training;
        in inference by the mode."""
        logits = self.gate(inputs, training=training)
        if training:
            return self.gate.sample(logits)
        if self.inference == "always_on":
            return ops.ones_like(logits[..., 1])
        if self.inference == "stochastic":
            return ops.stop_gradient(self.gate.sample(logits))
        return ops.cast(self.gate.open_probability(logits) > self.threshold, logits.dtype)

    def call(self, inputs, shortcut=None, training=None, return_gates=False):
        z = self.gates(inputs, training=training)
        routing_metrics.record_statistic(
            self, "open_rate", routing_metrics.open_rate(z if self.granularity > 1 else z[:, 0])
        )
        skip = (inputs if shortcut is None else shortcut) if self.residual else None

        def run():
            out = self.residual_function(inputs, training=training)
            mask = self._spread(z, out)
            gated = ops.cast(mask, out.dtype) * out
            return gated if skip is None else ops.cast(skip, out.dtype) + gated

        if training or self.inference == "always_on":
            out = run()
        else:

            def bypass():
                if skip is not None:
                    return ops.cast(skip, self.compute_dtype)
                shape = self.compute_output_shape(tuple(inputs.shape))
                return ops.zeros((ops.shape(inputs)[0],) + tuple(shape[1:]), self.compute_dtype)

            # One branch runs: a batch with every gate closed skips F (which may write state:
            # a routed layer's statistics inside F).
            out = cond_with_state(
                ops.any(z > 0), lambda: ops.cast(run(), self.compute_dtype), bypass, self.residual_function
            )
        return (out, z) if return_gates else out

    def _spread(self, z, out):
        rank = len(out.shape)
        if self.granularity > 1:
            z = ops.repeat(z, out.shape[-1] // self.granularity, axis=-1)
        return ops.reshape(z, (-1,) + (1,) * (rank - 2) + (z.shape[-1],))

    def get_config(self):
        return {
            **super().get_config(),
            "residual_function": keras.saving.serialize_keras_object(self.residual_function),
            "gate": keras.saving.serialize_keras_object(self.gate),
            "granularity": self.granularity,
            "threshold": self.threshold,
            "residual": self.residual,
            **self.inference_config(),
        }


@keras.saving.register_keras_serializable(package="keras_routing")
class GateTargetLoss(keras.layers.Layer):
    """Adds a target-rate loss over every gate of a model and passes its first input through.

    ``GateTargetLoss(target_rate=0.5, loss="per_batch")([predictions, z_1, ..., z_G])`` returns
    ``predictions`` and, in training, adds ``weight * loss(z, target)`` (``loss`` one of
    ``keras_routing.losses.TARGET_RATE_LOSSES``) through ``add_loss``. ``target_rate`` and
    ``weight`` are numbers or ``keras_routing.schedules`` schedules (target annealing:
    ``Piecewise.staircase(1.0, t, 0.05, k * steps_per_epoch)``), held as ``target_rate`` /
    ``loss_weight`` variables. ``target_momentum`` (S2.2's variable target rate): after each
    training step the target moves to ``momentum * target + (1 - momentum) * the batch's open
    rate`` (an exponential moving average of utilisation, from ``target_rate`` at the start);
    ``None`` keeps the target as scheduled. The statistic ``open_rate`` is the model's mean open
    rate over its gates.
    """

    def __init__(self, target_rate=0.5, loss="per_batch", weight=1.0, target_momentum=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_rate, (int, float)):
            number(target_rate, "target_rate", at_least=0, at_most=1, owner="GateTargetLoss")
        self.loss_name = loss
        self.loss_fn = routing_losses.target_rate_loss(loss)
        self.target_momentum = (
            None
            if target_momentum is None
            else number(target_momentum, "target_momentum", at_least=0, at_most=1, owner="GateTargetLoss")
        )
        self._target_schedule = schedules.get(target_rate)
        self._weight_schedule = schedules.get(weight)
        schedules.add_scheduled_variable(self, "target_rate", self._target_schedule)
        routing_losses.add_loss_weight(self, "loss_weight", self._weight_schedule)
        if self.target_momentum is not None:
            self.moving_target = self.add_weight(
                name="moving_target",
                shape=(),
                initializer=keras.initializers.Constant(schedules._scalar(self._target_schedule(0))),
                trainable=False,
                autocast=False,
                dtype="float32",
            )
        routing_metrics.add_statistic(self, "open_rate")

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError("GateTargetLoss: call it on [outputs, gates_1, ..., gates_G].")

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def call(self, inputs, training=None):
        outputs, gates = inputs[0], list(inputs[1:])
        z = routing_losses._gates_matrix(gates)
        rate = ops.mean(z)
        routing_metrics.record_statistic(self, "open_rate", ops.stop_gradient(rate))
        target = schedules.scheduled_value(self, "target_rate", training)
        if self.target_momentum is not None:
            target = ops.convert_to_tensor(self.moving_target)
        if training:
            routing_losses.add_weighted_loss(self, "loss_weight", self.loss_fn(gates, target), training)
            if self.target_momentum is not None:
                m = self.target_momentum
                self.moving_target.assign(m * target + (1.0 - m) * ops.stop_gradient(rate))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "target_rate": schedules.serialize(self._target_schedule),
            "loss": self.loss_name,
            "weight": schedules.serialize(self._weight_schedule),
            "target_momentum": self.target_momentum,
        }
