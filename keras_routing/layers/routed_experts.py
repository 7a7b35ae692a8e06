"""Hard per-example routing: ``NoisyTopKRouter`` (Shazeer et al. 2017) and ``RoutedExperts``.

Ramachandran & Le 2019 ("Diversity and depth in per-example routing models") route each example
through ``k`` of ``n`` experts that may differ in architecture (``keras_routing.layers.expert_types``)::

    router = NoisyTopKRouter(num_experts=7, k=2)
    layer = RoutedExperts(["conv3x3", "conv5x5", "conv7x7", "conv1x7_7x1", "maxpool3x3",
                           "avgpool3x3", "identity"], router, filters=48)
    y = layer(x)                          # or layer(x, task_embedding=e) for multi-task routing

The router's gates are ``G(x) = softmax(keep_top_k(H(x), k))`` with
``H(x) = x W_g + N(0, 1) * (softplus(x W_noise) + noise_epsilon)`` (noise in training only), so
every row has exactly ``k`` non-zeros summing to 1. It adds Shazeer et al.'s balancing losses,
each times a scheduled weight (``keras_routing.losses.add_loss_weight``): the importance loss
``cv^2(sum over the batch of G)`` and the load loss ``cv^2(sum over the batch of P)``, ``P(x, i)``
the probability, under fresh noise, that expert ``i`` is among the top ``k`` (the normal CDF of
the clean logit against the k-th / (k+1)-th largest noisy logit of the others). Statistics in a
``Task``'s logs: ``<router>_expert_load`` (fraction of the batch per expert),
``<router>_importance_cv`` and ``<layer>_dropped_fraction`` (assignments over capacity).
"""

import math

import keras
from keras import ops

from keras_routing import losses, metrics
from keras_routing.layers import routed_dispatch
from keras_routing.layers.expert_types import make_expert
from keras_routing.layers.inference import InferenceModes
from keras_routing.layers.router import Router
from keras_routing.schedules import serialize as serialize_schedule
from keras_routing.validation import integer, number


def normal_cdf(x):
    """The standard normal CDF, ``(1 + erf(x / sqrt(2))) / 2``."""
    return 0.5 * (1.0 + ops.erf(x / math.sqrt(2.0)))


@keras.saving.register_keras_serializable(package="keras_routing")
class NoisyTopKRouter(Router):
    """Noisy top-k gating: gates ``(batch, num_experts)`` with ``k`` non-zeros per row summing to 1.

    Args:
        num_experts: experts routed over (``n``).
        k: experts per example, an integer in ``[1, num_experts]``.
        noisy: add the learned Gaussian noise in training (inference is always deterministic:
            the softmax over the top ``k`` of the clean logits).
        noise_epsilon: added to the noise's standard deviation (Shazeer et al.'s 1e-2).
        importance_weight, load_weight: the balancing losses' weights, numbers or schedules of
            the training step (``keras_routing.schedules``, e.g. ``Linear(0.1, 0.0, steps)``).
        task_embedding_dim: width of the optional task embedding concatenated to the router's
            input (``None``: inferred when the router is built with one).
        kernel_initializer: of ``w_gate`` and ``w_noise`` (zeros, as Shazeer et al.).
        seed: of the noise's ``SeedGenerator``.

    Call: ``router(inputs, task_embedding=None, training=None)``; inputs of rank > 2 are averaged
    globally first. ``router.gates_and_load(...)`` also returns ``P``.
    """

    def __init__(
        self,
        num_experts,
        k,
        *,
        noisy=True,
        noise_epsilon=1e-2,
        importance_weight=0.1,
        load_weight=0.1,
        task_embedding_dim=None,
        kernel_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(num_experts, **kwargs)
        owner = type(self).__name__
        self.k = integer(k, "k", minimum=1, maximum=self.num_experts, owner=owner)
        self.noisy = bool(noisy)
        self.noise_epsilon = number(noise_epsilon, "noise_epsilon", at_least=0, owner=owner)
        self.task_embedding_dim = integer(
            task_embedding_dim, "task_embedding_dim", optional=True, owner=owner
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        losses.add_loss_weight(self, "importance_weight", importance_weight)
        losses.add_loss_weight(self, "load_weight", load_weight)
        metrics.add_statistic(self, "expert_load", (self.num_experts,))
        metrics.add_statistic(self, "importance_cv")

    def build(self, inputs_shape, task_embedding_shape=None):
        self.check_input_shape(inputs_shape)
        if task_embedding_shape is not None:
            width = task_embedding_shape[-1]
            if self.task_embedding_dim is not None and width != self.task_embedding_dim:
                raise ValueError(
                    f"{self.name}: `task_embedding` must have width {self.task_embedding_dim}, got shape "
                    f"{tuple(task_embedding_shape)}."
                )
            self.task_embedding_dim = width
        features = inputs_shape[-1] + (self.task_embedding_dim or 0)
        self.w_gate = self.add_weight(
            name="w_gate", shape=(features, self.num_experts), initializer=self.kernel_initializer
        )
        self.w_noise = self.add_weight(
            name="w_noise", shape=(features, self.num_experts), initializer=self.kernel_initializer
        )

    def _features(self, inputs, task_embedding):
        x = self.global_features(inputs)
        if task_embedding is None:
            if self.task_embedding_dim:
                raise ValueError(f"{self.name}: built with a task embedding; call it with `task_embedding=`.")
            return x
        if len(task_embedding.shape) != 2 or task_embedding.shape[-1] != self.task_embedding_dim:
            raise ValueError(
                f"{self.name}: `task_embedding` must have shape (batch, {self.task_embedding_dim}), got "
                f"{tuple(task_embedding.shape)}."
            )
        return ops.concatenate([x, ops.cast(task_embedding, x.dtype)], axis=-1)

    def gates_and_load(self, inputs, task_embedding=None, training=None):
        """``(gates, load_probabilities)``: ``P`` of Shazeer et al.'s load estimator when noisy and
        training with ``k < num_experts``, otherwise the hard 0/1 assignments."""
        x = self._features(inputs, task_embedding)
        clean = ops.matmul(x, ops.cast(self.w_gate, x.dtype))
        noisy = self.noisy and bool(training)
        if noisy:
            stddev = ops.softplus(ops.matmul(x, ops.cast(self.w_noise, x.dtype))) + self.noise_epsilon
            noise = keras.random.normal(ops.shape(clean), seed=self.seed_generator, dtype=clean.dtype)
            logits = clean + noise * stddev
        else:
            logits = clean
        top = min(self.k + 1, self.num_experts)
        top_logits, top_indices = ops.top_k(logits, top)
        if self.k == 1:  # softmax over one logit
            top_gates = ops.ones_like(top_logits[:, :1])
        else:
            top_gates = ops.softmax(top_logits[:, : self.k], axis=-1)
        # The k chosen experts' gates in their columns: a one-hot sum (no scatter: any backend, jit).
        one_hot = ops.one_hot(top_indices[:, : self.k], self.num_experts, dtype=top_gates.dtype)
        gates = ops.sum(one_hot * ops.expand_dims(top_gates, -1), axis=1)
        if noisy and self.k < self.num_experts:
            load = self._probability_in_top_k(clean, logits, stddev, top_logits)
        else:
            load = ops.cast(ops.not_equal(gates, 0), "float32")
        return gates, load

    def _probability_in_top_k(self, clean, noisy, stddev, top_logits):
        """``P(x, i)``: the probability that ``clean_i + noise`` beats the k-th largest noisy
        logit of the other experts, which is the (k+1)-th largest when ``i`` is in the top k and
        the k-th largest otherwise."""
        clean, noisy, stddev = (ops.cast(t, "float32") for t in (clean, noisy, stddev))
        top_logits = ops.cast(top_logits, "float32")
        threshold_if_in = top_logits[:, self.k : self.k + 1]
        threshold_if_out = top_logits[:, self.k - 1 : self.k]
        is_in = ops.greater(noisy, threshold_if_in)
        prob_if_in = normal_cdf((clean - threshold_if_in) / stddev)
        prob_if_out = normal_cdf((clean - threshold_if_out) / stddev)
        return ops.where(is_in, prob_if_in, prob_if_out)

    def call(self, inputs, task_embedding=None, training=None):
        gates, load = self.gates_and_load(inputs, task_embedding, training)
        importance = ops.sum(ops.cast(gates, "float32"), axis=0)
        losses.add_weighted_loss(self, "importance_weight", losses.importance_loss(gates), training)
        losses.add_weighted_loss(self, "load_weight", losses.load_loss(load), training)
        metrics.record_statistic(self, "expert_load", metrics.expert_load(gates))
        metrics.record_statistic(self, "importance_cv", ops.sqrt(losses.cv_squared(importance)))
        return gates

    def compute_output_shape(self, inputs_shape, task_embedding_shape=None):
        return (inputs_shape[0], self.num_experts)

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "noisy": self.noisy,
            "noise_epsilon": self.noise_epsilon,
            "importance_weight": serialize_schedule(self._scheduled("importance_weight")),
            "load_weight": serialize_schedule(self._scheduled("load_weight")),
            "task_embedding_dim": self.task_embedding_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }

    def _scheduled(self, name):
        from keras_routing.schedules import _registry

        return _registry(self, "_scheduled_variables")[name].schedule


DISPATCH_MODES = ("auto", "dense", "sparse")


def _check_capacity_factor(value, owner):
    return number(value, "capacity_factor", above=0, owner=owner)


@keras.saving.register_keras_serializable(package="keras_routing")
class RoutedExperts(InferenceModes, keras.layers.Layer):
    """One routing decision over ``experts``: ``y = sum_i G(x)_i E_i(x)`` over the ``k`` chosen.

    Args:
        experts: a list of expert layers whose output shapes agree, or of expert type names
            (``keras_routing.layers.expert_types.EXPERT_TYPES``, built with ``filters``,
            ``stacked`` and ``norm``), or both.
        router: a ``NoisyTopKRouter`` over ``len(experts)`` experts (or its config), or an
            integer ``k`` for a default one.
        dispatch: ``"dense"`` (every expert on every example, weighted: the reference),
            ``"sparse"`` (each expert only on its examples: exact when eager; under ``jit`` with
            a capacity of ``ceil(capacity_factor * k * batch / n)`` examples per expert), or
            ``"auto"`` (dense when ``k == n``, sparse otherwise). Settable on a trained model:
            ``set_inference(model, "sparse")``.
        capacity_factor: > 0; see ``dispatch``. ``n / k`` or more never drops an example.

    Call: ``layer(inputs, task_embedding=None, training=None)``.
    """

    inference_modes = DISPATCH_MODES
    inference_argument = "dispatch"

    def __init__(
        self,
        experts,
        router,
        *,
        dispatch="auto",
        capacity_factor=1.25,
        filters=None,
        stacked=2,
        norm="group",
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        if not isinstance(experts, (list, tuple)) or not experts:
            raise ValueError(
                f"{owner}: `experts` must be a non-empty list of layers or names, got {experts!r}."
            )
        self.filters = integer(filters, "filters", optional=True, owner=owner)
        self.stacked = integer(stacked, "stacked", owner=owner)
        self.norm = norm
        self.experts = [self._make_expert(e, i) for i, e in enumerate(experts)]
        self.router = self._make_router(router)
        self.router.adopt_dtype_policy(self.dtype_policy)
        self.capacity_factor = _check_capacity_factor(capacity_factor, owner)
        self.inference = dispatch
        metrics.add_statistic(self, "dropped_fraction")

    def _make_expert(self, expert, index):
        if isinstance(expert, str):
            if self.filters is None and expert.startswith("conv"):
                raise ValueError(f"{type(self).__name__}: expert type {expert!r} needs `filters`.")
            return make_expert(
                expert,
                self.filters,
                stacked=self.stacked,
                norm=self.norm,
                name=f"expert_{index}_{expert}",
                dtype=self.dtype_policy,
            )
        if isinstance(expert, dict):
            expert = keras.saving.deserialize_keras_object(expert)
        if not isinstance(expert, keras.layers.Layer):
            raise ValueError(  # noqa: TRY004 (the project's convention)
                f"{type(self).__name__}: `experts[{index}]` must be a layer or a name, got {expert!r}."
            )
        if not expert.built and expert.dtype_policy.name == keras.config.dtype_policy().name:
            old = expert.dtype_policy.name
            for layer in expert._flatten_layers(include_self=True):
                if layer.dtype_policy.name == old:
                    layer.dtype_policy = self.dtype_policy
        return expert

    def _make_router(self, router):
        n = len(self.experts)
        if isinstance(router, dict):
            router = keras.saving.deserialize_keras_object(router)
        elif not isinstance(router, keras.layers.Layer):
            router = NoisyTopKRouter(
                n, integer(router, "router", maximum=n, owner=type(self).__name__), name="router"
            )
        if not isinstance(router, Router):
            raise ValueError(  # noqa: TRY004 (the project's convention)
                f"{type(self).__name__}: `router` must be a NoisyTopKRouter or k, got {router!r}."
            )
        if router.num_experts != n:
            raise ValueError(
                f"{type(self).__name__}: the router routes over {router.num_experts} experts but `experts` "
                f"holds {n}."
            )
        return router

    @property
    def k(self):
        return self.router.k

    def build(self, inputs_shape, task_embedding_shape=None):
        if not self.router.built:  # a router deserialized from a built config is built already
            self.router.build(inputs_shape, task_embedding_shape)
        shapes = []
        for expert in self.experts:
            if not expert.built:
                expert.build(tuple(inputs_shape))
            shapes.append(tuple(expert.compute_output_shape(tuple(inputs_shape))))
        if any(shape[1:] != shapes[0][1:] for shape in shapes):
            listed = ", ".join(f"{e.name}: {s}" for e, s in zip(self.experts, shapes))
            raise ValueError(
                f"{self.name}: the experts' output shapes must agree, got {listed} for an input of shape "
                f"{tuple(inputs_shape)}."
            )
        self._expert_output_shape = shapes[0]

    def compute_output_shape(self, inputs_shape, task_embedding_shape=None):
        return tuple(self.experts[0].compute_output_shape(tuple(inputs_shape)))

    def _dispatch(self):
        if self.inference == "auto":
            return "dense" if self.k == len(self.experts) else "sparse"
        return self.inference

    def call(self, inputs, task_embedding=None, training=None):
        gates = self.router(inputs, task_embedding=task_embedding, training=training)
        gates = ops.cast(gates, self.compute_dtype)

        def call_expert(expert, x):
            return expert(x, training=training) if _takes_training(expert) else expert(x)

        mode = self._dispatch()
        output_shape = (None,) + tuple(self._expert_output_shape[1:])
        if mode == "dense":
            outputs, used = routed_dispatch.dense(self.experts, inputs, gates, call_expert)
        elif routed_dispatch.is_traced(inputs):
            batch = inputs.shape[0] if inputs.shape[0] is not None else ops.shape(inputs)[0]
            capacity = routed_dispatch.capacity(batch, self.k, len(self.experts), self.capacity_factor)
            outputs, used = routed_dispatch.sparse_capacity(
                self.experts, inputs, gates, call_expert, output_shape, capacity, skip_unused=not training
            )
        else:
            outputs, used = routed_dispatch.sparse_exact(
                self.experts, inputs, gates, call_expert, output_shape
            )
        metrics.record_statistic(self, "dropped_fraction", metrics.dropped_fraction(gates, used))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "experts": [keras.saving.serialize_keras_object(e) for e in self.experts],
            "router": keras.saving.serialize_keras_object(self.router),
            "capacity_factor": self.capacity_factor,
            "filters": self.filters,
            "stacked": self.stacked,
            "norm": self.norm,
            **self.inference_config(),
        }


def _takes_training(layer):
    import inspect

    return "training" in inspect.signature(layer.call).parameters
