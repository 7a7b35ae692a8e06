"""The routing zoo (Ramachandran & Le 2019): noisy top-k routed models.

- ``routing_mlp_mnist()``: section 4.1's specialization model: 3 shared dense layers of 64
  (LayerNorm, ReLU), one routed layer of 5 dense experts (each Dense 64, LayerNorm, ReLU), k = 2,
  and a softmax classifier.
- ``routing_convnet(tasks, classes_per_task)``: section 4.2's Omniglot multi-task model: 1 shared
  convolution and 8 routed layers of 48 filters over the 7 expert types, a task embedding fed to
  every router, per-task linear readouts, k annealed 7 -> 2 over depth (``k_schedule``). Inputs
  ``[image, task id]``; the output is the task's logits padded with a large negative value up to
  the largest task's classes (``TaskReadouts``).

Both return a ``Task`` (their routing statistics reach ``fit``'s logs). Balancing weights
(``balance_weight``) are numbers or schedules (``schedules.Linear(0.1, 0.0, steps)`` as in the paper).
"""

import keras
from keras import ops

from keras_routing.layers.expert_types import OMNIGLOT_EXPERTS
from keras_routing.layers.routed_experts import NoisyTopKRouter, RoutedExperts
from keras_routing.models.task import Task
from keras_routing.validation import integer
from keras_routing.zoo.registry import register

PAPER = "diversity-and-depth-in-per-example-routing.md"


def k_annealed(start, end, layers):
    """``k`` per routed layer, linearly from ``start`` down to ``end`` (rounded): 7 -> 2 over 8."""
    if layers == 1:
        return [end]
    return [round(start + (end - start) * i / (layers - 1)) for i in range(layers)]


@keras.saving.register_keras_serializable(package="keras_routing")
class DenseExpert(keras.layers.Layer):
    """Section 4.1's unit: ``relu(LayerNorm(Dense(units)(x)))``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, dtype=self.dtype_policy, name="dense")
        self.norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name="norm")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.units,))

    def call(self, inputs):
        return ops.relu(self.norm(self.dense(inputs)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_routing")
class TaskReadouts(keras.layers.Layer):
    """One linear readout per task: ``x W_t + b_t`` for each example's task ``t``, over
    ``max(classes_per_task)`` logits, those beyond task ``t``'s classes set to -1e9."""

    def __init__(self, classes_per_task, **kwargs):
        super().__init__(**kwargs)
        self.classes_per_task = [integer(c, "classes_per_task") for c in classes_per_task]
        self.classes = max(self.classes_per_task)

    def build(self, inputs_shape, task_shape=None):
        tasks = len(self.classes_per_task)
        self.kernel = self.add_weight(name="kernel", shape=(tasks, inputs_shape[-1], self.classes))
        self.bias = self.add_weight(name="bias", shape=(tasks, self.classes), initializer="zeros")

    def call(self, inputs, task):
        task = ops.cast(ops.reshape(task, (-1,)), "int32")
        kernel = ops.take(self.kernel, task, axis=0)
        logits = ops.einsum("bf,bfc->bc", inputs, ops.cast(kernel, inputs.dtype))
        logits = logits + ops.cast(ops.take(self.bias, task, axis=0), inputs.dtype)
        valid = ops.take(
            ops.array([[c > i for i in range(self.classes)] for c in self.classes_per_task]), task, 0
        )
        return ops.where(valid, logits, ops.cast(-1e9, logits.dtype))

    def compute_output_shape(self, inputs_shape, task_shape=None):
        return (inputs_shape[0], self.classes)

    def get_config(self):
        return {**super().get_config(), "classes_per_task": self.classes_per_task}


@register("routing_mlp_mnist", preprocessing="unit", family="routing", paper=PAPER)
def routing_mlp_mnist(
    input_shape=(28, 28, 1),
    classes=10,
    experts=5,
    k=2,
    units=64,
    balance_weight=0.1,
    name="routing_mlp_mnist",
):
    """Section 4.1's MNIST specialization model (see the module docstring); a ``Task``."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for i in range(3):
        x = DenseExpert(units, name=f"shared_{i}")(x)
    router = NoisyTopKRouter(
        experts, k, importance_weight=balance_weight, load_weight=balance_weight, name="router"
    )
    x = RoutedExperts(
        [DenseExpert(units, name=f"expert_{i}") for i in range(experts)], router, name="routed"
    )(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return Task(inputs, outputs, name=name)


@register("routing_convnet", preprocessing="unit", family="routing", task="multitask", paper=PAPER)
def routing_convnet(
    tasks=8,
    classes_per_task=None,
    input_shape=(28, 28, 1),
    filters=48,
    routed_layers=8,
    k_schedule=None,
    expert_types=OMNIGLOT_EXPERTS,
    task_embedding_dim=8,
    balance_weight=0.1,
    dispatch="auto",
    pool_after=(2, 4, 6),
    name="routing_convnet",
):
    """Section 4.2's Omniglot multi-task model (see the module docstring); a ``Task`` with inputs
    ``[image, task]``.

    Args:
        classes_per_task: classes of each task (default 20 each).
        k_schedule: ``k`` per routed layer (default ``k_annealed(len(expert_types), 2, routed_layers)``,
            7 -> 2 for 7 types).
        expert_types: the experts of every routed layer (Table 2's ablations: ``["conv3x3"] * 7``,
            ``["conv5x5"] * 7``, or only convolutions).
        pool_after: routed layers after which a 2x2 max pooling halves the resolution (our choice:
            the paper does not state its downsampling).
    """
    tasks = integer(tasks, "tasks")
    classes_per_task = list(classes_per_task or [20] * tasks)
    if len(classes_per_task) != tasks:
        raise ValueError(
            f"`classes_per_task` must have {tasks} entries (one per task), got {classes_per_task}."
        )
    experts = list(expert_types)
    if k_schedule is None:
        k_schedule = k_annealed(len(experts), min(2, len(experts)), routed_layers)
    k_schedule = list(k_schedule)
    if len(k_schedule) != routed_layers:
        raise ValueError(
            f"`k_schedule` must have {routed_layers} entries (one per routed layer), got {k_schedule}."
        )
    image = keras.Input(input_shape, name="image")
    task = keras.Input((), dtype="int32", name="task")
    embedding = keras.layers.Flatten()(
        keras.layers.Embedding(tasks, task_embedding_dim, name="task_embedding")(task)
    )
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="shared_conv")(image)
    x = keras.layers.ReLU()(keras.layers.GroupNormalization(8, name="shared_gn")(x))
    for i, k in enumerate(k_schedule):
        router = NoisyTopKRouter(
            len(experts), k, importance_weight=balance_weight, load_weight=balance_weight, name=f"router_{i}"
        )
        layer = RoutedExperts(experts, router, filters=filters, dispatch=dispatch, name=f"routed_{i}")
        x = layer(x, task_embedding=embedding)
        x = keras.layers.ReLU(name=f"routed_{i}_relu")(
            keras.layers.GroupNormalization(8, name=f"routed_{i}_gn")(x)
        )
        if i + 1 in pool_after:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = TaskReadouts(classes_per_task, name="readouts")(x, task)
    return Task([image, task], outputs, name=name)
